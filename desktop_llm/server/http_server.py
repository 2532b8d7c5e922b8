"""The local OpenAI-compatible server: HTTP on a thread per connection, answers from the shared engine.

Requests go to the same ``EngineClient`` as the window's. The engine runs them one at a time in
arrival order, each with its own cancel, and each names its model (``model_load``), so the window
and any number of clients never get each other's tokens or model. A client that goes away while
its reply is queued or streaming cancels it, which frees the engine for the next request.
"""

from __future__ import annotations

import hmac
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.engine.client import EngineClient, GenerationStream
from desktop_llm.server.config import ServerConfig
from desktop_llm.server.openai_requests import ApiError, ParsedRequest, parse_chat, parse_completion
from desktop_llm.server.openai_responses import ResponseBuilder, usage_of
from desktop_llm.server.request_log import LogEntry
from desktop_llm.server.served_models import ServedModels
from desktop_llm.server.token_pump import TokenPump, sse_frame

MAX_BODY_BYTES = 16 * 1024 * 1024
_POLL_SECONDS = 0.1  # how often a waiting request checks that its client is still there
_ENGINE_STATUS = {"invalid_request": 400, "unsupported_parameter": 400, "template_error": 400,
                  "context_overflow": 400, "model_not_found": 404, "engine_crashed": 503,
                  "model_load_failed": 500, "out_of_memory": 503}


class ClientGone(Exception):
    """The caller closed the connection."""


class LocalServer:
    """Start with ``start()``; ``url`` is then where it listens. ``on_log`` gets a ``LogEntry`` a request."""

    def __init__(self, client: EngineClient, config: ServerConfig | None = None, api_key: str | None = None,
                 on_log: Callable[[LogEntry], None] | None = None, models: ServedModels | None = None) -> None:
        self.client = client
        self.config = config or ServerConfig()
        self.api_key = api_key or None
        self.on_log = on_log
        self.models = models or ServedModels(client, self.config.idle_unload_seconds)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        if self._httpd is None:
            return ""
        host, port = self._httpd.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/v1"

    def start(self) -> str:
        """Listen and serve on a background thread; raise ``DesktopLLMError`` saying why it cannot."""
        problem = self.config.problem(self.api_key)
        if problem:
            raise DesktopLLMError(f"The server cannot start: {problem}")
        server_cls = _DualStackServer if ":" in self.config.host else ThreadingHTTPServer
        try:
            httpd = server_cls((self.config.host, self.config.port), _Handler)
        except OSError as exc:
            hint = ("Another program uses that port; pick another port or stop that program."
                    if exc.errno in (98, 48, 10048) else "Check the address is one of this machine's.")
            raise DesktopLLMError(f"The server cannot listen on {self.config.host}:{self.config.port}: "
                                  f"{exc.strerror or exc}.", hint) from None
        httpd.daemon_threads = True
        httpd.app = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="local-server", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        self.models.close()

    def log(self, entry: LogEntry) -> None:
        if self.on_log is not None:
            try:
                self.on_log(entry)
            except Exception:  # noqa: BLE001 - a broken log view must not break serving
                pass


class _DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams
    server_version = "desktop-llm"
    error_content_type = "application/json"

    @property
    def app(self) -> LocalServer:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the request log (without keys or bodies) replaces http.server's stderr lines

    # -- plumbing ------------------------------------------------------------------------------
    def _cors_headers(self) -> None:
        origin = self.headers.get("Origin")
        allowed = self.app.config.allowed_origins
        if origin and allowed and ("*" in allowed or origin in allowed):
            self.send_header("Access-Control-Allow-Origin", "*" if "*" in allowed else origin)
            self.send_header("Vary", "Origin")

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._cors_headers()
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        # One small write per token: without TCP_NODELAY, Nagle's algorithm would hold each back for an ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._cors_headers()
        self.end_headers()
        self.wfile.flush()

    def _send_event(self, payload: dict[str, Any] | str) -> None:
        self._write(sse_frame(payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)))

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:  # BrokenPipe, ConnectionReset: the client left
            raise ClientGone() from exc

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    def _client_gone(self) -> bool:
        """True when the peer closed its side (checked while a reply waits, before any byte is written)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _authorized(self) -> bool:
        key = self.app.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        return hmac.compare_digest(token.encode(), key.encode())

    # -- routes --------------------------------------------------------------------------------
    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        origin = self.headers.get("Origin")
        allowed = self.app.config.allowed_origins
        if origin and allowed and ("*" in allowed or origin in allowed):
            self.send_response(204)
            self._cors_headers()
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send_json(403, ApiError(403, "Cross-origin requests are not allowed from this origin.",
                                          code="cors_not_allowed").body())

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        started = time.perf_counter()
        path = self.path.split("?", 1)[0].rstrip("/")
        entry = LogEntry(method, path, 200, self.client_address[0])
        try:
            if path == "/health" and method == "GET":
                self._send_json(200, {"status": "ok"})
                return
            if not self._authorized():
                raise ApiError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
                               code="invalid_api_key")
            if method == "GET" and path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [self.app.models.describe(r)
                                                                 for r in self.app.models.models()]})
            elif method == "GET" and path.startswith("/v1/models/"):
                name = path[len("/v1/models/"):]
                entry.model = name
                self._send_json(200, self.app.models.describe(self.app.models.find(name)))
            elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
                body = self._read_json(entry)
                parse = parse_chat if path.endswith("chat/completions") else parse_completion
                parsed = parse(body)
                entry.model, entry.stream = parsed.model, parsed.stream
                self._generate(parsed, entry)
            else:
                raise ApiError(404, f"No route {method} {path}. This server offers GET /v1/models, "
                               "POST /v1/chat/completions and POST /v1/completions.", code="not_found")
        except ApiError as exc:
            entry.status, entry.error = exc.status, exc.message
            self._send_json(exc.status, exc.body())
        except ClientGone:
            entry.status, entry.error = 499, "the client closed the connection; its reply was cancelled"
            self.close_connection = True
        except OSError:
            entry.status, entry.error = 499, "the client closed the connection"
            self.close_connection = True
        finally:
            entry.duration_ms = (time.perf_counter() - started) * 1000
            self.app.log(entry)

    def _read_json(self, entry: LogEntry) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number.") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, f"The request body is over {MAX_BODY_BYTES // 2**20} MB.")
        raw = self.rfile.read(length)
        if self.app.config.log_bodies:
            entry.body = raw.decode("utf-8", errors="replace")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"The request body is not valid JSON: {exc}.", code="invalid_json") from None

    # -- generation ----------------------------------------------------------------------------
    def _generate(self, parsed: ParsedRequest, entry: LogEntry) -> None:
        app = self.app
        ref = app.models.find(parsed.model)
        entry.model = ref.id
        load = app.models.load_request(ref)
        builder = ResponseBuilder(parsed, ref.id)
        app.models.begin(load)
        stream: GenerationStream | None = None
        try:
            pump = TokenPump(self.connection, builder.token_json) if parsed.stream else None
            stream = app.client.generate(prompt=parsed.prompt, messages=parsed.messages, params=parsed.params,
                                         alternatives=parsed.alternatives, model_load=load,
                                         fit_context=parsed.messages is not None,
                                         on_event=pump.on_event if pump else None)
            if pump is not None:
                self._stream_reply(stream, pump, builder, entry)
            else:
                tokens, done = self._collect(stream)
                self._send_json(200, builder.response(tokens, done))
                self._note(entry, done, "".join(t["text"] for t in tokens))
        except DesktopLLMError as exc:
            raise _api_error(exc) from None
        except ClientGone:
            if stream is not None:
                stream.cancel()
            raise
        finally:
            app.models.end()

    def _next(self, stream: GenerationStream) -> dict[str, Any]:
        """The stream's next event; while none comes, watch for the client leaving."""
        return self._await(stream, stream.next_event, lambda: False)

    def _await(self, stream: GenerationStream, take: Callable[[float], dict[str, Any] | None],
               gone: Callable[[], bool]) -> dict[str, Any]:
        while True:
            event = take(_POLL_SECONDS)
            if event is not None:
                if event.get("event") == "error":
                    raise stream.error_of(event)
                return event
            if gone() or self._client_gone():
                raise ClientGone()

    def _collect(self, stream: GenerationStream) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        tokens: list[dict[str, Any]] = []
        while (event := self._next(stream))["event"] != "done":
            if event["event"] == "token":
                tokens.append(event)
        return tokens, event

    def _pumped(self, stream: GenerationStream, pump: TokenPump) -> dict[str, Any]:
        return self._await(stream, pump.next, lambda: pump.gone)

    def _stream_reply(self, stream: GenerationStream, pump: TokenPump, builder: ResponseBuilder,
                      entry: LogEntry) -> None:
        # Wait for the first event before the 200: an error while loading the model or reading the
        # prompt can still be answered with its proper status.
        event = self._pumped(stream, pump)
        self._start_stream()
        first = builder.first_chunk()
        if first is not None:
            self._send_event(first)
        pump.streaming = True
        try:
            while event["event"] != "done":
                if event["event"] == "_rest":  # the part of a chunk the event thread could not send at once
                    self._write(event["data"])
                elif event["event"] == "token":
                    pump.pieces.append(event["text"])
                    self._write(sse_frame(builder.token_json(event)))
                event = self._pumped(stream, pump)
        except DesktopLLMError as exc:  # after the 200: the error goes in the stream, as OpenAI does
            pump.hold()
            error = _api_error(exc)
            entry.status, entry.error = error.status, error.message
            self._send_event(error.body())
            self._send_event("[DONE]")
            self._end_stream()
            return
        pump.hold()
        for chunk in builder.final_chunks(event):
            self._send_event(chunk)
        self._send_event("[DONE]")
        self._end_stream()
        self._note(entry, event, "".join(pump.pieces))

    def _note(self, entry: LogEntry, done: dict[str, Any], text: str) -> None:
        usage = usage_of(done)
        entry.prompt_tokens, entry.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
        if self.app.config.log_bodies:
            entry.reply = text


def _api_error(exc: DesktopLLMError) -> ApiError:
    status = _ENGINE_STATUS.get(exc.code, 500)
    message = f"{exc.message} {exc.hint}".strip() if exc.hint else exc.message
    return ApiError(status, message, code=exc.code, kind="invalid_request_error" if status < 500 else "server_error")
