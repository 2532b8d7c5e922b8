"""The chat page's sidebar: saved chats grouped by last activity, search hits, and per-chat actions.

It does no disk work: it shows what it is given (``set_conversations``, ``set_hits``) and reports what
the user asks for by signal, so the owner can run the store off the GUI thread and feed results back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFont,
    QFontMetrics,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPalette,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.conversation import Conversation
from desktop_llm.core.store import SearchHit

# Item data roles.
_KIND = Qt.ItemDataRole.UserRole  # "header" | "chat" | "hit" | "note"
_ID = Qt.ItemDataRole.UserRole + 1  # conversation id
_UPDATED = Qt.ItemDataRole.UserRole + 2  # chat: last activity (epoch seconds)
_PINNED = Qt.ItemDataRole.UserRole + 3
_MESSAGE = Qt.ItemDataRole.UserRole + 4  # hit: message id
_SNIPPET = Qt.ItemDataRole.UserRole + 5  # hit: one-line snippet with [hits]

EXPORT_FORMATS = {"markdown": ("md", "Markdown (*.md)"), "json": ("json", "JSON (*.json)")}
UNDO_SECONDS = 10
PIN = "★"  # in every common font (an emoji pin shows as a box where no emoji font is installed)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PAD = 10  # horizontal padding inside a row


def relative_time(timestamp: float, now: float) -> str:
    """How long ago, the way a chat list says it: "just now", "5 min ago", "yesterday", "3 Mar"."""
    seconds = now - timestamp
    then, today = datetime.fromtimestamp(timestamp), datetime.fromtimestamp(now).date()
    days = (today - then.date()).days
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if days <= 0:
        return f"{int(seconds // 3600)} h ago"
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    day = f"{then.day} {_MONTHS[then.month - 1]}"
    return day if then.year == today.year else f"{day} {then.year}"


def activity_group(timestamp: float, today: date) -> str:
    days = (today - datetime.fromtimestamp(timestamp).date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days <= 7:
        return "Previous 7 days"
    return "Older"


def export_file_name(title: str, fmt: str) -> str:
    """A safe default file name from a chat title: "Trip to Lisbon" -> "Trip_to_Lisbon.md"."""
    stem = re.sub(r"[^\w\-]+", "_", title).strip("_")[:80] or "chat"
    return f"{stem}.{EXPORT_FORMATS[fmt][0]}"


def snippet_segments(snippet: str) -> list[tuple[str, bool]]:
    """Split a one-line snippet into (text, is_hit) runs; the store marks hits as [word]."""
    return [(part, i % 2 == 1) for i, part in enumerate(re.split(r"\[([^\]]*)\]", snippet)) if part]


class _RowDelegate(QStyledItemDelegate):
    """Paints headers, chat rows (title, pin, time or ⋯) and search hits; edits titles in place."""

    def __init__(self, owner: ConversationList) -> None:
        super().__init__(owner)
        self._owner = owner

    # -- geometry ---------------------------------------------------------------------------------
    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt's name
        line = option.fontMetrics.height()
        kind = index.data(_KIND)
        if kind == "header":
            return QSize(0, line + 14)
        if kind == "hit":
            return QSize(0, 2 * line + 16)
        if kind == "note":
            return QSize(0, line + 24)
        return QSize(0, line + 14)

    def more_rect(self, rect: QRect) -> QRect:
        """Where the "⋯" menu button of a chat row sits."""
        return QRect(rect.right() - 28, rect.top(), 28, rect.height())

    # -- painting ---------------------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        kind = index.data(_KIND)
        painter.save()
        try:
            if kind == "header":
                self._paint_header(painter, option, index)
            elif kind == "note":
                painter.setPen(_muted(option.palette))
                painter.drawText(option.rect, Qt.AlignmentFlag.AlignCenter, index.data(Qt.ItemDataRole.DisplayRole))
            else:
                self._paint_background(painter, option)
                if kind == "hit":
                    self._paint_hit(painter, option, index)
                else:
                    self._paint_chat(painter, option, index)
        finally:
            painter.restore()

    def _paint_background(self, painter: QPainter, option: QStyleOptionViewItem) -> None:
        rect = option.rect.adjusted(4, 1, -4, -1)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hovered:
            color = QColor(option.palette.color(QPalette.ColorRole.Highlight))
            color.setAlpha(70 if selected else 28)  # a soft highlight keeps the text readable in its own colours
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(rect, 6, 6)

    def _paint_header(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        font = QFont(option.font)
        font.setPointSizeF(font.pointSizeF() * 0.85)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(_muted(option.palette))
        text_rect = option.rect.adjusted(_PAD, 6, -_PAD, 0)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         index.data(Qt.ItemDataRole.DisplayRole))

    def _paint_chat(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        rect = option.rect.adjusted(_PAD, 0, -_PAD, 0)
        metrics = option.fontMetrics
        active = option.state & (QStyle.StateFlag.State_MouseOver | QStyle.StateFlag.State_Selected)
        if active:
            # The menu button replaces the time on the row under the pointer or selected.
            right_text, right_width = "⋯", 18
            painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        else:
            right_text = relative_time(index.data(_UPDATED), self._owner.now())
            right_width = metrics.horizontalAdvance(right_text)
            painter.setPen(_muted(option.palette))
        small = QFont(option.font)
        if not active:
            small.setPointSizeF(small.pointSizeF() * 0.85)
        painter.setFont(small)
        painter.drawText(rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, right_text)

        title = index.data(Qt.ItemDataRole.DisplayRole)
        if index.data(_PINNED):
            title = f"{PIN} {title}"
        title_rect = rect.adjusted(0, 0, -(right_width + 8), 0)
        painter.setFont(option.font)
        painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        painter.drawText(title_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         metrics.elidedText(title, Qt.TextElideMode.ElideRight, title_rect.width()))

    def _paint_hit(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        rect = option.rect.adjusted(_PAD, 8, -_PAD, -8)
        bold = QFont(option.font)
        bold.setBold(True)
        bold_metrics = QFontMetrics(bold)
        line = option.fontMetrics.height()
        painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        painter.setFont(bold)
        painter.drawText(QRect(rect.left(), rect.top(), rect.width(), line),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         bold_metrics.elidedText(index.data(Qt.ItemDataRole.DisplayRole),
                                                 Qt.TextElideMode.ElideRight, rect.width()))
        # The snippet, run by run (hits in bold), cut with "…" where the row ends.
        x, y, right = rect.left(), rect.top() + line, rect.right()
        painter.setPen(_muted(option.palette))
        for text, is_hit in snippet_segments(index.data(_SNIPPET)):
            font, metrics = (bold, bold_metrics) if is_hit else (option.font, option.fontMetrics)
            painter.setFont(font)
            if is_hit:
                painter.setPen(option.palette.color(QPalette.ColorRole.Text))
            width = metrics.horizontalAdvance(text)
            if x + width > right:
                text = metrics.elidedText(text, Qt.TextElideMode.ElideRight, right - x)
                painter.drawText(QRect(x, y, right - x, line), Qt.AlignmentFlag.AlignVCenter, text)
                break
            painter.drawText(QRect(x, y, width + 1, line), Qt.AlignmentFlag.AlignVCenter, text)
            x += width
            if is_hit:
                painter.setPen(_muted(option.palette))

    # -- inline rename ----------------------------------------------------------------------------
    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,  # noqa: N802 - Qt's name
                     index: QModelIndex) -> QWidget:
        editor = QLineEdit(parent)
        editor.setObjectName("renameEdit")
        return editor

    def setEditorData(self, editor: QWidget, index: QModelIndex) -> None:  # noqa: N802 - Qt's name
        editor.setText(index.data(Qt.ItemDataRole.DisplayRole))
        editor.selectAll()

    def updateEditorGeometry(self, editor: QWidget, option: QStyleOptionViewItem,  # noqa: N802 - Qt's name
                             index: QModelIndex) -> None:
        editor.setGeometry(option.rect.adjusted(4, 2, -4, -2))

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: QModelIndex) -> None:  # noqa: N802 - Qt's name
        title = " ".join(editor.text().split())
        if not title or title == index.data(Qt.ItemDataRole.DisplayRole):
            return  # an empty title is refused: the old one stays
        model.setData(index, title, Qt.ItemDataRole.DisplayRole)  # show it now; the store answers later
        model.setData(index, title, Qt.ItemDataRole.ToolTipRole)
        model.setData(index, _row_text(title, index.data(_PINNED), index.data(_UPDATED), self._owner.now()),
                      Qt.ItemDataRole.AccessibleTextRole)
        self._owner.rename_requested.emit(index.data(_ID), title)


def _row_text(title: str, pinned: bool, updated_at: float, now: float) -> str:
    """What a chat row shows, as one string for screen readers (the delegate paints it)."""
    return f"{PIN + ' ' if pinned else ''}{title}, {relative_time(updated_at, now)}"


def _muted(palette: QPalette) -> QColor:
    return palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.PlaceholderText)


class _ListView(QListWidget):
    """The list itself: Enter opens, F2 renames, Delete deletes, ⋯ / right click / Menu key show the menu."""

    def __init__(self, owner: ConversationList) -> None:
        super().__init__(owner)
        self._owner = owner
        self.setObjectName("conversationList")
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)  # F2 is handled below, on every OS
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMouseTracking(True)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_Hover, True)
        self.setFrameShape(QFrame.Shape.NoFrame)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        item = self.currentItem()
        key = event.key()
        if item is not None and item.isSelected():
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._owner._activate(item)
                return
            if key == Qt.Key.Key_F2 and item.data(_KIND) == "chat":
                self.editItem(item)
                return
            if key == Qt.Key.Key_Delete and item.data(_KIND) == "chat":
                self._owner._delete(item.data(_ID))
                return
            if key == Qt.Key.Key_Menu and item.data(_KIND) == "chat":
                self._owner._show_menu(item.data(_ID), self._below(item))
                return
        if key == Qt.Key.Key_Up and self._first_selectable_row() == self.currentRow():
            self._owner.search.setFocus()  # up from the first row goes back to the search field
            return
        super().keyPressEvent(event)

    def _first_selectable_row(self) -> int:
        for row in range(self.count()):
            if self.item(row).flags() & Qt.ItemFlag.ItemIsSelectable and not self.item(row).isHidden():
                return row
        return -1

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        item = self.itemAt(event.position().toPoint())
        if (event.button() == Qt.MouseButton.LeftButton and item is not None and item.data(_KIND) == "chat"
                and self._owner._delegate.more_rect(self.visualItemRect(item)).contains(event.position().toPoint())):
            self.setCurrentItem(item)
            rect = self.visualItemRect(item)
            self._owner._show_menu(item.data(_ID), self.viewport().mapToGlobal(rect.bottomRight()))
            return
        super().mousePressEvent(event)

    def _below(self, item: QListWidgetItem) -> QPoint:
        return self.viewport().mapToGlobal(self.visualItemRect(item).bottomLeft())

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 - Qt's name
        if event.reason() == QContextMenuEvent.Reason.Mouse:
            item = self.itemAt(event.pos())
            where = event.globalPos()
        else:  # Shift+F10 and the like: under the current row
            item = self.currentItem()
            where = self._below(item) if item else QPoint()
        if item is not None and item.data(_KIND) == "chat":
            self.setCurrentItem(item)
            self._owner._show_menu(item.data(_ID), where)


class _SearchField(QLineEdit):
    """Esc clears the search; Down moves into the results."""

    def __init__(self, owner: ConversationList) -> None:
        super().__init__(owner)
        self._owner = owner

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        if event.key() == Qt.Key.Key_Down:
            self._owner._focus_first_row()
            return
        super().keyPressEvent(event)


class ConversationList(QWidget):
    """The sidebar of saved chats. Shows what it is given; reports what the user asks for by signal."""

    open_requested = Signal(str)  # conversation id
    hit_requested = Signal(str, list)  # message id, the searched words
    new_requested = Signal()
    import_requested = Signal(str)  # path of a JSON export
    export_requested = Signal(str, str, str)  # conversation id, "markdown" | "json", target path
    rename_requested = Signal(str, str)  # conversation id, new title (stripped, non-empty)
    pin_requested = Signal(str, bool)  # conversation id, pinned?
    delete_requested = Signal(str)  # conversation id
    undo_delete_requested = Signal(str)  # conversation id
    search_changed = Signal(str)  # the query, debounced; "" when cleared

    def __init__(self, parent: QWidget | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(parent)
        self.now = clock
        self._conversations: list[Conversation] = []
        self._pending: list[Conversation] | None = None  # a refresh that arrived during a rename
        self._selected: str | None = None
        self._deleted_id: str | None = None
        self._deleted_title = ""
        self._last_dir = str(Path.home())

        self.search = _SearchField(self)
        self.search.setObjectName("conversationSearch")
        self.search.setPlaceholderText("Search all chats (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.new_button = QPushButton("New chat")
        self.new_button.setObjectName("newChatButton")
        self.new_button.setToolTip("Start a new chat (Ctrl+N)")
        self.import_button = QToolButton()
        self.import_button.setObjectName("importButton")
        self.import_button.setText("Import…")
        self.import_button.setToolTip("Import a chat exported as JSON")
        self.list = _ListView(self)
        self._delegate = _RowDelegate(self)
        self.list.setItemDelegate(self._delegate)

        self.undo_bar = QFrame()
        self.undo_bar.setObjectName("undoBar")
        self.undo_bar.setStyleSheet("#undoBar { background: palette(alternate-base);"
                                    " border-top: 1px solid palette(mid); }")
        self.undo_label = QLabel()
        self.undo_label.setObjectName("undoLabel")
        self.undo_label.setMinimumWidth(1)  # a long title must not widen the sidebar
        self.undo_button = QPushButton("Undo")
        self.undo_button.setObjectName("undoButton")
        bar = QHBoxLayout(self.undo_bar)
        bar.setContentsMargins(8, 4, 4, 4)
        bar.addWidget(self.undo_label, 1)
        bar.addWidget(self.undo_button)
        self.undo_bar.hide()

        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button, 1)
        buttons.addWidget(self.import_button)
        top = QVBoxLayout()
        top.setContentsMargins(6, 6, 6, 4)
        top.addWidget(self.search)
        top.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.undo_bar)

        self._search_timer = QTimer(self, singleShot=True, interval=150)  # one search per burst of typing
        self._undo_timer = QTimer(self, singleShot=True, interval=int(UNDO_SECONDS * 1000))
        self._tick = QTimer(self, interval=60_000)  # keeps "5 min ago" true while the list stays open
        self._tick.start()

        self.search.textChanged.connect(self._on_search_edited)
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search_text()))
        self.new_button.clicked.connect(self.new_requested)
        self.import_button.clicked.connect(self._on_import_clicked)
        self.list.clicked.connect(lambda index: self._activate(self.list.itemFromIndex(index)))
        self._delegate.closeEditor.connect(lambda *_: QTimer.singleShot(0, self._apply_pending))
        self.undo_button.clicked.connect(self._on_undo)
        self._undo_timer.timeout.connect(self.undo_bar.hide)
        self._tick.timeout.connect(self.list.viewport().update)
        self._show_conversations()

    # -- what the owner feeds in ------------------------------------------------------------------
    def set_conversations(self, conversations: list[Conversation]) -> None:
        """Chats in display order (pinned first, then last activity); shown unless a search is on."""
        if self.list.state() == QAbstractItemView.State.EditingState:
            self._pending = list(conversations)  # rebuilding now would throw away the title being typed
            return
        self._conversations = list(conversations)
        if not self.search_text():
            self._show_conversations()

    def set_hits(self, query: str, hits: list[SearchHit]) -> None:
        """Search results for ``query``; ignored when the user has typed on since (a stale answer)."""
        if query.strip() != self.search_text() or not self.search_text():
            return
        self._fill(self._hit_items(hits) or [_note("No message matches.")], keep_scroll=False)

    def select(self, conversation_id: str | None) -> None:
        """Highlight the open chat, without emitting anything."""
        self._selected = conversation_id
        self._apply_selection()

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def search_text(self) -> str:
        """The search query as searched: stripped."""
        return self.search.text().strip()

    def show_deleted(self, conversation_id: str, title: str) -> None:
        """Offer to undo a deletion for a while; a newer deletion replaces the offer."""
        self._deleted_id = conversation_id
        self._deleted_title = title
        self.undo_label.setToolTip(title)
        self._update_undo_text()
        self.undo_bar.show()
        self._undo_timer.start()

    # -- actions the dialogs end in (public so they run without a dialog) -------------------------
    def export_conversation(self, conversation_id: str, fmt: str, path: str) -> None:
        suffix = "." + EXPORT_FORMATS[fmt][0]
        if not path.lower().endswith(suffix):
            path += suffix  # a name typed without its extension
        self._last_dir = str(Path(path).parent)
        self.export_requested.emit(conversation_id, fmt, path)

    def import_file(self, path: str) -> None:
        self._last_dir = str(Path(path).parent)
        self.import_requested.emit(path)

    def context_menu_for(self, conversation_id: str) -> QMenu:
        """The chat's menu: Rename, Pin / Unpin, Export as Markdown… / JSON…, Delete."""
        item = self._chat_item(conversation_id)
        pinned = bool(item is not None and item.data(_PINNED))
        menu = QMenu(self)
        menu.setObjectName("conversationMenu")
        rename = menu.addAction("Rename")
        rename.setShortcut(Qt.Key.Key_F2)  # shown as a hint; the list handles the key itself
        rename.triggered.connect(lambda: item is not None and self.list.editItem(item))
        pin = menu.addAction("Unpin" if pinned else "Pin")
        pin.triggered.connect(lambda: self.pin_requested.emit(conversation_id, not pinned))
        menu.addSeparator()
        for fmt, label in (("markdown", "Export as Markdown…"), ("json", "Export as JSON…")):
            action = menu.addAction(label)
            action.triggered.connect(lambda _=False, f=fmt: self._on_export_clicked(conversation_id, f))
        menu.addSeparator()
        delete = menu.addAction("Delete")
        delete.setShortcut(Qt.Key.Key_Delete)
        delete.triggered.connect(lambda: self._delete(conversation_id))
        return menu

    # -- dialogs (small methods, so tests can stand in for them) ----------------------------------
    def _ask_save_path(self, default_name: str, fmt: str) -> str | None:
        path, _filter = QFileDialog.getSaveFileName(self, "Export chat", str(Path(self._last_dir) / default_name),
                                                    EXPORT_FORMATS[fmt][1])
        return path or None

    def _ask_open_path(self) -> str | None:
        path, _filter = QFileDialog.getOpenFileName(self, "Import chat", self._last_dir,
                                                    "Chat exports (*.json);;All files (*)")
        return path or None

    def _exec_menu(self, menu: QMenu, where: QPoint) -> None:
        menu.exec(where)

    # -- internals --------------------------------------------------------------------------------
    def _on_export_clicked(self, conversation_id: str, fmt: str) -> None:
        item = self._chat_item(conversation_id)
        title = item.data(Qt.ItemDataRole.DisplayRole) if item is not None else "chat"
        path = self._ask_save_path(export_file_name(title, fmt), fmt)
        if path:
            self.export_conversation(conversation_id, fmt, path)

    def _on_import_clicked(self) -> None:
        path = self._ask_open_path()
        if path:
            self.import_file(path)

    def _show_menu(self, conversation_id: str, where: QPoint) -> None:
        menu = self.context_menu_for(conversation_id)
        self._exec_menu(menu, where)
        menu.deleteLater()

    def _on_search_edited(self, _text: str) -> None:
        if self.search_text():
            self._search_timer.start()
            return
        # Cleared: show the chats at once, and say so without waiting.
        self._search_timer.stop()
        self._show_conversations()
        self.search_changed.emit("")

    def _activate(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        kind = item.data(_KIND)
        if kind == "chat":
            self._selected = item.data(_ID)
            self.open_requested.emit(item.data(_ID))
        elif kind == "hit":
            self.hit_requested.emit(item.data(_MESSAGE), self.search_text().split())

    def _delete(self, conversation_id: str) -> None:
        item = self._chat_item(conversation_id)
        if item is not None:
            item.setHidden(True)  # gone at once; the store's answer rebuilds the list anyway
            self._hide_empty_headers()
        self.delete_requested.emit(conversation_id)

    def _on_undo(self) -> None:
        self._undo_timer.stop()
        self.undo_bar.hide()
        if self._deleted_id is None:
            return
        item = self._chat_item(self._deleted_id)
        if item is not None:
            item.setHidden(False)
            self._hide_empty_headers()
        self.undo_delete_requested.emit(self._deleted_id)
        self._deleted_id = None

    def _update_undo_text(self) -> None:
        # Elide the title, not the sentence, so "Deleted “…”." stays readable in a narrow sidebar.
        metrics = self.undo_label.fontMetrics()
        margins = self.undo_bar.layout().contentsMargins()
        used = (margins.left() + margins.right() + self.undo_bar.layout().spacing() + 4
                + self.undo_button.sizeHint().width() + metrics.horizontalAdvance("Deleted “”."))
        room = self.width() - used
        title = metrics.elidedText(self._deleted_title, Qt.TextElideMode.ElideRight, max(room, 40))
        self.undo_label.setText(f"Deleted “{title}”.")

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self._deleted_title:
            self._update_undo_text()

    def _apply_pending(self) -> None:
        if self._pending is not None and self.list.state() != QAbstractItemView.State.EditingState:
            pending, self._pending = self._pending, None
            self.set_conversations(pending)

    def _show_conversations(self) -> None:
        self._fill(self._chat_items(self._conversations) or [_note("No chats yet.")], keep_scroll=True)

    def _chat_items(self, conversations: list[Conversation]) -> list[QListWidgetItem]:
        now = self.now()
        today = datetime.fromtimestamp(now).date()
        items: list[QListWidgetItem] = []
        group = None
        for conv in conversations:
            conv_group = "Pinned" if conv.pinned else activity_group(conv.updated_at, today)
            if conv_group != group:
                group = conv_group
                header = QListWidgetItem(group)
                header.setData(_KIND, "header")
                header.setFlags(Qt.ItemFlag.NoItemFlags)
                items.append(header)
            item = QListWidgetItem(conv.title)
            item.setData(_KIND, "chat")
            item.setData(_ID, conv.id)
            item.setData(_UPDATED, conv.updated_at)
            item.setData(_PINNED, conv.pinned)
            item.setToolTip(conv.title)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, _row_text(conv.title, conv.pinned, conv.updated_at, now))
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable)
            items.append(item)
        return items

    def _hit_items(self, hits: list[SearchHit]) -> list[QListWidgetItem]:
        items = []
        for hit in hits:
            item = QListWidgetItem(hit.conversation_title)
            item.setData(_KIND, "hit")
            item.setData(_ID, hit.conversation_id)
            item.setData(_MESSAGE, hit.message_id)
            item.setData(_SNIPPET, " ".join(hit.snippet.split()))  # one line, whatever the message's layout
            item.setToolTip(hit.snippet.replace("[", "").replace("]", ""))
            items.append(item)
        return items

    def _fill(self, items: list[QListWidgetItem], keep_scroll: bool) -> None:
        scroll = self.list.verticalScrollBar().value()
        self.list.setUpdatesEnabled(False)
        try:
            self.list.clear()
            for item in items:
                self.list.addItem(item)
            self._apply_selection()
            if keep_scroll:  # a refresh after every reply must not jump the list to the top
                self.list.verticalScrollBar().setValue(scroll)
        finally:
            self.list.setUpdatesEnabled(True)

    def _apply_selection(self) -> None:
        item = self._chat_item(self._selected) if self._selected else None
        if item is None:
            self.list.clearSelection()
            return
        self.list.setCurrentItem(item)

    def _chat_item(self, conversation_id: str | None) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(_KIND) == "chat" and item.data(_ID) == conversation_id:
                return item
        return None

    def _hide_empty_headers(self) -> None:
        header, has_rows = None, False
        for row in range(self.list.count() + 1):
            item = self.list.item(row) if row < self.list.count() else None
            if item is None or item.data(_KIND) == "header":
                if header is not None:
                    header.setHidden(not has_rows)
                header, has_rows = item, False
            elif not item.isHidden():
                has_rows = True

    def _focus_first_row(self) -> None:
        row = self.list._first_selectable_row()
        if row >= 0:
            self.list.setFocus()
            if not self.list.currentItem() or not self.list.currentItem().isSelected():
                self.list.setCurrentRow(row)


def _note(text: str) -> QListWidgetItem:
    item = QListWidgetItem(text)
    item.setData(_KIND, "note")
    item.setFlags(Qt.ItemFlag.NoItemFlags)
    return item
