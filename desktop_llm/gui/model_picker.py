"""The model picker (Ctrl+K): a command-palette list of local models to load, filter and add.

Listing and importing read files (GGUF headers, folder sizes), so both run on the ``Background``
queue and never on the GUI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QKeyEvent, QPainter, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.models import ModelRef, import_model, list_local_models, ref_for_path
from desktop_llm.core.units import format_bytes
from desktop_llm.gui.background import Background

_FORMATS = {"gguf": "GGUF", "hf": "Transformers folder", "remote": "Remote (OpenAI-compatible API)"}
_SOURCES = {"bundled": "bundled", "hf-cache": "Hugging Face cache", "imported": "imported"}
_REF_ROLE = Qt.ItemDataRole.UserRole
_DETAIL_ROLE = Qt.ItemDataRole.UserRole + 1
_LOADED_ROLE = Qt.ItemDataRole.UserRole + 2
_LOADED_MARK = "● loaded"
_ERROR_COLOR = "#d9534f"  # readable on light and dark palettes


def describe(ref: ModelRef) -> str:
    """The second line of a row: format · size · architecture · context · source (or the error)."""
    if ref.error:
        return ref.error
    parts = [_FORMATS.get(ref.format, ref.format)]
    if ref.format == "remote":
        parts.append(ref.path)  # the endpoint's base URL
    if ref.size_bytes:
        parts.append(format_bytes(ref.size_bytes))
    if ref.architecture:
        parts.append(ref.architecture)
    if ref.context_length:
        parts.append(f"context {ref.context_length:,}")
    if ref.source in _SOURCES:
        parts.append(_SOURCES[ref.source])
    return " · ".join(parts)


def matches(ref: ModelRef, query: str) -> bool:
    """True when every word of ``query`` occurs in the name, id, path or architecture."""
    haystack = " ".join((ref.name, ref.id, ref.path, ref.architecture or "")).lower()
    return all(word in haystack for word in query.lower().split())


def _list_job() -> list[ModelRef] | str:
    try:
        return list_local_models()
    except (OSError, DesktopLLMError) as exc:
        return f"Could not list the models: {exc}"


def _remote_job() -> list[ModelRef]:
    # Imported here: the remote client loads when the picker first lists, not at start.
    from desktop_llm.remote.library import list_remote_models

    try:
        return list_remote_models()  # each provider asked with a short timeout, in parallel
    except (OSError, DesktopLLMError) as exc:
        return [ModelRef(id="remote:", name="Remote providers", path="", format="remote", source="remote",
                         error=str(exc))]


def _import_job(path: str) -> ModelRef | str:
    name = Path(path).name or path
    try:
        # Check first: import_model records a damaged file too, and it would then sit in the
        # library as a broken row the user cannot remove from here.
        probe = ref_for_path(path)
        if probe.error:
            return f"Could not add {name}: {probe.error}"
        return import_model(path)
    except DesktopLLMError as exc:
        return f"Could not add {name}: {exc}"
    except OSError as exc:
        return f"Could not add {name}: {exc.strerror or exc}"


class _RowDelegate(QStyledItemDelegate):
    """Two lines per model: the name in bold (plus the loaded mark), then the details in grey."""

    _PAD_X, _PAD_Y, _GAP = 10, 6, 2

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont]:
        bold = QFont(option.font)
        bold.setBold(True)
        small = QFont(option.font)
        small.setPointSizeF(max(option.font.pointSizeF() * 0.9, 7.0))
        return bold, small

    def sizeHint(self, option: QStyleOptionViewItem,  # noqa: N802 - Qt's name
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        bold, small = self._fonts(option)
        height = QFontMetrics(bold).height() + QFontMetrics(small).height() + 2 * self._PAD_Y + self._GAP
        return QSize(200, height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""  # the style draws only the background and selection; the text is ours
        style = opt.widget.style() if opt.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)

        ref: ModelRef = index.data(_REF_ROLE)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        main = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        dim = QColor(main)
        dim.setAlphaF(0.65)
        if ref.error:
            main = QColor(main)
            main.setAlphaF(0.5)
            dim.setAlphaF(0.5)
        bold, small = self._fonts(option)
        rect = option.rect.adjusted(self._PAD_X, self._PAD_Y, -self._PAD_X, -self._PAD_Y)
        top_h = QFontMetrics(bold).height()

        painter.save()
        name_width = rect.width()
        if index.data(_LOADED_ROLE):
            painter.setFont(small)
            mark_width = QFontMetrics(small).horizontalAdvance(_LOADED_MARK)
            painter.setPen(main if selected else QColor("#2e9d4f"))
            painter.drawText(rect.x(), rect.y(), rect.width(), top_h,
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, _LOADED_MARK)
            name_width -= mark_width + 12
        painter.setFont(bold)
        painter.setPen(main)
        name = QFontMetrics(bold).elidedText(ref.name, Qt.TextElideMode.ElideMiddle, name_width)
        painter.drawText(rect.x(), rect.y(), name_width, top_h,
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        painter.setFont(small)
        painter.setPen(dim)
        detail = QFontMetrics(small).elidedText(index.data(_DETAIL_ROLE), Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(rect.x(), rect.y() + top_h + self._GAP, rect.width(), QFontMetrics(small).height(),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, detail)
        painter.restore()


class ModelPicker(QDialog):
    """Pick a local model to load: type to filter, Up/Down to move, Enter to load, Esc to close.

    Picking the model that is already loaded just closes the dialog (a reload would only cost time).
    Listing starts each time the dialog is shown, so models added elsewhere show up.
    """

    chosen = Signal(object)  # the ModelRef the user picked (to load)
    unload_requested = Signal()

    def __init__(self, background: Background, loaded_id: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.background = background
        self._network = Background(self)
        self._local: list[ModelRef] = []
        self._remote: list[ModelRef] = []
        self._loaded_id = loaded_id
        self._models: list[ModelRef] = []
        self._listing = False
        self._select_id: str | None = None  # a model to select once the next listing arrives
        self._refusal_shown = False
        self.setWindowTitle("Choose a model")
        self.resize(640, 440)

        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Search models…")
        self.filter.setClearButtonEnabled(True)
        self.list = QListWidget()
        # The status sits inside the empty list, so rows arriving never shift the layout.
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.status.setObjectName("pickerStatus")
        # Quieter than content but readable (disabled text is too faint).
        grey = self.status.palette()
        dimmed = grey.color(QPalette.ColorRole.Text)
        dimmed.setAlphaF(0.6)
        grey.setColor(QPalette.ColorRole.Text, dimmed)
        self.status.setPalette(grey)
        placeholder = QVBoxLayout(self.list.viewport())
        placeholder.setContentsMargins(24, 24, 24, 24)
        placeholder.addWidget(self.status)
        self.list.setItemDelegate(_RowDelegate(self.list))
        self.list.setUniformItemSizes(True)
        # Keys stay in the filter line, as in a command palette; clicks still select rows.
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        keys = QLabel("↑↓ move · Enter load · Esc close")
        keys.setEnabled(False)  # greyed: a hint, not content
        self.add_file_button = QPushButton("Add a model file…")
        self.add_folder_button = QPushButton("Add a folder…")
        self.unload_button = QPushButton("Unload")
        for button in (self.add_file_button, self.add_folder_button, self.unload_button):
            button.setAutoDefault(False)  # Enter picks a model; it must not press a button

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_file_button)
        buttons.addWidget(self.add_folder_button)
        buttons.addStretch(1)
        buttons.addWidget(keys)
        buttons.addSpacing(12)
        buttons.addWidget(self.unload_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.message)
        layout.addLayout(buttons)

        self.filter.textChanged.connect(lambda _text: self._populate())
        self.filter.installEventFilter(self)
        self.list.itemDoubleClicked.connect(lambda _item: self.pick_current())
        self.list.currentItemChanged.connect(lambda *_: self._clear_refusal())
        self.add_file_button.clicked.connect(self._ask_for_file)
        self.add_folder_button.clicked.connect(self._ask_for_folder)
        self.unload_button.clicked.connect(self.unload_requested.emit)
        self._update_unload()
        self._update_status()

    # -- public -------------------------------------------------------------------------------
    def set_loaded(self, model_id: str | None) -> None:
        """Mark which model the engine has loaded (None: nothing is loaded)."""
        self._loaded_id = model_id
        self._update_unload()
        for row in range(self.list.count()):
            item = self.list.item(row)
            item.setData(_LOADED_ROLE, item.data(_REF_ROLE).id == model_id)

    def refresh(self) -> None:
        """List the models again (on the background queue)."""
        self._listing = True
        self._update_status()
        self.background.run(_list_job, self._alive(self._on_listed))
        # Remote providers answer over the network: on a queue of their own, so a slow one never holds
        # up the local list; their rows join it when they come.
        self._network.run(_remote_job, self._alive(self._on_remote_listed))

    def add_path(self, path: str | Path) -> None:
        """Add a GGUF file or model folder to the library; what the Add buttons call."""
        path = str(path)
        self._show_message(f"Adding {Path(path).name}…")
        self.background.run(lambda: _import_job(path), self._alive(self._on_imported))

    def current_ref(self) -> ModelRef | None:
        item = self.list.currentItem()
        return item.data(_REF_ROLE) if item is not None else None

    def pick_current(self) -> None:
        """Load the selected model, or say why it cannot be loaded."""
        ref = self.current_ref()
        if ref is None:
            return
        if ref.error:
            self._show_message(f"{ref.name} cannot be loaded: {ref.error}", error=True, refusal=True)
            return
        if ref.id != self._loaded_id:
            self.chosen.emit(ref)
        self.accept()

    def row_texts(self) -> list[str]:
        """What each row shows, as "name\\ndetails" (with the loaded mark on the name line)."""
        rows = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            mark = f"  {_LOADED_MARK}" if item.data(_LOADED_ROLE) else ""
            rows.append(f"{item.data(_REF_ROLE).name}{mark}\n{item.data(_DETAIL_ROLE)}")
        return rows

    # -- Qt events ----------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.filter.selectAll()
        self.filter.setFocus()
        self.refresh()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.filter and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            key = event.key()
            steps = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_PageUp: -5, Qt.Key.Key_PageDown: 5}
            if key in steps:
                self._move(steps[key])
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.pick_current()
                return True
        return super().eventFilter(watched, event)

    # -- internals ----------------------------------------------------------------------------
    def _alive(self, callback: Any) -> Any:
        # A result can arrive after the dialog was deleted (closed with the window); drop it then.
        return lambda value: callback(value) if shiboken6.isValid(self) else None

    def _on_listed(self, result: list[ModelRef] | str) -> None:
        self._listing = False
        if isinstance(result, str):
            self._show_message(result, error=True)
            result = []
        self._local = result
        self._models = self._local + self._remote
        prefer, self._select_id = self._select_id, None
        self._populate(prefer)

    def _on_remote_listed(self, refs: list[ModelRef]) -> None:
        self._remote = refs
        self._models = self._local + self._remote
        current = self.current_ref()
        self._populate(current.id if current else None)

    def _on_imported(self, result: ModelRef | str) -> None:
        if isinstance(result, str):
            self._show_message(result, error=True)
            return
        self._show_message(f"Added {result.name}.")
        self._select_id = result.id
        self.filter.clear()  # the new model must not be hidden by an old search
        self.refresh()

    def _populate(self, prefer: str | None = None) -> None:
        current = self.current_ref()
        keep = prefer or (current.id if current else None) or self._loaded_id
        query = self.filter.text()
        self.list.clear()
        select_row = -1
        for ref in self._models:
            if not matches(ref, query):
                continue
            item = QListWidgetItem(ref.name)
            item.setData(_REF_ROLE, ref)
            item.setData(_DETAIL_ROLE, describe(ref))
            item.setData(_LOADED_ROLE, ref.id == self._loaded_id)
            item.setToolTip(ref.error or ref.path)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{ref.name}, {describe(ref)}")
            self.list.addItem(item)
            if ref.id == keep:
                select_row = self.list.count() - 1
        if select_row < 0:
            pickable = [row for row in range(self.list.count()) if not self.list.item(row).data(_REF_ROLE).error]
            select_row = pickable[0] if pickable else (0 if self.list.count() else -1)
        if select_row >= 0:
            self.list.setCurrentRow(select_row)
        self._update_status()

    def _move(self, step: int) -> None:
        count = self.list.count()
        if count:
            row = self.list.currentRow()
            self.list.setCurrentRow(0 if row < 0 else max(0, min(count - 1, row + step)))

    def _update_status(self) -> None:
        if self.list.count():
            text = ""  # a refresh with rows on screen is quick; no need to say so
        elif self._listing:
            text = "Looking for models…"
        elif self._models and self.filter.text().strip():
            query = self.filter.text().strip()
            text = f"No models match “{query}”. Clear the search, or add a GGUF file or model folder."
        else:
            text = "No models found. Add a GGUF file or model folder with the buttons below."
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _update_unload(self) -> None:
        self.unload_button.setEnabled(self._loaded_id is not None)

    def _show_message(self, text: str, error: bool = False, refusal: bool = False) -> None:
        self.message.setStyleSheet(f"color: {_ERROR_COLOR};" if error else "")
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self._refusal_shown = refusal

    def _clear_refusal(self) -> None:
        # A refusal belongs to the row it was about; moving on clears it (import results stay).
        if self._refusal_shown:
            self._show_message("")

    def _ask_for_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a model file", "", "GGUF models (*.gguf)")
        if path:
            self.add_path(path)

    def _ask_for_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a model folder (config.json + safetensors)")
        if path:
            self.add_path(path)
