"""Discover: search the Hub with filters and sorting, page through results, and see a model's detail."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import DesktopLLMError, GatedRepo
from desktop_llm.core.units import format_count, format_date
from desktop_llm.gui.hub_services import HubServices
from desktop_llm.gui.model_detail_view import ModelDetailView

if TYPE_CHECKING:
    from desktop_llm.hub.client import SearchPage

FORMATS = (("Any format", ""), ("GGUF (llama.cpp)", "gguf"), ("Transformers (safetensors)", "transformers"))
SORTS = (("Most downloaded", "downloads"), ("Most liked", "likes"), ("Recently updated", "recent"))
PAGE_SIZE = 20


def error_text(exc: Exception) -> str:
    """What the banner says: our errors carry a message for the user; anything else is named plainly."""
    if isinstance(exc, DesktopLLMError):
        return str(exc)
    return f"Something went wrong talking to the Hub: {exc.__class__.__name__}: {exc}"


class DiscoverView(QWidget):
    download_requested = Signal(str, str, object)  # repo_id, commit, list[RepoFile]

    def __init__(self, services: HubServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("discoverView")
        self.services = services
        self.page = 0
        self.page_size = PAGE_SIZE
        self._query: tuple[str, tuple[str, ...], str] | None = None
        self._serial = 0  # answers to older searches are dropped

        self.search_edit = QLineEdit()
        self.search_edit.setObjectName("hubSearch")
        self.search_edit.setPlaceholderText("Search models on the Hugging Face Hub (e.g. qwen gguf, llama 8b)")
        self.search_edit.setClearButtonEnabled(True)
        self.format_combo = QComboBox()
        self.format_combo.setObjectName("formatFilter")
        for text, data in FORMATS:
            self.format_combo.addItem(text, data)
        self.format_combo.setCurrentIndex(1)  # GGUF runs best here; the user can widen it
        self.sort_combo = QComboBox()
        self.sort_combo.setObjectName("sortOrder")
        for text, data in SORTS:
            self.sort_combo.addItem(text, data)
        self.search_button = QPushButton("Search")
        self.search_button.setObjectName("searchButton")
        top = QHBoxLayout()
        top.addWidget(self.search_edit, 1)
        top.addWidget(self.format_combo)
        top.addWidget(self.sort_combo)
        top.addWidget(self.search_button)

        self.banner = QLabel("")
        self.banner.setObjectName("hubError")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.setOpenExternalLinks(True)
        self.banner.setStyleSheet("QLabel#hubError { color: #c62828; }")
        self.banner.hide()

        self.results = QTreeWidget()
        self.results.setObjectName("searchResults")
        self.results.setRootIsDecorated(False)
        self.results.setHeaderLabels(["Model", "Author", "Downloads", "Likes", "Updated", "License", "Access"])
        header = self.results.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)  # names stay whole; the list scrolls sideways when narrow
        self.status = QLabel("Search the Hub, or press Search to see the most downloaded models.")
        self.status.setObjectName("searchStatus")
        self.status.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.prev_button = QPushButton("‹ Previous")
        self.prev_button.setObjectName("prevPage")
        self.next_button = QPushButton("Next ›")
        self.next_button.setObjectName("nextPage")
        self.prev_button.setEnabled(False)
        self.next_button.setEnabled(False)
        pager = QHBoxLayout()
        pager.addWidget(self.status, 1)
        pager.addWidget(self.prev_button)
        pager.addWidget(self.next_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.results, 1)
        left_layout.addLayout(pager)

        self.detail = ModelDetailView(services)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.detail)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([560, 640])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.banner)
        layout.addWidget(split, 1)

        self.search_edit.returnPressed.connect(self.search)
        self.search_button.clicked.connect(self.search)
        self.format_combo.currentIndexChanged.connect(lambda _i: self._requery())
        self.sort_combo.currentIndexChanged.connect(lambda _i: self._requery())
        self.prev_button.clicked.connect(lambda: self._go(self.page - 1))
        self.next_button.clicked.connect(lambda: self._go(self.page + 1))
        self.results.currentItemChanged.connect(self._on_pick)
        self.detail.download_requested.connect(self.download_requested)
        self.detail.error.connect(self.show_error)

    # -- searching ----------------------------------------------------------------------------
    def search(self) -> None:
        fmt = self.format_combo.currentData()
        self._query = (self.search_edit.text().strip(), (fmt,) if fmt else (), self.sort_combo.currentData())
        self._go(0)

    def _requery(self) -> None:
        if self._query is not None:
            self.search()

    def _go(self, page: int) -> None:
        if self._query is None or page < 0:
            return
        self._serial += 1
        serial = self._serial
        text, formats, sort = self._query
        self.banner.hide()
        self.status.setText("Searching…")
        self.prev_button.setEnabled(False)
        self.next_button.setEnabled(False)
        self.services.call(
            lambda c: c.search(text, formats=formats, sort=sort, page=page, page_size=self.page_size),
            lambda result: self._on_results(serial, result),
            lambda exc: self._on_search_error(serial, exc))

    def _on_results(self, serial: int, result: SearchPage) -> None:
        if serial != self._serial:
            return
        self.page = result.page
        self.results.clear()
        for m in result.results:
            access = "gated" if m.gated else "open"
            name = m.repo_id.split("/", 1)[-1]
            item = QTreeWidgetItem([name, m.author or "", format_count(m.downloads), format_count(m.likes),
                                    format_date(m.last_modified), m.license or "", access])
            item.setData(0, Qt.ItemDataRole.UserRole, m.repo_id)
            item.setToolTip(0, f"{m.repo_id} · formats: {', '.join(m.formats) or 'unknown'}")
            for col in (2, 3):
                item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if m.gated:
                item.setForeground(6, QBrush(QColor("#8d6e00")))
            self.results.addTopLevelItem(item)
        first = result.page * self.page_size + 1
        if result.results:
            self.status.setText(f"Page {result.page + 1} · models {first}–{first + len(result.results) - 1}")
        else:
            self.status.setText("No models match. Try other words, or another format.")
        self.prev_button.setEnabled(result.page > 0)
        self.next_button.setEnabled(result.has_next)

    def _on_search_error(self, serial: int, exc: Exception) -> None:
        if serial == self._serial:
            self.status.setText("")
            self.prev_button.setEnabled(self.page > 0)
            self.show_error(exc)

    def show_error(self, exc: Exception) -> None:
        text = html.escape(error_text(exc))
        if isinstance(exc, GatedRepo) and exc.url:
            text += f" <a href='{html.escape(exc.url)}'>Open the model's page</a>"
            self.detail.gated_error(exc)
        self.banner.setText(text)
        self.banner.show()

    def _on_pick(self, item: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        if item is not None:
            self.banner.hide()
            self.detail.show_repo(item.data(0, Qt.ItemDataRole.UserRole))
