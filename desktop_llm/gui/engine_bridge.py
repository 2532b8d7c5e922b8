"""Qt face of the engine client: engine events become signals delivered on the GUI thread.

The client calls back on its own threads; signals emitted there reach receivers in the GUI
thread through Qt's queued connections, so no widget is ever touched off the GUI thread, and no
engine or disk work runs on it.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.models import ModelRef
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.client import EngineClient, GenerationStream


class QtEngine(QObject):
    """Owns an ``EngineClient``; ``load`` and ``generate`` return at once and report by signal."""

    state_changed = Signal(str)  # starting, ready, busy, crashed, stopped
    load_progress = Signal(str, float)
    loaded = Signal(dict)
    load_failed = Signal(str)
    token = Signal(dict)
    finished = Signal(dict)  # the done event
    failed = Signal(str)  # a reply that ended in an error, as text for the user

    def __init__(self, client: EngineClient | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client or EngineClient()
        self.client.on_state = self.state_changed.emit
        self._stream: GenerationStream | None = None

    @property
    def busy(self) -> bool:
        return self._stream is not None and not self._stream.finished.is_set()

    def load(self, model: ModelRef | None, backend: str = "auto", options: dict[str, Any] | None = None) -> None:
        def work() -> None:
            self.state_changed.emit("loading")
            try:
                info = self.client.load(model, backend=backend, options=options, on_event=self._on_load_event)
            except DesktopLLMError as exc:
                self.load_failed.emit(str(exc))
                self.state_changed.emit(self.client.state)
                return
            self.loaded.emit(info)
            self.state_changed.emit("ready")

        threading.Thread(target=work, name="engine-load", daemon=True).start()

    def _on_load_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            self.load_progress.emit(event.get("stage", ""), float(event.get("fraction", 0.0)))

    def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> None:
        def work() -> None:
            self.state_changed.emit("busy")
            try:
                self._stream = self.client.generate(messages=messages, params=params, on_event=self._on_event)
                self._stream.wait()
            except DesktopLLMError as exc:
                self.failed.emit(str(exc))
            finally:
                self.state_changed.emit("ready" if self.client.state != "crashed" else "crashed")

        threading.Thread(target=work, name="engine-generate", daemon=True).start()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "token":
            self.token.emit(event)
        elif kind == "done":
            self.finished.emit(event)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()

    def shutdown(self) -> None:
        self.client.shutdown()
