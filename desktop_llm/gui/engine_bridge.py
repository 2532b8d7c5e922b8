"""Qt face of the engine client: engine events become signals delivered on the GUI thread.

The client calls back on its own threads; signals emitted there reach receivers in the GUI
thread through Qt's queued connections, so no widget is ever touched off the GUI thread, and no
engine or disk work runs on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.models import ModelRef
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.client import EngineClient, GenerationStream

if TYPE_CHECKING:
    from desktop_llm.remote.client import RemoteClient, RemoteStream


class QtEngine(QObject):
    """Owns an ``EngineClient``; every call returns at once and reports by signal."""

    # starting, ready, loading, busy, crashed, restarting, stopped
    state_changed = Signal(str)
    load_progress = Signal(str, float)
    loaded = Signal(dict)
    load_failed = Signal(str)
    unloaded = Signal()
    token = Signal(dict)
    finished = Signal(dict)  # the done event
    failed = Signal(str)  # a reply that ended in an error, as text for the user
    _call_back = Signal(object, object)  # callback, value: results of small requests, on the GUI thread

    def __init__(self, client: EngineClient | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client or EngineClient()  # the local engine, also the local server's
        self.client.on_state = self._on_client_state
        # Who answers: the local engine, or a remote provider's client when a remote model is loaded.
        self.active: EngineClient | RemoteClient = self.client
        self._stream: GenerationStream | RemoteStream | None = None
        self.loaded_info: dict[str, Any] | None = None
        self._generating = False
        self._call_back.connect(lambda callback, value: callback(value))

    @property
    def busy(self) -> bool:
        return self._generating

    def _on_client_state(self, state: str) -> None:
        # A restart during a reply reports "ready" before the reply runs: the engine is busy with it.
        self.state_changed.emit("busy" if state == "ready" and self._generating else state)
        if state == "crashed" and self.loaded_info is not None:
            # Bring the engine and the model back now, so the next message does not wait for it.
            threading.Thread(target=self._restart, name="engine-restart", daemon=True).start()

    def _restart(self) -> None:
        try:
            self.client.info()
        except DesktopLLMError:
            pass  # the next request tries again, and reports what goes wrong

    def load(self, model: ModelRef | None, backend: str = "auto", options: dict[str, Any] | None = None) -> None:
        def work() -> None:
            self.state_changed.emit("loading")
            try:
                if model is not None and model.format == "remote":
                    # Imported here: the remote client loads only when a remote model is picked.
                    from desktop_llm.remote.library import client_for

                    remote = client_for(model)
                    info = remote.load(model, on_event=self._on_load_event)
                    self.active = remote
                else:
                    info = self.client.load(model, backend=backend, options=options, on_event=self._on_load_event)
                    self.active = self.client
            except DesktopLLMError as exc:
                self.loaded_info = None
                self.load_failed.emit(str(exc))
                self.state_changed.emit(self.client.state)
                return
            self.loaded_info = info
            self.loaded.emit(info)
            self.state_changed.emit("ready")

        threading.Thread(target=work, name="engine-load", daemon=True).start()

    def unload(self) -> None:
        def work() -> None:
            try:
                self.active.unload()
                self.active = self.client
                self.client.unload()
            except DesktopLLMError:
                pass  # an engine that is gone has nothing loaded either
            self.loaded_info = None
            self.unloaded.emit()
            self.state_changed.emit(self.client.state)

        threading.Thread(target=work, name="engine-unload", daemon=True).start()

    def _on_load_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            self.load_progress.emit(event.get("stage", ""), float(event.get("fraction", 0.0)))

    def generate(self, messages: list[dict[str, str]], params: SamplingParams, fit_context: bool = True) -> None:
        self._generating = True  # busy from this call on, so a second send cannot slip in before the thread runs
        self.state_changed.emit("busy")

        def work() -> None:
            try:
                self._stream = self.active.generate(messages=messages, params=params, on_event=self._on_event,
                                                    fit_context=fit_context)
                self._stream.wait()
            except DesktopLLMError as exc:
                self._end_generation()
                self.failed.emit(str(exc))

        threading.Thread(target=work, name="engine-generate", daemon=True).start()

    def _end_generation(self) -> None:
        # Before the reply's last signal, so its receivers see an idle engine and may start the next reply.
        self._generating = False
        self.state_changed.emit(self.client.state)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "token":
            self.token.emit(event)
        elif kind == "done":
            self._end_generation()
            self.finished.emit(event)

    def count_tokens(self, text: str, on_result: Callable[[int], None]) -> None:
        """How many tokens ``text`` is for the loaded model (for the context gauge), reported on the GUI thread."""
        def work() -> None:
            try:
                count = len(self.active.tokenize(text)["tokens"])
            except DesktopLLMError:
                return  # the gauge keeps its last figure; a real reply will correct it
            self._call_back.emit(on_result, count)

        threading.Thread(target=work, name="engine-count", daemon=True).start()

    def device_report(self, on_result: Callable[[dict[str, Any]], None]) -> None:
        """The engine's report of RAM, GPUs and VRAM (it asks torch and llama.cpp), on the GUI thread."""
        def work() -> None:
            try:
                report = self.client.info(devices=True).get("devices")
            except DesktopLLMError:
                return  # the fit estimates keep assuming no GPU offload
            if report:
                self._call_back.emit(on_result, report)

        threading.Thread(target=work, name="engine-devices", daemon=True).start()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()

    def shutdown(self) -> None:
        if self.active is not self.client:
            self.active.shutdown()
        self.client.shutdown()

    # -- the Playground's own requests: results go to the caller's callbacks, not the chat's signals --
    def start_stream(self, request: dict[str, Any], on_token: Callable[[dict[str, Any]], None],
                     on_done: Callable[[dict[str, Any]], None], on_error: Callable[[str], None]) -> SideRun:
        """Generate with ``request`` (EngineClient.generate keyword arguments) for a page other than Chat.

        Token and done events reach ``on_token`` / ``on_done`` on the GUI thread; the engine counts as
        busy meanwhile, so Chat waits and a model load is refused until it ends.
        """
        run = SideRun(self)
        self._generating = True
        self.state_changed.emit("busy")

        def deliver(event: dict[str, Any]) -> None:
            kind = event.get("event")
            if kind == "token":
                self._call_back.emit(on_token, event)
            elif kind == "done":
                self._call_back.emit(self._side_done, (on_done, event))

        def work() -> None:
            try:
                run.stream = self.active.generate(on_event=deliver, **request)
                if run.cancelled:
                    run.stream.cancel()
                run.stream.wait()
            except DesktopLLMError as exc:
                self._call_back.emit(self._side_done, (on_error, str(exc)))

        threading.Thread(target=work, name="engine-side-generate", daemon=True).start()
        return run

    def _side_done(self, pair: tuple[Callable[[Any], None], Any]) -> None:
        self._end_generation()
        callback, value = pair
        callback(value)

    def call(self, job: Callable[[EngineClient], Any], on_result: Callable[[Any], None],
             on_error: Callable[[str], None], busy: bool = False) -> None:
        """Run ``job(client)`` off the GUI thread (a tokenize, a next-token step, a load for Compare); its
        result or error message comes back on the GUI thread. ``busy``: Chat waits until it ends."""
        if busy:
            self._generating = True
            self.state_changed.emit("busy")

        def finish(pair: tuple[Callable[[Any], None], Any]) -> None:
            if busy:
                self._end_generation()
            pair[0](pair[1])

        def work() -> None:
            try:
                value = job(self.active)  # type: ignore[arg-type]  # RemoteClient has EngineClient's methods
            except DesktopLLMError as exc:
                self._call_back.emit(finish, (on_error, str(exc)))
                return
            self._call_back.emit(finish, (on_result, value))

        threading.Thread(target=work, name="engine-call", daemon=True).start()


class SideRun:
    """A Playground generation in flight: ``cancel()`` stops it (its done event then says cancelled)."""

    def __init__(self, engine: QtEngine) -> None:
        self.engine = engine
        self.stream: GenerationStream | RemoteStream | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.stream is not None:
            self.stream.cancel()
