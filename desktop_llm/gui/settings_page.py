"""The Settings page: every change applies at once (no OK button) and goes out as a validated ``Settings``.

The page never touches the disk: the owner saves the emitted ``Settings`` off the GUI thread,
applies the look, and reloads the model when asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QPalette, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.models import BUNDLED_ID, ModelRef
from desktop_llm.core.paths import HOME_ENV, default_data_dir
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.settings import (
    CONTEXT_RANGE,
    DEVICES,
    FONT_RANGE,
    SAMPLING_KEYS,
    THREADS_MAX,
    Settings,
)
from desktop_llm.gui.sampling_form import sampling_spins, show_value, spin_value
from desktop_llm.gui.spin_boxes import int_spin

_BUNDLED = ""  # combo data for "the bundled model" (Settings.default_model None)
_PROMPT_DELAY_MS = 600  # the system prompt is saved once typing pauses, not per keystroke
_DEVICE_LABELS = {"cpu": "CPU", "cuda": "NVIDIA GPU (CUDA)", "mps": "Apple GPU (Metal)"}


def _device_label(device: str) -> str:
    if device.startswith("cuda:"):
        return f"NVIDIA GPU {device[5:]} (CUDA)"
    return _DEVICE_LABELS.get(device, device)


@contextmanager
def _signals_blocked(objects: Sequence[QObject]) -> Iterator[None]:
    """Fill widgets from code without their signals reading as user changes."""
    before = [obj.blockSignals(True) for obj in objects]
    try:
        yield
    finally:
        for obj, was in zip(objects, before, strict=True):
            obj.blockSignals(was)


def _hint(text: str, name: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    # A palette role rather than a fixed colour, so hints stay readable in light and dark.
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    # Expanding, or the form keeps a wrapped label at its narrow size hint; keep height-for-width,
    # or the row gets one line's height and the text is cut.
    policy = label.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Expanding)
    policy.setHeightForWidth(True)
    label.setSizePolicy(policy)
    if name:
        label.setObjectName(name)
    return label


def _left_aligned(widget: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(widget)
    row.addStretch(1)
    return row


def _combo(name: str, items: list[tuple[str, str]], tip: str) -> QComboBox:
    combo = QComboBox()
    combo.setObjectName(name)
    for text, data in items:
        combo.addItem(text, data)
    combo.setToolTip(tip)
    combo.setMinimumWidth(220)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    return combo


def _form() -> QFormLayout:
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
    form.setHorizontalSpacing(14)
    form.setVerticalSpacing(8)
    return form


class SettingsPage(QWidget):
    """All settings on one scrollable page; ``changed`` carries each new, validated ``Settings``."""

    changed = Signal(object)  # Settings
    reload_requested = Signal()

    def __init__(self, settings: Settings, models: list[ModelRef], devices: list[str] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsPage")
        self._settings = settings
        self._models: list[ModelRef] = list(models)
        self._devices = devices
        self._prompt_timer = QTimer(self)
        self._prompt_timer.setSingleShot(True)
        self._prompt_timer.setInterval(_PROMPT_DELAY_MS)
        self._prompt_timer.timeout.connect(self._commit_prompt)
        self._forms: list[QFormLayout] = []
        self._hints: list[QLabel] = []

        column = QWidget()
        column.setObjectName("settingsColumn")
        layout = QVBoxLayout(column)
        layout.setContentsMargins(20, 16, 20, 20)
        layout.setSpacing(14)
        title = QLabel("<h2 style='margin:0'>Settings</h2>")
        title.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(title)
        layout.addWidget(_hint("Changes apply as you make them."))
        self.error_label = QLabel()
        self.error_label.setObjectName("settingsError")
        self.error_label.setWordWrap(True)
        self.error_label.setForegroundRole(QPalette.ColorRole.BrightText)
        self.error_label.hide()
        layout.addWidget(self.error_label)
        layout.addWidget(self._storage_group())
        layout.addWidget(self._model_group())
        layout.addWidget(self._new_chats_group())
        layout.addWidget(self._appearance_group())
        layout.addStretch(1)
        self._column = layout

        scroll = QScrollArea()
        scroll.setObjectName("settingsScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(column)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self._connect()
        self.set_settings(settings)
        self._align_labels()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._align_labels()

    def _align_labels(self) -> None:
        """One label column width for all groups, so the fields line up down the page; redone on font change."""
        items = [form.itemAt(row, QFormLayout.ItemRole.LabelRole)
                 for form in self._forms for row in range(form.rowCount())]
        labels = [item.widget() for item in items if item is not None and isinstance(item.widget(), QLabel)]
        for label in labels:
            label.setMinimumWidth(0)
        width = max((label.sizeHint().width() for label in labels), default=0)
        for label in labels:
            label.setMinimumWidth(width)
        # About five lines of system prompt at any font size.
        self.system_prompt_edit.setFixedHeight(self.system_prompt_edit.fontMetrics().lineSpacing() * 5 + 12)
        for hint in self._hints:  # hints start where the fields start
            hint.setContentsMargins(width + self._forms[0].horizontalSpacing(), 0, 0, 0)

    # -- building -------------------------------------------------------------------------------------
    def _finish_group(self, box: QGroupBox, form: QFormLayout, hint: QLabel | None = None) -> None:
        # Hints sit below the form, not in it: QFormLayout sizes wrapped labels badly (cut or padded).
        layout = QVBoxLayout(box)
        layout.addLayout(form)
        if hint is not None:
            layout.addWidget(hint)
            self._hints.append(hint)
        self._forms.append(form)

    def _storage_group(self) -> QGroupBox:
        box = QGroupBox("Storage")
        form = _form()
        self.data_folder_edit = QLineEdit()
        self.data_folder_edit.setObjectName("dataFolderEdit")
        self.data_folder_edit.setReadOnly(True)
        self.data_folder_edit.setPlaceholderText(f"Default: {default_data_dir()}")
        self.data_folder_edit.setToolTip("Where chats, logs and imported-model records are kept.")
        self.change_folder_button = QPushButton("Change…")
        self.change_folder_button.setObjectName("changeDataFolderButton")
        self.default_folder_button = QPushButton("Use default")
        self.default_folder_button.setObjectName("defaultDataFolderButton")
        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(self.data_folder_edit, 1)
        row.addWidget(self.change_folder_button)
        row.addWidget(self.default_folder_button)
        form.addRow("Data folder:", row)
        hint = ("Takes effect after restarting the app; chats stay in the old folder unless you move chats.db.")
        override = os.environ.get(HOME_ENV)
        if override:
            hint += f" Right now {HOME_ENV} is set, so the app uses {override} whatever is chosen here."
        self._finish_group(box, form, _hint(hint, "dataFolderHint"))
        return box

    def _model_group(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = _form()
        self.default_model_combo = _combo("defaultModelCombo", [], "The model the app loads when it starts.")
        # Model names are long ("org/repo · file.Q4_K_M.gguf"): use the whole row.
        self.default_model_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        form.addRow("Default model:", self.default_model_combo)
        self.backend_combo = _combo("backendCombo", [
            ("Automatic", "auto"), ("llama.cpp", "llamacpp"), ("PyTorch", "torch")],
            "Which engine runs the model. Automatic: llama.cpp for GGUF files (fast, quantized), "
            "PyTorch for Hugging Face model folders.")
        form.addRow("Backend:", self.backend_combo)
        self.device_combo = _combo("deviceCombo", [], "Where PyTorch runs the model. Automatic picks a GPU "
                                   "when there is one. (llama.cpp uses GPU layers instead.)")
        form.addRow("Device:", self.device_combo)
        cpus = os.cpu_count() or 1
        self.threads_spin = int_spin("threadsSpin", 0, THREADS_MAX, "How many CPU threads generate text. "
                                  f"Automatic uses all {cpus} cores; fewer leaves room for other programs.",
                                  special="Automatic")
        form.addRow("CPU threads:", self.threads_spin)
        lo, hi = CONTEXT_RANGE
        self.context_size_spin = int_spin("contextSizeSpin", lo, hi, "How much text (prompt, chat history and "
                                       "reply) the model can see at once. Larger needs more memory.",
                                       step=256, suffix=" tokens")
        form.addRow("Context size:", self.context_size_spin)
        self.gpu_layers_spin = int_spin("gpuLayersSpin", -1, 999, "How many layers llama.cpp puts on the GPU. "
                                     "All: as many as the model has; 0: CPU only. Lower it if the GPU runs "
                                     "out of memory. No effect without a GPU.", special="All")
        form.addRow("GPU layers:", self.gpu_layers_spin)
        self.reload_button = QPushButton("Reload model with these settings")
        self.reload_button.setObjectName("reloadModelButton")
        self.reload_button.setToolTip("Unload the current model and load it again with the settings above.")
        form.addRow("", _left_aligned(self.reload_button))
        self._finish_group(box, form, _hint("These apply the next time a model loads (or now, with the button "
                                            "above).", "engineHint"))
        return box

    def _new_chats_group(self) -> QGroupBox:
        box = QGroupBox("New chats")
        form = _form()
        self.system_prompt_edit = QPlainTextEdit()
        self.system_prompt_edit.setObjectName("systemPromptEdit")
        self.system_prompt_edit.setPlaceholderText("For example: You are a helpful assistant. Answer briefly.")
        self.system_prompt_edit.setToolTip("Instructions the model gets at the start of every new chat.")
        self.system_prompt_edit.setTabChangesFocus(True)
        self.system_prompt_edit.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        form.addRow("System prompt:", self.system_prompt_edit)
        # The same fields, ranges and explanations as a chat's own settings (one definition).
        for key, (label, spin) in sampling_spins().items():
            setattr(self, f"{key}_spin", spin)
            form.addRow(f"{label}:", spin)
        self.reset_new_chat_button = QPushButton("Restore defaults")
        self.reset_new_chat_button.setObjectName("resetNewChatButton")
        self.reset_new_chat_button.setToolTip("Clear the system prompt and set the values above to the defaults.")
        form.addRow("", _left_aligned(self.reset_new_chat_button))
        self._finish_group(box, form, _hint("Used by chats you start from now on; open chats keep their own "
                                            "settings.", "newChatsHint"))
        return box

    def _appearance_group(self) -> QGroupBox:
        box = QGroupBox("Appearance")
        form = _form()
        self.theme_combo = _combo("themeCombo", [("System", "system"), ("Light", "light"), ("Dark", "dark")],
                                  "System follows your computer's light or dark mode.")
        form.addRow("Theme:", self.theme_combo)
        lo, hi = FONT_RANGE
        self.font_size_spin = int_spin("fontSizeSpin", lo, hi, "Text size across the app, in points.", suffix=" pt")
        form.addRow("Font size:", self.font_size_spin)
        self._finish_group(box, form)
        return box

    def _connect(self) -> None:
        self.change_folder_button.clicked.connect(self._choose_data_folder)
        self.default_folder_button.clicked.connect(lambda: self._commit(data_folder=None))
        self.default_model_combo.currentIndexChanged.connect(
            lambda _i: self._commit(default_model=self.default_model_combo.currentData() or None))
        self.backend_combo.currentIndexChanged.connect(
            lambda _i: self._commit(backend=self.backend_combo.currentData()))
        self.device_combo.currentIndexChanged.connect(lambda _i: self._commit(device=self.device_combo.currentData()))
        self.threads_spin.valueChanged.connect(lambda v: self._commit(threads=v or None))
        self.context_size_spin.valueChanged.connect(lambda v: self._commit(context_size=v))
        self.gpu_layers_spin.valueChanged.connect(lambda v: self._commit(gpu_layers=v))
        self.reload_button.clicked.connect(self._request_reload)
        self.system_prompt_edit.textChanged.connect(self._prompt_timer.start)
        for key, spin in self._sampling_spins().items():
            spin.valueChanged.connect(lambda _v, key=key, spin=spin: self._commit_sampling(key, spin_value(key, spin)))
        self.reset_new_chat_button.clicked.connect(self._reset_new_chat)
        self.theme_combo.currentIndexChanged.connect(lambda _i: self._commit(theme=self.theme_combo.currentData()))
        self.font_size_spin.valueChanged.connect(lambda v: self._commit(font_size=v))

    def _sampling_spins(self) -> dict[str, QAbstractSpinBox]:
        return {"temperature": self.temperature_spin, "top_p": self.top_p_spin, "top_k": self.top_k_spin,
                "min_p": self.min_p_spin, "repeat_penalty": self.repeat_penalty_spin,
                "max_tokens": self.max_tokens_spin, "seed": self.seed_spin}

    # -- public ---------------------------------------------------------------------------------------
    def settings(self) -> Settings:
        """The settings as shown (a system prompt still being typed included)."""
        if self._prompt_timer.isActive():
            self._commit_prompt()
        return self._settings

    def set_settings(self, settings: Settings) -> None:
        """Show ``settings`` without emitting ``changed`` (they came from the owner, not the user)."""
        self._prompt_timer.stop()
        self._settings = settings
        self.error_label.hide()
        with _signals_blocked(self.findChildren(QWidget)):
            self._show_settings(settings)

    def add_group(self, box: QGroupBox, changed: Signal | None = None) -> None:
        """A section built elsewhere (the Hub's); its ``changed`` dict of fields is committed like the others."""
        self._column.insertWidget(self._column.count() - 1, box)
        form = getattr(box, "form", None)
        if isinstance(form, QFormLayout):
            self._forms.append(form)
            self._align_labels()
        if changed is not None:
            changed.connect(lambda fields: self._commit(**fields))

    def set_models(self, models: list[ModelRef]) -> None:
        """Refill the default model list (it arrives from a background scan)."""
        self._models = list(models)
        with _signals_blocked([self.default_model_combo]):
            self._fill_models()

    # -- showing --------------------------------------------------------------------------------------
    def _show_settings(self, s: Settings) -> None:
        self._show_data_folder()
        self._fill_models()
        self._select(self.backend_combo, s.backend)
        self._fill_devices()
        self.threads_spin.setValue(s.threads or 0)
        self.context_size_spin.setValue(s.context_size)
        self.gpu_layers_spin.setValue(s.gpu_layers)
        if self.system_prompt_edit.toPlainText() != s.system_prompt:
            self.system_prompt_edit.setPlainText(s.system_prompt)
        values = self._sampling_values(s)
        for key, spin in self._sampling_spins().items():
            show_value(key, spin, values[key])
        self._select(self.theme_combo, s.theme)
        self.font_size_spin.setValue(s.font_size)
        self._update_enabled()

    def _show_data_folder(self) -> None:
        folder = self._settings.data_folder
        self.data_folder_edit.setText(folder or "")
        self.data_folder_edit.setToolTip(folder or f"Default: {default_data_dir()}")

    @staticmethod
    def _sampling_values(s: Settings) -> dict[str, Any]:
        defaults = SamplingParams()
        sampling = s.sampling if isinstance(s.sampling, dict) else {}
        return {key: sampling.get(key, getattr(defaults, key)) for key in SAMPLING_KEYS}

    @staticmethod
    def _select(combo: QComboBox, data: str, missing_text: str = "") -> None:
        """Select the entry for ``data``, adding one if absent so a saved value is never silently changed."""
        index = combo.findData(data)
        if index < 0:
            combo.addItem(missing_text or data, data)
            index = combo.count() - 1
        combo.setCurrentIndex(index)

    def _fill_models(self) -> None:
        combo = self.default_model_combo
        combo.clear()
        bundled = next((m for m in self._models if m.source == "bundled"), None)
        label = "Bundled model"
        if bundled is not None:
            label += f" ({bundled.name.removesuffix(' (bundled)')})"
        combo.addItem(label, _BUNDLED)
        model = combo.model()
        for ref in self._models:
            if ref.source == "bundled":
                continue
            combo.addItem(ref.name + (" (unreadable)" if ref.error else ""), ref.id)
            combo.setItemData(combo.count() - 1, ref.error or ref.path, Qt.ItemDataRole.ToolTipRole)
            if ref.error and isinstance(model, QStandardItemModel):
                model.item(combo.count() - 1).setEnabled(False)
        current = self._settings.default_model or _BUNDLED
        if current == BUNDLED_ID:
            current = _BUNDLED
        missing = combo.findData(current) < 0
        self._select(combo, current)
        if missing:  # kept, not dropped: the library scan may not have found it yet
            combo.setItemData(combo.currentIndex(), "This model is not in the library (yet).",
                              Qt.ItemDataRole.ToolTipRole)

    def _fill_devices(self) -> None:
        combo = self.device_combo
        combo.clear()
        combo.addItem("Automatic", "auto")
        offered = self._devices if self._devices is not None else [d for d in DEVICES if d != "auto"]
        for device in offered:
            # Only names Settings accepts (device reports also list llama.cpp's "gpu"/"metal").
            if device != "auto" and not Settings(device=device).problems() and combo.findData(device) < 0:
                combo.addItem(_device_label(device), device)
        self._select(combo, self._settings.device, _device_label(self._settings.device))

    def _update_enabled(self) -> None:
        backend = self._settings.backend
        self.device_combo.setEnabled(backend != "llamacpp")
        self.gpu_layers_spin.setEnabled(backend != "torch")

    # -- user changes ---------------------------------------------------------------------------------
    def _commit(self, **changes: Any) -> None:
        new = replace(self._settings, **changes)
        if new == self._settings:
            return
        try:
            new.validate()
        except InvalidRequest as exc:
            # The widgets' ranges make this rare; show why and put the last good values back.
            self.set_settings(self._settings)
            self.error_label.setText(str(exc))
            self.error_label.show()
            return
        self.error_label.hide()
        self._settings = new
        self._update_enabled()
        if "data_folder" in changes:  # the only field the user does not edit in place
            self._show_data_folder()
        self.changed.emit(new)

    def _commit_sampling(self, key: str, value: Any) -> None:
        if isinstance(value, float):
            value = round(value, 2)  # the spin's precision, so 0.8 stays 0.8 and equals the default
        sampling = dict(self._settings.sampling)
        if value == getattr(SamplingParams(), key):
            sampling.pop(key, None)  # store only overrides, so improved defaults reach the user
        else:
            sampling[key] = value
        self._commit(sampling=sampling)

    def _commit_prompt(self) -> None:
        self._prompt_timer.stop()
        self._commit(system_prompt=self.system_prompt_edit.toPlainText())

    def _reset_new_chat(self) -> None:
        new = replace(self._settings, system_prompt="", sampling={})
        is_change = new != self._settings
        self.set_settings(new)  # one update of every field, without a `changed` per field
        if is_change:
            self.changed.emit(new)

    def _request_reload(self) -> None:
        if self._prompt_timer.isActive():
            self._commit_prompt()
        self.reload_requested.emit()

    def _choose_data_folder(self) -> None:
        start = self._settings.data_folder or str(default_data_dir())
        dialog = QFileDialog(self, "Choose the data folder", start)
        dialog.setObjectName("dataFolderDialog")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self._on_folder_chosen)
        dialog.open()  # not exec(): no nested event loop, and tests can drive it

    def _on_folder_chosen(self, folder: str) -> None:
        if not folder:
            return
        chosen = os.path.abspath(folder)
        self._commit(data_folder=None if chosen == str(default_data_dir()) else chosen)
