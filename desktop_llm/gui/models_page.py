"""The Models page: Discover (Hub search and quantization picker), My Models (the local library), Downloads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.models import ModelRef, resolve_model
from desktop_llm.core.units import format_bytes
from desktop_llm.gui.background import Background
from desktop_llm.gui.discover_view import DiscoverView
from desktop_llm.gui.downloads_view import DownloadsView
from desktop_llm.gui.hub_services import HubServices
from desktop_llm.gui.library_view import LibraryView

if TYPE_CHECKING:
    from desktop_llm.hub.downloads import DownloadProgress

TAB_DISCOVER, TAB_LIBRARY, TAB_DOWNLOADS = range(3)


class ModelsPage(QWidget):
    load_requested = Signal(object)  # ModelRef
    status = Signal(str)
    first_shown = Signal()

    def __init__(self, services: HubServices, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelsPage")
        self.services = services
        self.background = background
        self.discover = DiscoverView(services)
        self.library = LibraryView(background)
        self.downloads = DownloadsView(services)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("modelsTabs")
        self.tabs.addTab(self.discover, "Discover")
        self.tabs.addTab(self.library, "My Models")
        self.tabs.addTab(self.downloads, "Downloads")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

        self.discover.download_requested.connect(self.start_download)
        self.downloads.load_requested.connect(self._load_path)
        self.library.load_requested.connect(self.load_requested)
        self.library.status.connect(self.status)
        services.download_progress.connect(self._on_progress)
        services.ready.connect(self._count_active)
        self._shown = False

    def start_download(self, repo_id: str, commit: str, files: list) -> None:
        if self.services.downloads is None:  # only before the Hub libraries are up, a second after start
            self.status.emit("The download manager is still starting; try again in a moment.")
            return
        try:
            ids = self.services.downloads.enqueue(repo_id, commit, files)
        except DesktopLLMError as exc:  # e.g. not enough disk space: said before a byte is fetched
            self.discover.show_error(exc)
            return
        size = sum(f.size or 0 for f in files)
        self.status.emit(f"Downloading {len(files)} file{'s' if len(files) > 1 else ''} of {repo_id} "
                         f"({format_bytes(size)}).")
        self.tabs.setCurrentIndex(TAB_DOWNLOADS)
        if ids:
            self.downloads.select(ids[0])

    def _on_progress(self, p: DownloadProgress) -> None:
        self._count_active()
        if p.state == "done":
            self.library.refresh()  # a complete, verified model shows up in My Models at once

    def _count_active(self) -> None:
        # From the Downloads tab's own latest snapshots: no copy of the manager's list per progress event.
        active = sum(1 for p in self.downloads.progress.values() if p.state in ("queued", "downloading", "verifying"))
        self.tabs.setTabText(TAB_DOWNLOADS, f"Downloads ({active})" if active else "Downloads")

    def _load_path(self, path: str) -> None:
        self.background.run(lambda: resolve_model(path), self._loadable,
                            lambda exc: self.status.emit(f"Cannot load {path}: {exc}"))

    def _loadable(self, ref: ModelRef) -> None:
        if ref.error:
            self.status.emit(f"Cannot load {ref.name}: {ref.error}")
        else:
            self.load_requested.emit(ref)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            self.library.refresh()
            self.first_shown.emit()
