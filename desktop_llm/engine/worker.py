"""The engine process: reads requests from stdin, writes events to stdout, one JSON object per line.

Threads: the main thread reads requests and answers ``cancel``, ``info`` and ``shutdown`` at
once; one model-owner thread runs everything that touches the model, in order, because a
llama.cpp model must only ever be used from one thread.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO

from desktop_llm import __version__
from desktop_llm.core.errors import DesktopLLMError, InvalidRequest, NoModelLoaded
from desktop_llm.core.models import ModelRef, resolve_model
from desktop_llm.engine.backends import create_backend, pick_backend
from desktop_llm.engine.generation import Cancelled, build_prompt_tokens, run_generation, run_next_token
from desktop_llm.engine.protocol import MODEL_OPS, OPS, PROTOCOL_VERSION, decode, encode, encode_token_event

# A reply's token event is held back when another of its token events was written less than this
# long ago, and goes out with the next one after that (or with the reply's end). A fast reply is
# then written a few tokens at a time: every write wakes the reading app, and on a machine whose
# cores are all decoding, a wake-up costs the engine ~40 us and the app ~100 us of the decode's
# time (with 2 cores at ~100 tokens/s, about 1.5 % of the throughput). No token waits more than
# this plus one token's interval, the first token of a reply never waits, and a reply slower
# than this is written token by token as before.
TOKEN_BATCH_SECONDS = 0.015


class _TokenWriter:
    """Writes one reply's token events, a few at a time when they come fast (``TOKEN_BATCH_SECONDS``)."""

    def __init__(self, worker: Worker, rid: str, batch_seconds: float) -> None:
        self._worker, self._rid, self._batch_seconds = worker, rid, batch_seconds
        self._held: list[bytes] = []
        self._written_at = -batch_seconds  # the first token goes out at once

    def send(self, event: dict[str, Any]) -> None:
        self._held.append(encode_token_event(self._rid, event))
        now = time.perf_counter()
        if now - self._written_at >= self._batch_seconds:
            self.flush()
            self._written_at = now

    def flush(self) -> None:
        if self._held:
            self._worker._write(b"".join(self._held))
            self._held.clear()


def _load_key(load: dict[str, Any]) -> str:
    wanted = {"model": load.get("model"), "backend": load.get("backend") or "auto",
              "options": load.get("options") or {}}
    return json.dumps(wanted, sort_keys=True, default=str)


class Worker:
    def __init__(self, out: BinaryIO, token_batch_seconds: float = TOKEN_BATCH_SECONDS) -> None:
        self._out = out
        self._token_batch_seconds = token_batch_seconds
        self._out_lock = threading.Lock()
        self._jobs: queue.Queue[tuple[dict[str, Any], float] | None] = queue.Queue()
        self._cancels: dict[str, threading.Event] = {}
        self._backend: Any = None
        self._model: ModelRef | None = None
        self._load_info: dict[str, Any] | None = None
        self._load_key: str | None = None  # the load request behind the model in memory (see _ensure_loaded)

    # -- output ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        with self._out_lock:
            self._out.write(data)
            self._out.flush()

    def send(self, rid: str | None, event: str, **fields: Any) -> None:
        self._write(encode({"id": rid, "event": event, **fields}))

    def send_error(self, rid: str | None, exc: DesktopLLMError) -> None:
        self.send(rid, "error", code=exc.code, message=exc.message, hint=exc.hint)

    # -- main loop ---------------------------------------------------------------------------
    def serve(self, infile: BinaryIO) -> None:
        owner = threading.Thread(target=self._owner_loop, name="model-owner", daemon=True)
        owner.start()
        for line in infile:
            if not line.strip():
                continue
            try:
                req = decode(line)
            except ValueError as exc:
                self.send_error(None, InvalidRequest(f"Engine got a line that is not a JSON object: {exc}."))
                continue
            rid, op = req.get("id"), req.get("op")
            if op == "cancel":
                flag = self._cancels.get(req.get("target", ""))
                if flag is not None:
                    flag.set()
                self.send(rid, "result", cancelled=flag is not None)
            elif op == "info":
                self.send(rid, "result", **self.info(bool(req.get("devices"))))
            elif op == "shutdown":
                for flag in list(self._cancels.values()):
                    flag.set()
                self._jobs.put(None)
                owner.join(timeout=10)
                self.send(rid, "result", stopped=True)
                return
            elif op in OPS:
                self._cancels[rid] = threading.Event()
                self._jobs.put((req, time.perf_counter()))
            else:
                self.send_error(rid, InvalidRequest(f"Unknown engine request {op!r}.",
                                                    f"Known requests: {', '.join(OPS)}."))
        # stdin closed: the app is gone, so stop what runs and leave.
        for flag in list(self._cancels.values()):
            flag.set()
        self._jobs.put(None)
        owner.join(timeout=10)

    def _owner_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            req, received = job
            rid = req.get("id")
            try:
                handler = getattr(self, f"_op_{req['op']}")
                if isinstance(req.get("model_load"), dict) and req["op"] in MODEL_OPS:
                    self._ensure_loaded(rid, req["model_load"])
                handler(rid, req, received)
            except DesktopLLMError as exc:
                self.send_error(rid, exc)
            except MemoryError:
                self.send(rid, "error", code="out_of_memory", message="The engine ran out of memory.",
                          hint="Use a smaller model, a smaller quantization or a shorter context.")
            except Exception as exc:  # noqa: BLE001 - any bug must end the request, not the engine
                traceback.print_exc(file=sys.stderr)
                self.send(rid, "error", code="engine_error",
                          message=f"The engine failed: {type(exc).__name__}: {exc}",
                          hint="See the engine log for details.")
            finally:
                self._cancels.pop(rid, None)
        if self._backend is not None:
            self._backend.unload()

    # -- requests ----------------------------------------------------------------------------
    def info(self, devices: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "protocol": PROTOCOL_VERSION,
            "version": __version__,
            "python": sys.version.split()[0],
            "model": self._model.to_dict() if self._model else None,
            "load": self._load_info,
        }
        if devices:
            from desktop_llm.engine.devices import device_report

            data["devices"] = device_report()
        return data

    def _require_model(self) -> Any:
        if self._backend is None:
            raise NoModelLoaded("No model is loaded.", "Load a model first.")
        return self._backend

    def _ensure_loaded(self, rid: str, load: dict[str, Any]) -> None:
        """Requests from several users (the window, the local server) share this engine: each names the
        model it was meant for, and the model is swapped in first when another one is in memory."""
        if _load_key(load) == self._load_key and self._backend is not None:
            return
        self._load(rid, load)

    def _op_load(self, rid: str, req: dict[str, Any], _received: float) -> None:
        info = self._load(rid, req)
        self.send(rid, "loaded", **info)

    def _load(self, rid: str, req: dict[str, Any]) -> dict[str, Any]:
        model = req.get("model")
        ref = ModelRef.from_dict(model) if isinstance(model, dict) else resolve_model(model)
        backend_name = pick_backend(ref.format, req.get("backend"))
        self._op_unload(None, {}, 0.0)

        def progress(stage: str, fraction: float) -> None:
            self.send(rid, "progress", stage=stage, fraction=fraction)

        started = time.perf_counter()
        backend = create_backend(backend_name)
        info = backend.load(ref, dict(req.get("options") or {}), progress)
        info["load_seconds"] = round(time.perf_counter() - started, 3)
        self._backend, self._model, self._load_info = backend, ref, info
        self._load_key = _load_key(req)
        return {"model": ref.to_dict(), **info}

    def _op_unload(self, rid: str | None, req: dict[str, Any], _received: float) -> None:
        # only_if: unload only the model loaded by that load request (an idle timer must not unload a
        # model another user has swapped in since).
        only_if = req.get("only_if")
        had = self._backend is not None and (not isinstance(only_if, dict) or _load_key(only_if) == self._load_key)
        if had:
            self._backend.unload()
            self._backend = self._model = self._load_info = self._load_key = None
        elif self._backend is None:
            self._model = self._load_info = self._load_key = None
        if rid is not None:
            self.send(rid, "result", unloaded=had)

    def _op_generate(self, rid: str, req: dict[str, Any], received: float) -> None:
        backend = self._require_model()
        tokens = _TokenWriter(self, rid, self._token_batch_seconds)
        try:
            done = run_generation(backend, req, self._cancels[rid], tokens.send, received)
        finally:
            tokens.flush()  # before the done or error event
        self.send(rid, "done", **done)

    def _op_next_token(self, rid: str, req: dict[str, Any], received: float) -> None:
        backend = self._require_model()
        try:
            result = run_next_token(backend, req, self._cancels[rid], received)
        except Cancelled:  # a cancel during a long prompt: not an error
            self.send(rid, "result", cancelled=True)
            return
        self.send(rid, "result", **result)

    def _op_tokenize(self, rid: str, req: dict[str, Any], _received: float) -> None:
        backend = self._require_model()
        text = req.get("text")
        if isinstance(req.get("messages"), list):
            # A chat as the model reads it: through its chat template, as generate would send it.
            ids, _prompt = build_prompt_tokens(backend, {"messages": req["messages"]})
        elif isinstance(text, str):
            ids = backend.tokenize(text, bool(req.get("add_special", False)), bool(req.get("parse_special", True)))
        else:
            raise InvalidRequest("tokenize needs 'text' or 'messages'.")
        pieces = [backend.token_piece(t).decode("utf-8", errors="replace") for t in ids]
        self.send(rid, "result", tokens=ids, pieces=pieces)

    def _op_detokenize(self, rid: str, req: dict[str, Any], _received: float) -> None:
        backend = self._require_model()
        ids = req.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
            raise InvalidRequest("detokenize needs 'tokens', a list of token ids.")
        self.send(rid, "result", text=backend.detokenize(ids))


def main() -> None:
    # The protocol owns the real stdout; anything native code prints goes to stderr instead,
    # so a stray print can never corrupt the event stream.
    proto_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    Worker(proto_out).serve(sys.stdin.buffer)
