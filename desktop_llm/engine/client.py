"""The Qt-free engine client, shared by the GUI, the CLI and the tests.

It starts ``python -m desktop_llm.engine`` as a child process and talks JSON lines over its
pipes. Every request is a ``Request`` whose events arrive on a queue (iterate it, or pass
``on_event``). The client never hangs on a dead engine: when the process ends, every pending
request ends with an ``EngineCrashed`` error, and the next request starts a fresh engine and
loads the last model again.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from desktop_llm.core.errors import DesktopLLMError, EngineCrashed, error_from_code
from desktop_llm.core.models import ModelRef
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.protocol import FINAL_EVENTS, MODEL_OPS, decode, encode

EventCallback = Callable[[dict[str, Any]], None]

# After a cancel, how long the engine gets to stop by itself before it is killed and restarted.
CANCEL_GRACE_SECONDS = 3.0


class Request:
    """One request in flight. Iterate it for its events; ``wait()`` for its final event."""

    def __init__(self, client: EngineClient, rid: str, op: str, on_event: EventCallback | None,
                 fields: dict[str, Any] | None = None) -> None:
        self.client = client
        self.id = rid
        self.op = op
        self.fields = fields or {}
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()  # C queue: cheap per token
        self._on_event = on_event
        self.final: dict[str, Any] | None = None
        self.finished = threading.Event()
        self.cancel_requested = False

    def _deliver(self, event: dict[str, Any]) -> None:
        if self.finished.is_set():
            return
        if event.get("event") in FINAL_EVENTS:
            self.final = event
            self.finished.set()
        if self._on_event is not None:
            self._on_event(event)
        self._events.put(event)

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Every event, the final one last. Raises the error if the request failed."""
        while True:
            event = self._events.get(timeout=timeout)
            if event.get("event") == "error":
                raise self.error_of(event)
            yield event
            if event.get("event") in FINAL_EVENTS:
                return

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None if none came within ``timeout`` s (lets a waiter check other things)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        if not self.finished.wait(timeout):
            raise TimeoutError(f"engine request {self.op} did not finish in {timeout} s")
        assert self.final is not None
        if self.final.get("event") == "error":
            raise self.error_of(self.final)
        return self.final

    @staticmethod
    def error_of(event: dict[str, Any]) -> DesktopLLMError:
        return error_from_code(event.get("code", "engine_error"), event.get("message", "Engine error."),
                               event.get("hint", ""))

    def cancel(self) -> None:
        self.client.cancel(self)


class GenerationStream(Request):
    """A generate request: iterate for token events; ``result`` is the done event."""

    def tokens(self) -> Iterator[dict[str, Any]]:
        for event in self.events():
            if event["event"] == "token":
                yield event

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.tokens()

    @property
    def result(self) -> dict[str, Any]:
        return self.wait()

    def text(self) -> str:
        return "".join(e["text"] for e in self.tokens())


def _prompt_fields(prompt: str | None, messages: Sequence[dict[str, Any]] | None,
                   params: SamplingParams | dict[str, Any] | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if messages is not None:
        fields["messages"] = list(messages)
    else:
        fields["prompt"] = prompt or ""
    if params is not None:
        fields["params"] = params.to_dict() if isinstance(params, SamplingParams) else params
    return fields


class EngineClient:
    """Talks to one engine process; restarts it on demand after a crash."""

    def __init__(self, python: str | None = None, env: dict[str, str] | None = None,
                 log_path: str | Path | None = None, cancel_grace: float = CANCEL_GRACE_SECONDS) -> None:
        self._python = python or sys.executable
        self._env = env
        self._log_path = Path(log_path) if log_path else None
        self.cancel_grace = cancel_grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._start_lock = threading.Lock()  # held through a restart and its model replay
        self._write_lock = threading.Lock()
        self._pending: dict[str, Request] = {}
        self._ids = itertools.count(1)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._last_load: dict[str, Any] | None = None  # replayed after a restart
        self.restarts = 0
        self.state = "stopped"  # stopped, starting, ready, crashed, restarting (reloading the model after a crash)
        self.on_state: Callable[[str], None] | None = None

    # -- process -------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(state)

    def _ensure_started(self) -> None:
        with self._start_lock:
            self._start_if_needed()

    def _start_if_needed(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._set_state("starting")
            env = dict(os.environ if self._env is None else self._env)
            env.setdefault("PYTHONUNBUFFERED", "1")
            self._proc = subprocess.Popen(
                [self._python, "-m", "desktop_llm.engine"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                start_new_session=True,  # Ctrl+C in a terminal goes to the app, not the engine
            )
            proc = self._proc
            threading.Thread(target=self._read_events, args=(proc,), name="engine-events", daemon=True).start()
            threading.Thread(target=self._read_stderr, args=(proc,), name="engine-stderr", daemon=True).start()
            replay = self._last_load
            self._set_state("ready" if replay is None else "restarting")
        if replay is not None:
            # A fresh engine after a crash: bring back the model the user had loaded.
            try:
                self._send_request("load", dict(replay), None, Request).wait()
            finally:
                self._set_state("ready" if self.pid is not None else "crashed")

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        log = self._log_path.open("ab") if self._log_path else None
        try:
            for line in proc.stderr:
                self._stderr_tail.append(line.decode("utf-8", errors="replace").rstrip())
                if log:
                    log.write(line)
                    log.flush()
        finally:
            if log:
                log.close()

    def _read_events(self, proc: subprocess.Popen[bytes]) -> None:
        pending = self._pending
        for line in proc.stdout:
            try:
                event = decode(line)
            except ValueError:
                self._stderr_tail.append(f"[bad event line] {line[:200]!r}")
                continue
            if event.get("event") == "token":
                # The hot path, once per generated token: no bookkeeping to do. A request leaves
                # _pending only on this thread, after its final event, so a lock-free get is safe.
                req = pending.get(event.get("id"))
                if req is not None:
                    req._deliver(event)
                continue
            with self._lock:
                req = self._pending.get(event.get("id"))
                if req is not None and event.get("event") in FINAL_EVENTS:
                    del self._pending[req.id]
            if req is not None:
                if req.op == "load" and event.get("event") == "loaded":
                    self._last_load = req.fields
                req._deliver(event)
        code = proc.wait()
        self._on_exit(proc, code)

    def _on_exit(self, proc: subprocess.Popen[bytes], code: int) -> None:
        with self._lock:
            if self._proc is not proc:
                return
            pending = list(self._pending.values())
            self._pending.clear()
            self._proc = None
            expected = self.state == "stopped"
        if not expected:
            self.restarts += 1
            self._set_state("crashed")
        reason = self._describe_exit(code)
        for req in pending:
            if req.cancel_requested and req.op == "generate":
                # Killed because it would not stop: to the user that is a finished cancel.
                req._deliver({"id": req.id, "event": "done", "finish_reason": "cancelled", "killed": True})
                continue
            message = f"The engine stopped unexpectedly ({reason})"
            hint = "The next request starts it again."
            if req.op == "load":
                model = req.fields.get("model")
                name = model.get("name") if isinstance(model, dict) else (model or "the bundled model")
                message += f" while loading {name}"
                hint = "The model file may be damaged or not supported; try another file or download it again."
            elif code == -signal.SIGKILL:
                hint = "If the machine ran out of memory, try a smaller model or context. " + hint
            req._deliver({"id": req.id, "event": "error", "code": EngineCrashed.code,
                          "message": message + ".", "hint": hint})

    def _describe_exit(self, code: int) -> str:
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            what = f"killed by {name}"
        else:
            what = f"exit code {code}"
        last = next((line for line in reversed(self._stderr_tail) if line.strip()), "")
        return f"{what}; last message: {last[:300]}" if last else what

    # -- requests ------------------------------------------------------------------------------
    def _send_request(self, op: str, fields: dict[str, Any], on_event: EventCallback | None,
                      kind: type[Request]) -> Request:
        rid = f"r{next(self._ids)}"
        req = kind(self, rid, op, on_event, fields)
        with self._lock:
            proc = self._proc
            if proc is None:
                raise EngineCrashed("The engine is not running.", "Try again.")
            self._pending[rid] = req
        try:
            with self._write_lock:
                proc.stdin.write(encode({"id": rid, "op": op, **fields}))
                proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            # The engine died under us; its reader thread ends this request with the error.
            pass
        return req

    def request(self, op: str, on_event: EventCallback | None = None, kind: type[Request] = Request,
                **fields: Any) -> Request:
        """Send one request. A model op without ``model_load`` names the model this client loaded last, so a
        model another user of the engine (the local server) swapped in is swapped back first."""
        self._ensure_started()
        if fields.get("model_load") is None:
            fields.pop("model_load", None)
            if op in MODEL_OPS and self._last_load is not None:
                fields["model_load"] = self._last_load
        return self._send_request(op, fields, on_event, kind)

    @staticmethod
    def load_request(model: ModelRef | str | None = None, backend: str = "auto",
                     options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The fields of a load request, as ``model_load`` takes them."""
        payload = model.to_dict() if isinstance(model, ModelRef) else model
        return {"model": payload, "backend": backend, "options": options or {}}

    def load(self, model: ModelRef | str | None = None, backend: str = "auto",
             options: dict[str, Any] | None = None, on_event: EventCallback | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Load a model (a ``ModelRef``, an id or path, or None for the bundled one); return its info."""
        return self.request("load", on_event, **self.load_request(model, backend, options)).wait(timeout)

    def generate(self, prompt: str | None = None, messages: Sequence[dict[str, Any]] | None = None,
                 params: SamplingParams | dict[str, Any] | None = None, alternatives: int = 0,
                 on_event: EventCallback | None = None, fit_context: bool = False,
                 continuation: Sequence[int] | None = None,
                 model_load: dict[str, Any] | None = None) -> GenerationStream:
        """Start a reply to a raw ``prompt`` or to chat ``messages``; returns the live stream.

        ``fit_context``: leave out the oldest turns of ``messages`` (never system messages) so the
        prompt leaves room for the reply; the done event's ``dropped_messages`` says how many.
        ``continuation``: token ids chosen after the prompt (branching from an alternative): all
        but the last are read with the prompt, the last is the reply's first token (its token
        event has ``forced: true``), and sampling goes on from there.
        ``model_load``: the load request (``load_request()``) of the model to answer with; the engine swaps
        it in first if another is in memory. By default, the model this client loaded last.
        """
        fields = _prompt_fields(prompt, messages, params)
        fields["alternatives"] = alternatives
        fields["model_load"] = model_load
        if messages is not None and fit_context:
            fields["fit_context"] = True
        if continuation:
            fields["continuation"] = [int(t) for t in continuation]
        return self.request("generate", on_event, GenerationStream, **fields)  # type: ignore[return-value]

    def next_token(self, prompt: str | None = None, messages: Sequence[dict[str, Any]] | None = None,
                   continuation: Sequence[int] | None = None,
                   params: SamplingParams | dict[str, Any] | None = None, top: int = 20,
                   timeout: float | None = None) -> dict[str, Any]:
        """Step mode: how the sampler picks the token after the prompt and ``continuation``.

        Returns the result event: ``before`` / ``after`` the sampler chain (top ``top`` tokens),
        ``stages`` with how many tokens each kept, ``sampled`` and ``is_end`` (see
        docs/engine-protocol.md). The continuation is not extended: add ``sampled`` to it yourself.
        """
        fields = _prompt_fields(prompt, messages, params)
        fields["top"] = top
        if continuation:
            fields["continuation"] = [int(t) for t in continuation]
        return self.request("next_token", **fields).wait(timeout)

    def cancel(self, req: Request) -> None:
        """Ask the engine to stop ``req``; if it has not stopped after ``cancel_grace`` s, restart the engine."""
        if req.finished.is_set():
            return
        req.cancel_requested = True
        with self._lock:
            proc = self._proc
        if proc is None:
            return
        self._send_request("cancel", {"target": req.id}, None, Request)

        def last_resort() -> None:
            if not req.finished.wait(self.cancel_grace) and proc.poll() is None:
                self._stderr_tail.append("[client] engine did not stop after cancel; restarting it")
                proc.kill()

        threading.Thread(target=last_resort, name="cancel-watch", daemon=True).start()

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> dict[str, Any]:
        return self.request("tokenize", text=text, add_special=add_special, parse_special=parse_special).wait()

    def tokenize_messages(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A chat's tokens as generate would feed them: rendered with the model's chat template."""
        return self.request("tokenize", messages=list(messages)).wait()

    def detokenize(self, tokens: list[int]) -> str:
        return self.request("detokenize", tokens=tokens).wait()["text"]

    def info(self, devices: bool = False) -> dict[str, Any]:
        return self.request("info", devices=devices).wait()

    def unload(self, only_if: dict[str, Any] | None = None) -> None:
        """Free the model. ``only_if`` (a load request): only if that model is the one in memory, and without
        forgetting the model this client loaded (the local server's idle timer uses it)."""
        if only_if is None:
            self._last_load = None
        if self.pid is not None:
            self.request("unload", **({"only_if": only_if} if only_if else {})).wait()

    @property
    def wanted_load(self) -> dict[str, Any] | None:
        """The load request of the model this client's own user loaded last (None: none)."""
        return self._last_load

    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the engine politely; kill it if it does not go."""
        with self._lock:
            proc = self._proc
            self._set_state("stopped")
        if proc is None or proc.poll() is not None:
            return
        try:
            self._send_request("shutdown", {}, None, Request)
            proc.stdin.close()
            proc.wait(timeout)
        except (subprocess.TimeoutExpired, OSError, ValueError, EngineCrashed):
            proc.kill()
            proc.wait()

    close = shutdown

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()

