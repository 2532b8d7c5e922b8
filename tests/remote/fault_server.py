"""A small OpenAI-compatible server on 127.0.0.1 for the remote provider tests, with faults on demand.

It serves GET /v1/models and streamed POST /v1/chat/completions and /v1/completions (chunked
transfer encoding, like llama.cpp's server), with log-probabilities and a usage chunk when asked.
``server.fault`` picks what goes wrong for the next requests:

- ``hang``: accept the request and never answer; ``stall``: send one token, then nothing
- ``drop``: close the connection in the middle of the reply
- ``slow``: a token every 50 ms for up to 10 s (for cancel); ``closed`` is set when the client hung up
- ``429`` (with Retry-After), ``400`` and ``500`` with OpenAI error bodies
- ``json``: answer in one JSON body although a stream was asked for
- ``no_done``: end with finish_reason but without ``data: [DONE]``
- ``no_usage``: never send the usage chunk; ``comments``: CRLF line ends and ``: keep-alive`` comments
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "sk-test-remote-key-0123456789"

MODELS: list[dict[str, Any]] = [
    {"id": "tiny-chat", "object": "model", "owned_by": "llamacpp", "meta": {"n_ctx_train": 2048, "n_vocab": 49152}},
    {"id": "org/big-model", "object": "model", "max_model_len": 8192},
    {"id": "hosted-1", "object": "model", "context_length": 4096},
    {"id": "plain", "object": "model"},
]

# The reply, one entry per content delta: (delta text, its tokens as bytes). " café" ends with a
# character split over two tokens, as byte-level tokenizers do.
REPLY: list[tuple[str, list[bytes]]] = [
    ("Hello", [b"Hello"]),
    (",", [b","]),
    (" world", [b" wor", b"ld"]),
    (" caf\u00e9", [b" caf\xc3", b"\xa9"]),
    ("!", [b"!"]),
]
REPLY_TEXT = "".join(text for text, _ in REPLY)
REPLY_TOKENS = sum(len(tokens) for _, tokens in REPLY)
PROMPT_TOKENS = 12
ALTERNATIVE_TEXTS = ["Hi", " there", "Hey", " the", "."]


def token_string(raw: bytes) -> str:
    """OpenAI's way of showing a token that is not whole UTF-8: "bytes:\\xc3"."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def token_logprob(i: int) -> float:
    return round(-0.1 * (i + 1), 4)


class FaultServer:
    def __init__(self) -> None:
        self.fault: str | None = None
        self.key: str | None = KEY  # None: no key needed
        self.models = [dict(m) for m in MODELS]
        self.requests: list[dict[str, Any]] = []
        self.closed = threading.Event()  # a client hung up on a "slow" stream
        self.stop = threading.Event()  # ends hanging handlers at teardown
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fault_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def fs(self) -> FaultServer:
        return self.server.fault_server  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ----------------------------------------------------------------------------------
    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error"}}, headers)

    def _record(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.fs.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                 "body": body})
        return body

    def _refused(self) -> bool:
        """Answer the faults that replace a normal answer; True when one did."""
        fs = self.fs
        given = self.headers.get("Authorization", "")
        if fs.key is not None and given != f"Bearer {fs.key}":
            shown = given.removeprefix("Bearer ") or "(none)"
            # Echoes the key it got, as some servers do: the client must keep it out of its messages.
            self._error(401, f"Incorrect API key provided: {shown}.")
            return True
        fault = fs.fault
        if fault == "hang":
            fs.stop.wait(30)
            self.close_connection = True
            return True
        if fault == "429":
            self._error(429, "Rate limit reached for requests per minute.", {"Retry-After": "7"})
            return True
        if fault == "400":
            self._error(400, "max_tokens is too large: 999999. This model's maximum context length is 2048 tokens.")
            return True
        if fault == "500":
            self._error(500, "CUDA error: out of memory")
            return True
        return False

    # -- chunked SSE -------------------------------------------------------------------------------
    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        if self.fs.fault == "comments":
            self._chunk(": keep-alive\r\n\r\n")
            self._chunk(f"data: {text}\r\n\r\n")
        else:
            self._chunk(f"data: {text}\n\n")

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- endpoints -----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._record()
        if self._refused():
            return
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": self.fs.models})
        else:
            self._error(404, f"File Not Found: {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._record() or {}
        if self._refused():
            return
        chat = self.path == "/v1/chat/completions"
        if not chat and self.path != "/v1/completions":
            self._error(404, f"File Not Found: {self.path}")
            return
        model = body.get("model")
        if model not in {m["id"] for m in self.fs.models}:
            self._error(404, f"The model `{model}` does not exist.")
            return
        if self.fs.fault == "json":
            self._whole(chat, model)
        elif self.fs.fault == "slow":
            self._slow(chat, model)
        else:
            self._stream(chat, model, body)

    def _choice(self, chat: bool, text: str | None, finish: str | None,
                logprobs: Any = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {} if text is None else {"content": text}
        else:
            choice["text"] = text or ""
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return choice

    def _packet(self, chat: bool, model: str, choice: dict[str, Any]) -> dict[str, Any]:
        kind = "chat.completion.chunk" if chat else "text_completion"
        return {"id": "cmpl-1", "object": kind, "created": 0, "model": model, "choices": [choice]}

    def _logprobs(self, chat: bool, tokens: list[bytes], first: int, top: int) -> dict[str, Any]:
        if chat:
            content = []
            for i, raw in enumerate(tokens, first):
                lp = token_logprob(i)
                alts = [{"token": token_string(raw), "logprob": lp, "bytes": list(raw)}]
                alts += [{"token": t, "logprob": round(lp - 1.0 - j, 4), "bytes": list(t.encode())}
                         for j, t in enumerate(ALTERNATIVE_TEXTS)]
                content.append({"token": token_string(raw), "logprob": lp, "bytes": list(raw),
                                "top_logprobs": list(reversed(alts[:top]))})  # order must not matter
            return {"content": content}
        # Legacy completions: parallel lists, alternatives as {token: logprob}.
        return {"tokens": [token_string(raw) for raw in tokens],
                "token_logprobs": [token_logprob(i) for i in range(first, first + len(tokens))],
                "top_logprobs": [{token_string(raw): token_logprob(i),
                                  **{t: round(token_logprob(i) - 1.0 - j, 4)
                                     for j, t in enumerate(ALTERNATIVE_TEXTS[: top - 1])}}
                                 for i, raw in enumerate(tokens, first)],
                "text_offset": [0] * len(tokens)}

    def _stream(self, chat: bool, model: str, body: dict[str, Any]) -> None:
        fault = self.fs.fault
        top = body.get("top_logprobs") if chat else body.get("logprobs")
        want_logprobs = bool(body.get("logprobs"))
        top = int(top or 0) if not isinstance(top, bool) else 0
        limit = int(body.get("max_tokens") or 10**6)
        self._start_stream()
        if chat:
            self._event(self._packet(chat, model, {"index": 0, "delta": {"role": "assistant", "content": ""},
                                                   "finish_reason": None}))
        sent, finish = 0, "stop"
        for n, (text, tokens) in enumerate(REPLY):
            if n >= limit:
                finish = "length"
                break
            logprobs = self._logprobs(chat, tokens, sent, top) if want_logprobs else None
            self._event(self._packet(chat, model, self._choice(chat, text, None, logprobs)))
            sent += len(tokens)
            if fault == "drop" and n == 1:
                self.close_connection = True  # no terminating chunk: the reply is cut off
                return
            if fault == "stall":
                self.fs.stop.wait(30)
                self.close_connection = True
                return
        self._event(self._packet(chat, model, self._choice(chat, None, finish)))
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        if include_usage and fault != "no_usage":
            self._event({"id": "cmpl-1", "object": "chat.completion.chunk", "model": model, "choices": [],
                         "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": sent,
                                   "total_tokens": PROMPT_TOKENS + sent}})
        if fault != "no_done":
            self._event("[DONE]")
        self._end_stream()

    def _slow(self, chat: bool, model: str) -> None:
        self._start_stream()
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and not self.fs.stop.is_set():
                self._event(self._packet(chat, model, self._choice(chat, "tick ", None)))
                time.sleep(0.05)
        except OSError:  # BrokenPipeError, ConnectionResetError: the client hung up
            self.fs.closed.set()
        self.close_connection = True

    def _whole(self, chat: bool, model: str) -> None:
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": REPLY_TEXT}
        else:
            choice["text"] = REPLY_TEXT
        self._json(200, {"id": "cmpl-1", "object": "chat.completion" if chat else "text_completion",
                         "model": model, "choices": [choice],
                         "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": REPLY_TOKENS}})
