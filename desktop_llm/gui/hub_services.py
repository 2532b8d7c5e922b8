"""Qt face of the Hub: search and detail calls on a network thread, the download manager's progress
as a signal, and the token store. Pages hold one ``HubServices`` and never touch the network themselves.

huggingface_hub and keyring take about half a second to import, so they are imported, and the token
store and download manager made, on the network thread after the window is up; ``ready`` says when.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psutil
from PySide6.QtCore import QObject, Signal

from desktop_llm.core.fit_estimate import MachineMemory, memory_from_device_report
from desktop_llm.core.settings import Settings
from desktop_llm.gui.background import Background

if TYPE_CHECKING:
    from desktop_llm.hub.client import HubClient
    from desktop_llm.hub.downloads import DownloadManager
    from desktop_llm.hub.token_store import TokenStore

T = TypeVar("T")


class HubServices(QObject):
    """One per window: the Hub client (made per call, with the current address and token), downloads, token."""

    download_progress = Signal(object)  # DownloadProgress, on the GUI thread
    memory_changed = Signal(object)  # MachineMemory
    ready = Signal()  # the token store and download manager exist (see ``start``)
    start_failed = Signal(str)

    def __init__(self, settings: Settings, token_store: TokenStore | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.tokens: TokenStore | None = token_store
        self.downloads: DownloadManager | None = None
        self._started = False
        self._shut_down = False
        # Hub calls get their own thread: a slow network never holds up chat saves on the disk thread.
        self.network = Background(self)
        vm = psutil.virtual_memory()
        # RAM is known at once; whether there is a GPU (and its VRAM) comes from the engine, later.
        self.memory = MachineMemory(ram_total=vm.total, ram_available=vm.available)

    def start(self) -> None:
        """Import the Hub libraries and make the token store and download manager, on the network thread.

        Jobs queued with ``call`` after this run after it, so they always find both made. Calls after the
        first do nothing.
        """
        if self._started:
            return
        self._started = True
        self.network.run(self._start, lambda _r: self.ready.emit(), lambda exc: self.start_failed.emit(str(exc)))

    def _start(self) -> None:
        from desktop_llm.hub.downloads import DownloadManager
        from desktop_llm.hub.token_store import TokenStore

        if self.tokens is None:
            self.tokens = TokenStore()
        self.downloads = DownloadManager(endpoint=self.settings.hub_url(), token_provider=self.tokens.get,
                                         max_parallel=self.settings.parallel_downloads,
                                         on_progress=self.download_progress.emit)

    @property
    def is_ready(self) -> bool:
        return self.downloads is not None and self.tokens is not None

    def client(self) -> HubClient:
        from desktop_llm.hub.client import HubClient

        return HubClient(self.settings.hub_url(), self.tokens.get() if self.tokens else None)

    def call(self, job: Callable[[HubClient], T], on_result: Callable[[T], None],
             on_error: Callable[[Exception], None]) -> None:
        """Run ``job(client)`` on the network thread; the result or error comes back on the GUI thread."""
        self.network.run(lambda: job(self.client()), on_result, on_error)

    def set_settings(self, settings: Settings) -> None:
        self.settings = settings
        if self.downloads is not None:
            self.downloads.endpoint = settings.hub_url()
            self.downloads.set_max_parallel(settings.parallel_downloads)

    def set_device_report(self, report: dict[str, Any]) -> None:
        self.memory = memory_from_device_report(report)
        self.memory_changed.emit(self.memory)

    def set_token(self, token: str | None) -> None:
        assert self.tokens is not None, "set_token before the Hub services are ready"
        if token:
            self.tokens.set(token)
        else:
            self.tokens.clear()

    def shutdown(self) -> None:
        """Keep partial files (they resume at the next start) and stop the workers. Safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        self._started = True  # a start timer still pending must not start anything now
        self.network.drain()  # a start still running finishes first, so its manager is shut down too
        if self.downloads is not None:
            self.downloads.shutdown()
        self.network.shutdown()
