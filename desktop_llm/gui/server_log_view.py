"""The Server page's live request log: one row a request, newest at the bottom, and a detail pane.

Rows come from ``LogEntry`` objects (which never hold the API key). Bodies are only there when the user
turned on "Log request and reply bodies"; the log lives in memory only, capped at ``MAX_ROWS``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.server.request_log import LogEntry

MAX_ROWS = 1000  # older rows are dropped: a busy server must not grow the window's memory without end
COLUMNS = ("Time", "Method", "Path", "Status", "Model", "Tokens", "Duration", "Error")
_REORDER_SECONDS = 1.0
_RIGHT = {3, 5, 6}  # numbers line up on the right
_Index = QModelIndex | QPersistentModelIndex
NO_BODIES = ("Request and reply bodies are not logged. Turn on “Log request and reply bodies” in the "
             "settings to see them here for new requests.")


def _cell(entry: LogEntry, column: int) -> str:
    if column == 0:
        return time.strftime("%H:%M:%S", time.localtime(entry.at))
    if column == 1:
        return entry.method
    if column == 2:
        return entry.path
    if column == 3:
        return str(entry.status)
    if column == 4:
        return entry.model or ""
    if column == 5:
        return "" if entry.prompt_tokens is None else f"{entry.prompt_tokens}+{entry.completion_tokens or 0}"
    if column == 6:
        return f"{entry.duration_ms:,.0f} ms"
    return entry.error or ""


class RequestLogModel(QAbstractTableModel):
    """The entries as table rows; failed requests (status 400 and up) in the theme's error colour."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._entries: list[LogEntry] = []

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt's names
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        entry, column = self._entries[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(entry, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == 2:
                return entry.path + (" (streamed)" if entry.stream else "")
            return _cell(entry, column) if column in (4, 7) and _cell(entry, column) else None
        if role == Qt.ItemDataRole.ForegroundRole and entry.status >= 400:
            # Read at paint time, so rows follow a light/dark switch.
            return QBrush(QApplication.palette().color(QPalette.ColorRole.BrightText))
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _RIGHT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def entry(self, row: int) -> LogEntry:
        return self._entries[row]

    def add(self, entry: LogEntry) -> None:
        extra = len(self._entries) + 1 - MAX_ROWS
        if extra > 0:
            self.beginRemoveRows(QModelIndex(), 0, extra - 1)
            del self._entries[:extra]
            self.endRemoveRows()
        # Entries come as requests finish, from several threads: a reply's entry can come just after the
        # next request's (the client has its reply before the server logs it). Put it back in start order
        # among entries started within a second after it; a long stream still lands at the bottom.
        row = len(self._entries)
        while row > 0 and 0 < self._entries[row - 1].at - entry.at < _REORDER_SECONDS:
            row -= 1
        self.beginInsertRows(QModelIndex(), row, row)
        self._entries.insert(row, entry)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._entries.clear()
        self.endResetModel()


class _ElidingDelegate(QStyledItemDelegate):
    """Model ids keep both ends ("hf:org/…Q4_K_M.gguf"); other cells keep their start (an error's first words)."""

    def initStyleOption(self, option: QStyleOptionViewItem, index: _Index) -> None:  # noqa: N802 - Qt's name
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideMiddle if index.column() == 4 else Qt.TextElideMode.ElideRight


class ServerLogView(QWidget):
    """The table, a Clear button and the selected request's details. ``add`` takes entries on the GUI thread."""

    count_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("serverLog")
        self.model = RequestLogModel(self)

        self.count_label = QLabel("No requests yet")
        self.count_label.setObjectName("serverLogCount")
        self.count_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("clearServerLog")
        self.clear_button.setToolTip("Remove every row (and any logged bodies) from the log")
        title = QLabel("<b>Requests</b>")
        top = QHBoxLayout()
        top.addWidget(title)
        top.addWidget(self.count_label)
        top.addStretch(1)
        top.addWidget(self.clear_button)

        self.table = QTableView()
        self.table.setObjectName("serverLogTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setItemDelegate(_ElidingDelegate(self.table))
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        # Fixed widths from the font, not ResizeToContents, which re-measures every row on each insert.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setMinimumSectionSize(36)  # the stretched Error column may get narrow rather than scroll
        self._size_columns()

        self.detail = QPlainTextEdit()
        self.detail.setObjectName("serverLogDetail")
        self.detail.setReadOnly(True)
        self.detail.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.detail.setPlaceholderText("Select a request to see its details.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

        self.clear_button.clicked.connect(self.clear)
        self.table.selectionModel().currentRowChanged.connect(lambda current, _prev: self._show(current.row()))

    def _size_columns(self) -> None:
        metrics = self.table.fontMetrics()
        # Narrow enough that Error shows beside a settings column at the window's default size.
        samples = ("00:00:00", "POST", "/v1/chat/completions", "000", "bundled:SmolLM", "000+00", "00,000 ms")
        header = self.table.horizontalHeader().fontMetrics()
        for column, sample in enumerate(samples):
            width = max(metrics.horizontalAdvance(sample), header.horizontalAdvance(COLUMNS[column]))
            self.table.setColumnWidth(column, width + 12)
        self.table.setColumnWidth(len(samples), 40)  # Error: stretched into whatever room is left
        self.table.verticalHeader().setDefaultSectionSize(metrics.height() + 8)

    def add(self, entry: LogEntry) -> None:
        bar = self.table.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 2  # only follow new rows if the user has not scrolled up
        self.model.add(entry)
        self._show_count()
        if following:
            self.table.scrollToBottom()

    def clear(self) -> None:
        self.model.clear()
        self.detail.clear()
        self._show_count()

    def _show_count(self) -> None:
        n = self.model.rowCount()
        failed = sum(1 for row in range(n) if self.model.entry(row).status >= 400)
        text = "No requests yet" if not n else f"{n:,} request{'s' if n != 1 else ''}"
        if failed:
            text += f", {failed:,} failed"
        if n >= MAX_ROWS:
            text += f" (the last {MAX_ROWS:,})"
        self.count_label.setText(text)
        self.count_changed.emit(n)

    def _show(self, row: int) -> None:
        if not 0 <= row < self.model.rowCount():
            self.detail.clear()
            return
        self.detail.setPlainText(describe(self.model.entry(row)))


def describe(entry: LogEntry) -> str:
    """The detail pane's text for one request: its line, its error, and the bodies when they were logged."""
    when = time.strftime("%H:%M:%S", time.localtime(entry.at))
    parts = [f"{entry.method} {entry.path} → {entry.status}   at {when} from {entry.client}, "
             f"{entry.duration_ms:,.0f} ms"]
    facts = [f"Model {entry.model}"] if entry.model else []
    if entry.prompt_tokens is not None:
        facts.append(f"{entry.prompt_tokens} prompt + {entry.completion_tokens or 0} completion tokens")
    if entry.stream:
        facts.append("streamed")
    if facts:
        parts[0] += "\n" + ", ".join(facts)
    if entry.error:
        parts.append(f"Error: {entry.error}")
    if entry.body is None and entry.reply is None:
        parts.append(NO_BODIES)
    if entry.body is not None:
        parts.append("Request body:\n" + _pretty(entry.body))
    if entry.reply is not None:
        parts.append("Reply:\n" + entry.reply)
    return "\n\n".join(parts)


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body
