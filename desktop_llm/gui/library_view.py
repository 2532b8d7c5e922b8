"""My Models: every local model with its facts; load, per-model defaults, reveal, delete, import.

A model whose files cannot be read stays in the list, in red, with the reason.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QPalette
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.model_library import delete_model, disk_usage, reveal_target
from desktop_llm.core.models import ModelRef, import_model, list_local_models
from desktop_llm.core.units import format_bytes, parameter_count
from desktop_llm.gui.background import Background
from desktop_llm.gui.model_defaults_dialog import ModelDefaultsDialog

_SOURCE_TEXT = {"bundled": "bundled", "hf-cache": "Hugging Face cache", "imported": "imported"}
_ERROR_COLOUR = "#c62828"
COLUMNS = ["Model", "Format", "Architecture", "Parameters", "Quantization", "Context", "Chat template", "Size",
           "Source"]


class LibraryView(QWidget):
    load_requested = Signal(object)  # ModelRef
    status = Signal(str)  # a short message for the status bar
    defaults_changed = Signal(str)  # model id
    models_changed = Signal(list)  # every local model, after each refresh (for other model lists)

    def __init__(self, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("libraryView")
        self.background = background
        self.models: list[ModelRef] = []
        self.loaded_id: str | None = None

        self.filter_edit = QLineEdit()
        self.filter_edit.setObjectName("libraryFilter")
        self.filter_edit.setPlaceholderText("Filter by name, architecture, quantization…")
        self.filter_edit.setClearButtonEnabled(True)
        self.import_button = QPushButton("Import file…")
        self.import_button.setObjectName("importModel")
        self.import_button.setToolTip("Add a GGUF file from anywhere on disk (it stays where it is)")
        self.import_folder_button = QPushButton("Import folder…")
        self.import_folder_button.setObjectName("importFolder")
        self.import_folder_button.setToolTip("Add a Hugging Face model folder (config.json and safetensors weights)")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setObjectName("refreshLibrary")
        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.import_button)
        top.addWidget(self.import_folder_button)
        top.addWidget(self.refresh_button)

        self.table = QTreeWidget()
        self.table.setObjectName("libraryTable")
        self.table.setRootIsDecorated(False)
        self.table.setHeaderLabels(COLUMNS)
        self.table.setSortingEnabled(False)
        header = self.table.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.detail = QLabel("")
        self.detail.setObjectName("libraryDetail")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.load_button = QPushButton("Load into chat")
        self.load_button.setObjectName("loadModel")
        self.defaults_button = QPushButton("Defaults…")
        self.defaults_button.setObjectName("modelDefaults")
        self.defaults_button.setToolTip("Context size, GPU layers, backend and sampling preset for this model")
        self.reveal_button = QPushButton("Show in folder")
        self.reveal_button.setObjectName("revealModel")
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setObjectName("deleteModel")
        buttons = QHBoxLayout()
        for b in (self.load_button, self.defaults_button, self.reveal_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)

        self.filter_edit.textChanged.connect(lambda _t: self._fill())
        self.import_button.clicked.connect(self._import)
        self.import_folder_button.clicked.connect(self._import_folder)
        self.refresh_button.clicked.connect(self.refresh)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda *_: self._load())
        self.load_button.clicked.connect(self._load)
        self.defaults_button.clicked.connect(self._edit_defaults)
        self.reveal_button.clicked.connect(self._reveal)
        self.delete_button.clicked.connect(self._delete)
        self._update_buttons()

    # -- list ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.background.run(list_local_models, self.set_models,
                            lambda exc: self.status.emit(f"Could not list the models: {exc}"))

    def set_models(self, models: list[ModelRef]) -> None:
        self.models = list(models)
        self._fill()
        self.models_changed.emit(self.models)

    def set_loaded(self, model_id: str | None) -> None:
        self.loaded_id = model_id
        self._fill()

    def _fill(self) -> None:
        chosen = self.selected()
        needle = self.filter_edit.text().strip().lower()
        self.table.clear()
        for ref in self.models:
            cells = [ref.name + ("  ● loaded" if ref.id == self.loaded_id else ""), ref.format.upper(),
                     ref.architecture or "", parameter_count(ref.parameters), ref.quantization or "",
                     f"{ref.context_length:,}" if ref.context_length else "",
                     {True: "yes", False: "no", None: ""}[ref.has_chat_template], format_bytes(ref.size_bytes),
                     _SOURCE_TEXT.get(ref.source, ref.source)]
            if needle and not any(needle in c.lower() for c in cells):
                continue
            item = QTreeWidgetItem(cells)
            item.setData(0, Qt.ItemDataRole.UserRole, ref.id)
            item.setToolTip(0, ref.path)
            if ref.error:
                item.setText(2, "⚠ cannot be used")
                item.setToolTip(2, ref.error)
                for col in range(len(COLUMNS)):
                    item.setForeground(col, QBrush(QColor(_ERROR_COLOUR)))
            self.table.addTopLevelItem(item)
            if chosen is not None and ref.id == chosen.id:
                self.table.setCurrentItem(item)
        self._update_buttons()

    def selected(self) -> ModelRef | None:
        items = self.table.selectedItems()
        if not items:
            return None
        model_id = items[0].data(0, Qt.ItemDataRole.UserRole)
        return next((m for m in self.models if m.id == model_id), None)

    def _update_buttons(self) -> None:
        ref = self.selected()
        self.load_button.setEnabled(ref is not None and not ref.error)
        self.defaults_button.setEnabled(ref is not None and not ref.error)
        self.reveal_button.setEnabled(ref is not None)
        self.delete_button.setEnabled(ref is not None and ref.source != "bundled")
        self.delete_button.setToolTip("The bundled model ships with the app and cannot be deleted"
                                      if ref is not None and ref.source == "bundled" else "Delete the model's files")
        if ref is None:
            self.detail.setText(f"{len(self.models)} models on this machine." if self.models else "")
            self.detail.setStyleSheet("")
        elif ref.error:
            self.detail.setText(f"{ref.path}\n{ref.error}")
            self.detail.setStyleSheet(f"color: {_ERROR_COLOUR};")
        else:
            self.detail.setText(ref.path)
            self.detail.setStyleSheet("")

    # -- actions ------------------------------------------------------------------------------
    def _load(self) -> None:
        ref = self.selected()
        if ref is not None and not ref.error:
            self.load_requested.emit(ref)

    def _edit_defaults(self) -> None:
        ref = self.selected()
        if ref is None:
            return
        dialog = ModelDefaultsDialog(ref, self.background, self)
        dialog.saved.connect(self.defaults_changed)
        dialog.open()

    def _reveal(self) -> None:
        ref = self.selected()
        if ref is None:
            return
        target = reveal_target(ref)
        folder = target if target.is_dir() else target.parent
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _delete(self) -> None:
        ref = self.selected()
        if ref is None or ref.source == "bundled":
            return
        self.background.run(lambda: disk_usage(ref), lambda size: self._confirm_delete(ref, size),
                            lambda exc: self._confirm_delete(ref, ref.size_bytes))

    def _confirm_delete(self, ref: ModelRef, size: int) -> None:
        where = "from the Hugging Face cache" if ref.source == "hf-cache" else f"from {ref.path}"
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete model",
                          f"Delete {ref.name} ({format_bytes(size)}) {where}?\n\nThe files are removed from disk; "
                          "download or import the model again to use it.",
                          QMessageBox.StandardButton.Cancel, self)
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setObjectName("confirmDelete")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def answered() -> None:
            if box.clickedButton() is delete:
                self.background.run(lambda: delete_model(ref), lambda freed: self._deleted(ref, freed),
                                    lambda exc: self.status.emit(f"Could not delete {ref.name}: {exc}"))

        box.finished.connect(lambda _r: answered())
        box.open()

    def _deleted(self, ref: ModelRef, freed: int) -> None:
        self.status.emit(f"Deleted {ref.name}: {format_bytes(freed)} freed.")
        self.refresh()

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", "", "GGUF models (*.gguf);;All files (*)")
        if path:
            self.import_path(path)

    def _import_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a Hugging Face model folder")
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        """Add a file or folder to the library; a problem with it is said in the status bar, not raised."""
        self.background.run(lambda: import_model(path), lambda ref: self._imported(ref),
                            lambda exc: self.status.emit(f"Could not import {path}: {exc}"))

    def _imported(self, ref: ModelRef) -> None:
        self.status.emit(f"Imported {ref.name}." if not ref.error else f"Imported {ref.name}, but: {ref.error}")
        self.refresh()
