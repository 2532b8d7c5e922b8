"""Which library models the local server offers, how each is loaded, and the idle unload timer.

Only models in the library can be named (by id or name), never a path: a caller of the server
must not make this machine open files of its choosing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from desktop_llm.core.model_library import effective_load_options
from desktop_llm.core.models import ModelRef, list_local_models
from desktop_llm.core.settings import Settings, load_settings
from desktop_llm.engine.client import EngineClient
from desktop_llm.server.openai_requests import ApiError

_LIST_TTL_SECONDS = 5.0  # the library is scanned at most this often (GGUF headers are read on each scan)


class ServedModels:
    def __init__(self, client: EngineClient, idle_unload_seconds: int = 600,
                 settings: Callable[[], Settings] = load_settings) -> None:
        self.client = client
        self.idle_unload_seconds = idle_unload_seconds
        self._settings = settings
        self._lock = threading.Lock()
        self._listed: tuple[float, list[ModelRef]] | None = None
        self._active = 0  # requests in flight
        self._last_load: dict[str, Any] | None = None  # the model the server's last request used
        self._timer: threading.Timer | None = None
        self.unloaded_idle = 0  # how many times the timer freed a model (shown in logs and tests)

    def models(self) -> list[ModelRef]:
        with self._lock:
            if self._listed and time.monotonic() - self._listed[0] < _LIST_TTL_SECONDS:
                return self._listed[1]
        usable = [ref for ref in list_local_models() if not ref.error]
        with self._lock:
            self._listed = (time.monotonic(), usable)
        return usable

    def find(self, name: str) -> ModelRef:
        models = self.models()
        for match in (lambda r: r.id == name, lambda r: r.name == name, lambda r: r.repo_id == name,
                      lambda r: r.id.lower() == name.lower() or r.name.lower() == name.lower()):
            found = [r for r in models if match(r)]
            if len(found) == 1:
                return found[0]
        known = ", ".join(r.id for r in models[:8]) or "none"
        raise ApiError(404, f"The model '{name}' does not exist in this app's library. Models: {known}.",
                       param="model", code="model_not_found")

    def load_request(self, ref: ModelRef) -> dict[str, Any]:
        backend, options = effective_load_options(self._settings(), ref)
        return EngineClient.load_request(ref, backend, options)

    def describe(self, ref: ModelRef) -> dict[str, Any]:
        # The context it is served with (the load options'), which clients size their prompts by.
        try:
            context = self.load_request(ref)["options"].get("n_ctx") or ref.context_length
        except (OSError, ValueError):
            context = ref.context_length
        return {"id": ref.id, "object": "model", "created": 0, "owned_by": ref.source,
                "name": ref.name, "format": ref.format, "context_length": context}

    # -- idle unload ---------------------------------------------------------------------------
    def begin(self, load: dict[str, Any]) -> None:
        with self._lock:
            self._active += 1
            self._last_load = load
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def end(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active or not self.idle_unload_seconds:
                return
            self._timer = threading.Timer(self.idle_unload_seconds, self._idle)
            self._timer.daemon = True
            self._timer.start()

    def _idle(self) -> None:
        with self._lock:
            load, self._timer = self._last_load, None
            if self._active or load is None:
                return
        if load == self.client.wanted_load:
            return  # the window uses this model too: keep it
        try:
            self.client.unload(only_if=load)
            self.unloaded_idle += 1
        except Exception:  # noqa: BLE001 - an engine that is gone has nothing to free
            pass

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
