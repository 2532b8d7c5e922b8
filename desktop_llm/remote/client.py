"""A client for one remote OpenAI-compatible endpoint, with the local engine client's interface.

``RemoteClient.generate`` returns a ``RemoteStream`` whose events are the engine's own (token,
then done or error; see docs/engine-protocol.md), so chat and the playground treat a remote model
like a local one. The HTTP work runs on a daemon thread with the standard library's http.client:
every wait on the network has a timeout (the provider's), and ``cancel()`` shuts the socket down
from any thread, so a stream always ends, whatever the server does.

What the endpoint cannot give is refused clearly rather than faked: token ids (so tokenize,
step mode and branching), and the sampler's internals.
"""

from __future__ import annotations

import codecs
import email.utils
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from desktop_llm.core.errors import (
    DesktopLLMError,
    InvalidRequest,
    NoModelLoaded,
    RemoteAuthFailed,
    RemoteBadRequest,
    RemoteDisconnected,
    RemoteError,
    RemoteModelNotFound,
    RemoteRateLimited,
    RemoteServerError,
    RemoteTimeout,
    RemoteUnreachable,
    error_from_code,
)
from desktop_llm.core.models import ModelRef
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.client import EventCallback, GenerationStream
from desktop_llm.engine.protocol import FINAL_EVENTS, MAX_ALTERNATIVES
from desktop_llm.remote.params import openai_fields
from desktop_llm.remote.providers import Provider, remote_model_id, split_remote_model_id
from desktop_llm.remote.sse import SSEEvent, SSEParser

_ERROR_BODY_LIMIT = 64 * 1024
_JSON_BODY_LIMIT = 32 * 1024 * 1024
_READ_SIZE = 64 * 1024
_SHOWN_MODELS = 5  # how many served models a "not served" message lists
# Keys under which endpoints report a model's context length in /models.
_CONTEXT_KEYS = ("context_length", "max_model_len", "context_window", "max_context_length")

_NOT_FOR_REMOTE_HINT = "Use a local model for the Tokens tab, step mode and branching from an alternative."


def _not_available(what: str) -> RemoteError:
    return RemoteError(f"{what} is not available for remote models: the endpoint does not expose tokens "
                       "or the sampler.", _NOT_FOR_REMOTE_HINT)


class _Http:
    """One provider's HTTP details: where to connect, the headers, and turning failures into app errors."""

    def __init__(self, provider: Provider, api_key: str | None) -> None:
        self.provider = provider
        self.api_key = (api_key or "").strip() or None
        parts = urlsplit(provider.base_url)
        self.https = parts.scheme.lower() == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")

    @property
    def where(self) -> str:
        return f"{self.provider.name} at {self.provider.base_url}"

    def clean(self, text: str, limit: int = 500) -> str:
        """A server's text made safe to show: the key taken out, whitespace tidied, length capped."""
        text = " ".join(str(text).split())
        if self.api_key:
            text = text.replace(self.api_key, "…")
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def open(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None,
             on_socket: Callable[[socket.socket], None] | None = None, model: str | None = None,
             known_models: Sequence[str] | None = None,
             ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request; return the connection and a response with a 2xx status (else raise the mapped error).

        ``on_socket`` gets the connected socket (a stream keeps it to shut it down on cancel).
        """
        read_timeout = timeout or self.provider.timeout_seconds
        connect_timeout = min(10.0, read_timeout)
        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=connect_timeout, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)
        try:
            self._connect(conn, connect_timeout)
            assert conn.sock is not None
            conn.sock.settimeout(read_timeout)  # from here on: the longest wait for a byte
            if on_socket is not None:
                on_socket(conn.sock)
            headers = {"Accept": "text/event-stream, application/json", "User-Agent": "desktop-llm",
                       "Connection": "close"}
            data = None
            if body is not None:
                data = json.dumps(body).encode("utf-8")
                headers["Content-Type"] = "application/json"
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            try:
                conn.request(method, self.prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
            except TimeoutError as exc:
                raise RemoteTimeout(f"{self.where} did not answer within {read_timeout:g} s.",
                                    "The server may be busy or stuck loading a model; try again, or raise the "
                                    "provider's timeout in Settings → Remote providers.") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise RemoteDisconnected(f"{self.where} closed the connection without answering "
                                         f"({self.clean(type(exc).__name__ + ': ' + str(exc), 200)}).",
                                         "Check that the address is an OpenAI-compatible server, and try again."
                                         ) from exc
            if resp.status >= 400:
                try:
                    raw = resp.read(_ERROR_BODY_LIMIT)
                except (OSError, http.client.HTTPException):
                    raw = b""
                raise self.status_error(resp.status, resp.getheader("Retry-After"), raw, path, model, known_models)
            return conn, resp
        except BaseException:
            conn.close()
            raise

    def _connect(self, conn: http.client.HTTPConnection, connect_timeout: float) -> None:
        try:
            conn.connect()
        except TimeoutError as exc:
            raise RemoteTimeout(f"{self.where} did not accept the connection within {connect_timeout:g} s.",
                                "Check the address and that the server is running and reachable from here."
                                ) from exc
        except ssl.SSLError as exc:
            raise RemoteUnreachable(f"Could not reach {self.provider.name} at {self.provider.base_url}: the secure "
                                    f"connection failed ({self.clean(exc.reason or str(exc), 200)}).",
                                    "Check the address (http:// or https://) and the server's certificate.") from exc
        except OSError as exc:
            raise RemoteUnreachable(f"Could not reach {self.provider.name} at {self.provider.base_url}: "
                                    f"{_os_reason(exc)}.",
                                    "Check the address, and that the server is running.") from exc

    def status_error(self, status: int, retry_after: str | None, raw: bytes, path: str,
                     model: str | None = None, known_models: Sequence[str] | None = None) -> RemoteError:
        """The app error for an HTTP error status, with the endpoint's own message when it sent one."""
        said = self.clean(_error_message(raw))
        name, url = self.provider.name, self.provider.base_url
        tail = f": {said}" if said else ""
        if status in (401, 403):
            if not self.api_key:
                return RemoteAuthFailed(f"{name} at {url} needs an API key (HTTP {status}){tail}.",
                                        f"Enter the key for {name} in Settings → Remote providers.")
            return RemoteAuthFailed(f"{name} at {url} refused the API key (HTTP {status}){tail}.",
                                    f"Check the key for {name} in Settings → Remote providers.")
        if status == 404:
            if model and (not said or "model" in said.lower()):
                served = [m for m in (known_models or []) if m != model]
                hint = "Pick another model, or refresh the provider's model list."
                if served:
                    more = ", …" if len(served) > _SHOWN_MODELS else ""
                    hint = f"It serves: {', '.join(served[:_SHOWN_MODELS])}{more}. " + hint
                return RemoteModelNotFound(f"{name} at {url} does not serve the model {model!r}{tail}.", hint)
            return RemoteBadRequest(f"{name} has nothing at {url}{path} (HTTP 404){tail}.",
                                    "Check the base URL: OpenAI-compatible servers usually serve the API under "
                                    "/v1 (for example http://127.0.0.1:8080/v1).")
        if status == 429:
            seconds = _retry_after_seconds(retry_after)
            error = RemoteRateLimited(
                f"{name} is rate limiting requests (HTTP 429){tail}.",
                f"Wait {seconds:g} s before trying again (the server asked for that)." if seconds is not None
                else "Wait a moment and try again, or check your plan's limits with the provider.",
                retry_after=seconds)
            return error
        if status >= 500:
            return RemoteServerError(f"{name} at {url} had a server error (HTTP {status}){tail}.",
                                     "Try again; if it keeps failing, check the server's log.")
        return RemoteBadRequest(f"{name} refused the request (HTTP {status}){tail}.",
                                "Change what the message points at (for example the sampling settings or "
                                "max tokens) and try again.")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused (nothing is listening on that port)"
    if isinstance(exc, socket.gaierror):
        return f"the host name could not be resolved ({exc.strerror or exc})"
    return str(exc.strerror or exc)


def _error_message(raw: bytes) -> str:
    """The message in an error body: OpenAI's {"error": {"message"}}, vLLM's {"message"}, FastAPI's {"detail"}."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text if text and not text.lstrip().startswith("<") else ""  # an HTML error page says little
    return _message_in(data) or ""


def _message_in(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, list) and data:
        return _message_in(data[0])
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "msg"):
            found = _message_in(data.get(key))
            if found:
                return found
    return None


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, round((when - datetime.now(timezone.utc)).total_seconds()))


def _context_length(entry: dict[str, Any]) -> int | None:
    candidates = [entry.get(k) for k in _CONTEXT_KEYS]
    meta = entry.get("meta")
    if isinstance(meta, dict):
        candidates += [meta.get("n_ctx_train"), meta.get("n_ctx")]
    top = entry.get("top_provider")
    if isinstance(top, dict):
        candidates.append(top.get("context_length"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# -- Log-probabilities -----------------------------------------------------------------------------------
def _piece(entry: dict[str, Any]) -> str:
    raw = entry.get("bytes")
    if isinstance(raw, list) and raw and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw).decode("utf-8", errors="replace")
    token = entry.get("token")
    return token if isinstance(token, str) else ""


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _alternative(token_id: Any, text: str, logprob: Any) -> dict[str, Any]:
    return {"token_id": token_id if isinstance(token_id, int) and not isinstance(token_id, bool) else None,
            "text": text, "logprob": _as_float(logprob)}


def _by_likelihood(alts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(alts, key=lambda a: -a["logprob"] if a["logprob"] is not None else float("inf"))


def logprob_entries(logprobs: Any) -> list[dict[str, Any]]:
    """The tokens in a choice's ``logprobs``, as ``{text, bytes, token_id, logprob, alternatives}``.

    Two shapes exist: chat's (and llama.cpp's) ``{"content": [{token, logprob, bytes, top_logprobs}]}``
    and the legacy completions' ``{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}]}``.
    """
    if not isinstance(logprobs, dict):
        return []
    out: list[dict[str, Any]] = []
    content = logprobs.get("content")
    if isinstance(content, list):
        for entry in content:
            if not isinstance(entry, dict):
                continue
            tops = entry.get("top_logprobs") if isinstance(entry.get("top_logprobs"), list) else []
            alts = [_alternative(t.get("id"), _piece(t), t.get("logprob")) for t in tops if isinstance(t, dict)]
            raw = entry.get("bytes")
            out.append({"text": entry.get("token") if isinstance(entry.get("token"), str) else "",
                        "bytes": bytes(raw) if isinstance(raw, list) and all(
                            isinstance(b, int) and 0 <= b < 256 for b in raw) else None,
                        "token_id": _alternative(entry.get("id"), "", None)["token_id"],
                        "logprob": _as_float(entry.get("logprob")),
                        "alternatives": _by_likelihood(alts)})
        return out
    tokens = logprobs.get("tokens")
    if not isinstance(tokens, list):
        return []
    lps = logprobs.get("token_logprobs") if isinstance(logprobs.get("token_logprobs"), list) else []
    tops = logprobs.get("top_logprobs") if isinstance(logprobs.get("top_logprobs"), list) else []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        alts = [_alternative(None, str(t), lp) for t, lp in top.items()]
        out.append({"text": token if isinstance(token, str) else "", "bytes": None, "token_id": None,
                    "logprob": _as_float(lps[i]) if i < len(lps) else None,
                    "alternatives": _by_likelihood(alts)})
    return out


# -- The stream ----------------------------------------------------------------------------------------
class RemoteStream(GenerationStream):
    """A generate request to a remote endpoint, with the engine's ``GenerationStream`` surface.

    Iterate it for token events; ``result`` / ``wait()`` give the done event (or raise the error).
    """

    def __init__(self, client: RemoteClient, rid: str, op: str, on_event: EventCallback | None,
                 fields: dict[str, Any] | None = None) -> None:
        super().__init__(client, rid, op, on_event, fields)  # type: ignore[arg-type]  # same surface
        self.error: DesktopLLMError | None = None  # the error behind an error event, as raised
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._connected = False
        # What the reply has produced so far (read by a cancel from another thread for its done event).
        self._started = time.perf_counter()
        self._first_at: float | None = None
        self._last_at: float | None = None
        self._pieces: list[str] = []
        self._count = 0
        self._usage: dict[str, int] = {}
        self._finish_reason: str | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    # -- the engine's Request / GenerationStream surface -------------------------------------------
    def _deliver(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self.finished.is_set():
                return
            event = {"id": self.id, **event}
            if event.get("event") in FINAL_EVENTS:
                self.final = event
                self.finished.set()
        if self._on_event is not None:
            self._on_event(event)
        self._events.put(event)

    def error_of(self, event: dict[str, Any]) -> DesktopLLMError:  # type: ignore[override]
        if self.error is not None and event is self.final:
            return self.error
        return error_from_code(event.get("code", "remote_error"), event.get("message", "Remote error."),
                               event.get("hint", ""))

    def cancel(self) -> None:
        """Stop reading and close the connection; the stream ends with ``done``, ``finish_reason: "cancelled"``."""
        with self._lock:
            if self.finished.is_set():
                return
            self.cancel_requested = True
            sock, connected = self._sock, self._connected
        if sock is not None:
            _shutdown(sock)  # wakes the reader thread at once; it sends the done event
        elif not connected:
            # Still connecting (up to the connect timeout): end now; the reader stops when connect returns.
            self._done("cancelled")

    # -- the reader thread ---------------------------------------------------------------------------
    def _keep_socket(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            cancelled = self.cancel_requested
        if cancelled:
            _shutdown(sock)

    def _run(self, ep: _Http, path: str, body: dict[str, Any] | Exception, model: str,
             known: Sequence[str] | None) -> None:
        conn: http.client.HTTPConnection | None = None
        try:
            if isinstance(body, Exception):
                raise body
            conn, resp = ep.open("POST", path, body, on_socket=self._keep_socket, model=model,
                                   known_models=known)
            with self._lock:
                self._connected = True
            if self.cancel_requested:
                self._done("cancelled")
                return
            if "application/json" in (resp.getheader("Content-Type") or "").lower():
                self._read_whole(ep, resp)  # a server that does not stream answers in one piece
            else:
                self._read_stream(ep, resp)
        except DesktopLLMError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug or an odd server must still end the stream, never hang it
            self._fail(RemoteError(f"The reply from {ep.where} failed: {ep.clean(f'{type(exc).__name__}: {exc}')}.",
                                   "Try again; if it keeps failing, check the server's log."))
        finally:
            with self._lock:
                self._sock = None
                self._connected = True
            if conn is not None:
                conn.close()
            self.client._forget(self)

    def _fail(self, exc: DesktopLLMError) -> None:
        if self.cancel_requested:
            self._done("cancelled")  # the error is the socket we shut down: to the user, a finished cancel
            return
        with self._lock:
            if self.finished.is_set():
                return
            self.error = exc
        self._deliver({"event": "error", "code": exc.code, "message": exc.message, "hint": exc.hint})

    def _read_stream(self, ep: _Http, resp: http.client.HTTPResponse) -> None:
        parser = SSEParser()
        timeout = ep.provider.timeout_seconds
        while True:
            try:
                chunk = resp.read1(_READ_SIZE)
            except TimeoutError as exc:
                if self._finish_reason is not None:
                    break  # the reply is complete; only the usage chunk or [DONE] is late
                raise RemoteTimeout(f"{ep.where} sent nothing for {timeout:g} s in the middle of the reply.",
                                    "The server may be overloaded or stuck; try again, or raise the provider's "
                                    "timeout in Settings → Remote providers.") from exc
            except (OSError, http.client.HTTPException, ValueError):
                if self.cancel_requested:
                    break
                chunk = b""  # a reset or a broken chunked body: the connection is gone
            if self.cancel_requested:
                break
            events = parser.feed(chunk) if chunk else parser.close()
            for event in events:
                if self._handle(ep, event):
                    self._finish()
                    return
            if not chunk:
                break
        if self.cancel_requested:
            self._done("cancelled")
        elif self._finish_reason is not None:
            self._finish()
        else:
            raise RemoteDisconnected(f"{ep.where}: the connection closed before the reply ended.",
                                     "The server may have crashed or restarted; check it and try again.")

    def _read_whole(self, ep: _Http, resp: http.client.HTTPResponse) -> None:
        try:
            data = json.loads(resp.read(_JSON_BODY_LIMIT))
        except TimeoutError as exc:
            raise RemoteTimeout(f"{ep.where} sent nothing for {ep.provider.timeout_seconds:g} s in the middle "
                                "of the reply.", "Try again, or raise the provider's timeout.") from exc
        except ValueError as exc:
            raise RemoteError(f"{ep.where} sent a reply that is not valid JSON.",
                              "Check that the base URL points at an OpenAI-compatible API.") from exc
        self._chunk(ep, data, whole=True)
        if self.cancel_requested:
            self._done("cancelled")
        else:
            self._finish_reason = self._finish_reason or "stop"
            self._finish()

    def _handle(self, ep: _Http, event: SSEEvent) -> bool:
        """Process one SSE event; True at ``[DONE]``."""
        if event.data.strip() == "[DONE]":
            return True
        try:
            data = json.loads(event.data)
        except ValueError as exc:
            raise RemoteError(f"{ep.where} sent a reply chunk that is not JSON: {ep.clean(event.data, 120)}",
                              "Check that the base URL points at an OpenAI-compatible API.") from exc
        self._chunk(ep, data)
        return False

    def _chunk(self, ep: _Http, data: Any, whole: bool = False) -> None:
        if not isinstance(data, dict):
            return
        if data.get("error") is not None:
            said = ep.clean(_message_in(data["error"]) or json.dumps(data["error"]))
            raise RemoteServerError(f"{ep.where} reported an error during the reply: {said}",
                                    "Try again; if it keeps failing, check the server's log.")
        usage = data.get("usage")
        if isinstance(usage, dict):
            for key in ("prompt_tokens", "completion_tokens"):
                if isinstance(usage.get(key), int):
                    self._usage[key] = usage[key]
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            return
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
        if choice is None:
            return
        part = choice.get("message" if whole else "delta")
        content = part.get("content") if isinstance(part, dict) else choice.get("text")  # chat, or completions
        self._tokens(content if isinstance(content, str) else "", choice.get("logprobs"))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self._finish_reason = reason

    def _tokens(self, content: str, logprobs: Any) -> None:
        """Token events for one delta: one per token when the endpoint sent log-probabilities, else one."""
        entries = logprob_entries(logprobs)
        if not entries:
            if content:
                self._token(content, None, [])
            return
        if all(e["bytes"] is not None for e in entries):
            texts = [self._decoder.decode(e["bytes"]) for e in entries]  # a character may span tokens
        else:
            texts = [e["text"] for e in entries]
        if "".join(texts) != content:
            # The tokens do not spell the delta (held-back text, odd byte tokens): the delta's text is what
            # the user must see, so it goes on the first token and the probabilities stay per token.
            texts = [content] + [""] * (len(entries) - 1)
        for entry, text in zip(entries, texts, strict=True):
            self._token(text, entry["logprob"], entry["alternatives"], entry["token_id"])

    def _token(self, text: str, logprob: float | None, alternatives: list[dict[str, Any]],
               token_id: int | None = None) -> None:
        now = time.perf_counter()
        self._first_at = self._first_at or now
        self._last_at = now
        self._pieces.append(text)
        self._count += 1
        self._deliver({"event": "token", "token_id": token_id, "text": text, "logprob": logprob,
                       "alternatives": alternatives})

    def _finish(self) -> None:
        reason = self._finish_reason
        self._done("length" if reason == "length" else "stop", remote_reason=reason)

    def _done(self, finish_reason: str, remote_reason: str | None = None) -> None:
        end = time.perf_counter()
        completion = self._usage.get("completion_tokens", self._count)
        usage: dict[str, int] = {"completion_tokens": completion}
        if "prompt_tokens" in self._usage:
            usage = {"prompt_tokens": self._usage["prompt_tokens"], **usage}
        first, last = self._first_at, self._last_at
        decode = (last - first) if first and last else 0.0
        params = self.fields.get("params") or {}
        event: dict[str, Any] = {
            "event": "done",
            "finish_reason": finish_reason,
            "stop_sequence": None,  # the endpoint applies stop sequences and does not say which matched
            "context_full": False,
            "text": "".join(self._pieces),
            "usage": usage,
            "n_ctx": self.fields.get("n_ctx"),
            "dropped_messages": 0,
            "ttft_ms": round(((first or end) - self._started) * 1000, 2),
            "tokens_per_second": round((completion - 1) / decode, 2) if completion > 1 and decode > 0 else None,
            "total_ms": round((end - self._started) * 1000, 2),
            "seed": params.get("seed"),
        }
        if remote_reason not in (None, "stop", "length"):
            event["remote_finish_reason"] = remote_reason  # "content_filter", "tool_calls"...
        self._deliver(event)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the other side


# -- The client ----------------------------------------------------------------------------------------
class RemoteClient:
    """One remote provider, used like ``EngineClient``: ``load`` a model it lists, then ``generate``."""

    def __init__(self, provider: Provider, api_key: str | None = None) -> None:
        self.provider = provider
        self._http = _Http(provider, api_key)
        self._model: ModelRef | None = None
        self._load_info: dict[str, Any] | None = None
        self._known_models: list[str] | None = None  # ids from the last /models, for "it serves…" hints
        self._streams: set[RemoteStream] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.state = "ready"
        self.on_state: Callable[[str], None] | None = None
        self.restarts = 0  # the engine client's counters, for callers that show them
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"RemoteClient(provider={self.provider.id!r}, model={self.model_name!r})"

    @property
    def model(self) -> ModelRef | None:
        return self._model

    @property
    def model_name(self) -> str | None:
        """The endpoint's id of the loaded model."""
        return self._model.repo_id if self._model else None

    # -- models ------------------------------------------------------------------------------------
    def list_models(self, timeout: float | None = None) -> list[ModelRef]:
        """The models the endpoint serves (GET {base}/models), as library entries."""
        data = self._get_json("/models", timeout)
        entries = data.get("data") if isinstance(data, dict) else data
        if isinstance(data, dict) and not isinstance(entries, list):
            entries = data.get("models")  # Ollama's native shape, some proxies
        if not isinstance(entries, list):
            raise RemoteError(f"{self._http.where} did not answer like an OpenAI-compatible server: "
                              "its /models has no list of models.",
                              "Check the base URL: it usually ends in /v1 (for example http://127.0.0.1:8080/v1).")
        refs: list[ModelRef] = []
        for entry in entries:
            if isinstance(entry, str):
                entry = {"id": entry}
            if not isinstance(entry, dict):
                continue
            model = entry.get("id") or entry.get("model") or entry.get("name")
            if not isinstance(model, str) or not model:
                continue
            refs.append(ModelRef(
                id=remote_model_id(self.provider.id, model), name=f"{model} · {self.provider.name}",
                path=self.provider.base_url, format="remote", source="remote", repo_id=model,
                context_length=_context_length(entry)))
        self._known_models = [r.repo_id for r in refs if r.repo_id]
        return refs

    def _get_json(self, path: str, timeout: float | None) -> Any:
        conn, resp = self._http.open("GET", path, timeout=timeout)
        try:
            raw = resp.read(_JSON_BODY_LIMIT)
        except TimeoutError as exc:
            raise RemoteTimeout(f"{self._http.where} stopped sending its answer for "
                                f"{timeout or self.provider.timeout_seconds:g} s.", "Try again.") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteDisconnected(f"{self._http.where}: the connection closed before the answer ended.",
                                     "Try again.") from exc
        finally:
            conn.close()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RemoteError(f"{self._http.where} did not answer with JSON at {self.provider.base_url}{path}.",
                              "Check the base URL: it usually ends in /v1 (for example http://127.0.0.1:8080/v1)."
                              ) from exc

    def _endpoint_model(self, model: ModelRef | str | None) -> str:
        """The endpoint's id for ``model``: a ref's repo_id, a remote model id, or the bare id."""
        if isinstance(model, ModelRef):
            if model.repo_id and (model.source == "remote" or model.format == "remote"):
                split = split_remote_model_id(model.id)
                if split and split[0] != self.provider.id:
                    raise InvalidRequest(f"{model.name} belongs to another provider, not {self.provider.name}.")
                return model.repo_id
            model = model.id
        if not model:
            raise InvalidRequest(f"Pick one of {self.provider.name}'s models to load.")
        split = split_remote_model_id(model)
        if split is None:
            return model
        if split[0] != self.provider.id:
            raise InvalidRequest(f"{model} belongs to another provider ({split[0]}), not {self.provider.name}.")
        return split[1]

    def load(self, model: ModelRef | str, backend: str = "auto", options: dict[str, Any] | None = None,
             on_event: EventCallback | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Check the endpoint serves ``model`` and use it for ``generate``; returns a loaded event.

        Nothing is loaded here: the endpoint has its models. ``backend`` and ``options`` (context size,
        GPU layers) are the endpoint's business and are not sent.
        """
        started = time.perf_counter()
        rid = f"remote-load-{next(self._ids)}"
        try:
            wanted = self._endpoint_model(model)
            if on_event is not None:
                on_event({"id": rid, "event": "progress", "stage": f"asking {self.provider.name}", "fraction": 0.0})
            refs = self.list_models(timeout)
            ref = next((r for r in refs if r.repo_id == wanted), None)
            if ref is None:
                raise self._not_served(wanted)
        except DesktopLLMError as exc:
            if on_event is not None:
                on_event({"id": rid, "event": "error", "code": exc.code, "message": exc.message, "hint": exc.hint})
            raise
        info = {"id": rid, "event": "loaded", "backend": "remote", "device": self.provider.name,
                "n_ctx": ref.context_length, "n_ctx_train": ref.context_length, "n_vocab": None,
                "architecture": None, "has_chat_template": None, "options": {},
                "load_seconds": round(time.perf_counter() - started, 3), "model": ref.to_dict()}
        self._model, self._load_info = ref, info
        self._set_state("ready")
        if on_event is not None:
            on_event(info)
        return info

    def _not_served(self, model: str) -> RemoteModelNotFound:
        served = self._known_models or []
        more = ", …" if len(served) > _SHOWN_MODELS else ""
        hint = (f"It serves: {', '.join(served[:_SHOWN_MODELS])}{more}." if served
                else "It lists no models; check the server has one loaded.")
        return RemoteModelNotFound(f"{self.provider.name} at {self.provider.base_url} does not serve the model "
                                   f"{model!r}.", hint)

    # -- generation --------------------------------------------------------------------------------
    def generate(self, prompt: str | None = None, messages: Sequence[dict[str, Any]] | None = None,
                 params: SamplingParams | dict[str, Any] | None = None, alternatives: int = 0,
                 on_event: EventCallback | None = None, fit_context: bool = False,
                 continuation: Sequence[int] | None = None,
                 model_load: dict[str, Any] | None = None) -> RemoteStream:
        """Start a reply to a raw ``prompt`` (POST /completions) or to chat ``messages`` (POST /chat/completions).

        Returns at once; problems (no model, a refused parameter, a continuation) arrive as the
        stream's error event, as with the engine. ``fit_context`` is ignored: the endpoint trims.
        ``model_load`` is accepted for the engine client's signature and ignored.
        """
        fields: dict[str, Any] = {"n_ctx": self._load_info.get("n_ctx") if self._load_info else None}
        body: dict[str, Any] | Exception
        try:
            sampling = params if isinstance(params, SamplingParams) else SamplingParams.from_dict(params)
            fields["params"] = sampling.to_dict()
            body = self._body(prompt, messages, sampling, alternatives, continuation)
        except DesktopLLMError as exc:
            body = exc
        if self.state != "ready":
            self._set_state("ready")
        path = "/chat/completions" if messages is not None else "/completions"
        model = self.model_name or ""
        stream = RemoteStream(self, f"remote-{next(self._ids)}", "generate", on_event, fields)
        with self._lock:
            self._streams.add(stream)
        threading.Thread(target=stream._run, args=(self._http, path, body, model, self._known_models),
                         name=f"remote-{self.provider.id}", daemon=True).start()
        return stream

    def _body(self, prompt: str | None, messages: Sequence[dict[str, Any]] | None, params: SamplingParams,
              alternatives: int, continuation: Sequence[int] | None) -> dict[str, Any]:
        if continuation:
            raise _not_available("Branching from an alternative token")
        if self._model is None or not self.model_name:
            raise NoModelLoaded(f"No model of {self.provider.name} is loaded.", "Load one of its models first.")
        if isinstance(alternatives, bool) or not isinstance(alternatives, int) or \
                not 0 <= alternatives <= MAX_ALTERNATIVES:
            raise InvalidRequest(f"alternatives must be between 0 and {MAX_ALTERNATIVES}, not {alternatives!r}.")
        params.validate()
        body: dict[str, Any] = {"model": self.model_name, "stream": True,
                                **openai_fields(params, self.provider.sampling_extensions)}
        if messages is not None:
            body["messages"] = list(messages)
            body["stream_options"] = {"include_usage": True}
            if alternatives:
                body["logprobs"] = True
                body["top_logprobs"] = alternatives
        else:
            body["prompt"] = prompt or ""
            body["stream_options"] = {"include_usage": True}
            if alternatives:
                body["logprobs"] = alternatives
        return body

    def cancel(self, req: RemoteStream) -> None:
        req.cancel()

    def _forget(self, stream: RemoteStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    # -- what remote endpoints cannot do -----------------------------------------------------------
    def tokenize(self, text: str = "", add_special: bool = False, parse_special: bool = True) -> dict[str, Any]:
        raise _not_available("Tokenizing")

    def tokenize_messages(self, messages: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        raise _not_available("Tokenizing")

    def detokenize(self, tokens: list[int] | None = None) -> str:
        raise _not_available("Turning token ids into text")

    def next_token(self, prompt: str | None = None, messages: Sequence[dict[str, Any]] | None = None,
                   continuation: Sequence[int] | None = None,
                   params: SamplingParams | dict[str, Any] | None = None, top: int = 20,
                   timeout: float | None = None) -> dict[str, Any]:
        raise _not_available("Step mode")

    # -- life cycle --------------------------------------------------------------------------------
    def info(self, devices: bool = False) -> dict[str, Any]:
        return {"model": self._model.to_dict() if self._model else None, "provider": self.provider.name,
                "base_url": self.provider.base_url, "load": self._load_info}

    def unload(self, only_if: dict[str, Any] | None = None) -> None:
        """Forget the model (the endpoint keeps serving it) and cancel its replies in flight."""
        self._cancel_all()
        self._model, self._load_info = None, None

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel replies in flight. There is no process to stop: the next request makes the client ready again."""
        self._cancel_all()
        self._set_state("stopped")

    close = shutdown

    def stderr_tail(self) -> list[str]:
        return []

    def _cancel_all(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.cancel()

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(state)

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()
