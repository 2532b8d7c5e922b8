"""Downloads: each file with its progress, speed and time left; pause, resume, cancel, and load when done."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.units import format_bytes, format_duration, format_speed
from desktop_llm.gui.hub_services import HubServices

if TYPE_CHECKING:
    from desktop_llm.hub.downloads import DownloadProgress

_STATE_TEXT = {"queued": "Waiting", "downloading": "Downloading", "paused": "Paused", "verifying": "Checking SHA-256…",
               "done": "Done ✓ verified", "failed": "Failed", "cancelled": "Cancelled"}
_ACTIVE = ("queued", "downloading", "verifying")
COL_FILE, COL_MODEL, COL_PROGRESS, COL_BYTES, COL_SPEED, COL_ETA, COL_STATE = range(7)


class DownloadsView(QWidget):
    load_requested = Signal(str)  # the local path of a finished download

    def __init__(self, services: HubServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadsView")
        self.services = services
        self.rows: dict[str, QTreeWidgetItem] = {}
        self.progress: dict[str, DownloadProgress] = {}

        self.table = QTreeWidget()
        self.table.setObjectName("downloadsTable")
        self.table.setRootIsDecorated(False)
        self.table.setHeaderLabels(["File", "Model", "Progress", "Downloaded", "Speed", "Time left", "State"])
        header = self.table.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_PROGRESS, QHeaderView.ResizeMode.Stretch)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pauseDownload")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resumeDownload")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelDownload")
        self.load_button = QPushButton("Load into chat")
        self.load_button.setObjectName("loadDownload")
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setObjectName("clearDownloads")
        self.detail = QLabel("")
        self.detail.setObjectName("downloadDetail")
        self.detail.setWordWrap(True)
        self.detail.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        buttons = QHBoxLayout()
        for b in (self.pause_button, self.resume_button, self.cancel_button, self.load_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.clear_button)
        self.empty = QLabel("No downloads yet. Pick a model in Discover and press Download.")
        self.empty.setObjectName("downloadsEmpty")
        self.empty.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        layout = QVBoxLayout(self)
        layout.addWidget(self.empty)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)

        self.pause_button.clicked.connect(lambda: self._each_selected(services.downloads.pause))
        self.resume_button.clicked.connect(lambda: self._each_selected(services.downloads.resume))
        self.cancel_button.clicked.connect(lambda: self._each_selected(services.downloads.cancel))
        self.load_button.clicked.connect(self._load)
        self.clear_button.clicked.connect(self._clear_finished)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda *_: self._load())
        services.download_progress.connect(self.update_progress)
        services.ready.connect(self._show_unfinished)
        if services.is_ready:
            self._show_unfinished()
        self._update_buttons()

    def _show_unfinished(self) -> None:
        for p in self.services.downloads.list():  # unfinished downloads from an earlier session
            self.update_progress(p)

    def selected_ids(self) -> list[str]:
        return [item.data(0, Qt.ItemDataRole.UserRole) for item in self.table.selectedItems()]

    def select(self, download_id: str) -> None:
        item = self.rows.get(download_id)
        if item is not None:
            self.table.setCurrentItem(item)

    def _each_selected(self, action) -> None:
        for download_id in self.selected_ids():
            action(download_id)

    def update_progress(self, p: DownloadProgress) -> None:
        self.progress[p.id] = p
        item = self.rows.get(p.id)
        if item is None:
            item = QTreeWidgetItem([p.path.rsplit("/", 1)[-1], p.repo_id])
            item.setData(0, Qt.ItemDataRole.UserRole, p.id)
            item.setToolTip(0, p.path)
            self.table.addTopLevelItem(item)
            bar = QProgressBar()
            bar.setObjectName("downloadBar")
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            self.table.setItemWidget(item, COL_PROGRESS, bar)
            self.rows[p.id] = item
            if not self.table.selectedItems():
                self.table.setCurrentItem(item)
        bar = self.table.itemWidget(item, COL_PROGRESS)
        if isinstance(bar, QProgressBar):
            fraction = p.done / p.total if p.total else (1.0 if p.state == "done" else 0.0)
            bar.setValue(int(fraction * 1000))
            bar.setFormat(f"{fraction * 100:.0f}%")
        total = format_bytes(p.total) if p.total else "?"
        item.setText(COL_BYTES, f"{format_bytes(p.done)} of {total}")
        item.setText(COL_SPEED, format_speed(p.speed) if p.state == "downloading" else "")
        item.setText(COL_ETA, format_duration(p.eta) if p.state == "downloading" else "")
        item.setText(COL_STATE, _STATE_TEXT.get(p.state, p.state))
        item.setToolTip(COL_STATE, p.error or "")
        colour = {"failed": "#c62828", "done": "#2e7d32"}.get(p.state)
        item.setForeground(COL_STATE, QBrush(QColor(colour)) if colour else QBrush())
        self.empty.setVisible(not self.rows)
        self._update_buttons()

    def _update_buttons(self) -> None:
        states = [self.progress[i].state for i in self.selected_ids() if i in self.progress]
        self.pause_button.setEnabled(any(s in ("queued", "downloading") for s in states))
        self.resume_button.setEnabled(any(s in ("paused", "failed") for s in states))
        self.cancel_button.setEnabled(any(s in (*_ACTIVE, "paused", "failed") for s in states))
        self.load_button.setEnabled(len(states) == 1 and states[0] == "done")
        self.clear_button.setEnabled(any(p.state in ("done", "cancelled") for p in self.progress.values()))
        errors = [self.progress[i].error for i in self.selected_ids() if i in self.progress and
                  self.progress[i].error]
        self.detail.setText(errors[0] if errors else "")
        self.detail.setStyleSheet("color: #c62828;" if errors else "")

    def _load(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1:
            p = self.progress.get(ids[0])
            if p is not None and p.state == "done" and p.local_path:
                self.load_requested.emit(p.local_path)

    def _clear_finished(self) -> None:
        self.services.downloads.clear_finished()  # the files stay; only the list forgets them
        for download_id, p in list(self.progress.items()):
            if p.state in ("done", "cancelled"):
                item = self.rows.pop(download_id)
                self.table.takeTopLevelItem(self.table.indexOfTopLevelItem(item))
                del self.progress[download_id]
        self.empty.setVisible(not self.rows)
        self._update_buttons()
