"""Per-model defaults: context size, GPU layers, backend and sampling preset, each "as in Settings" unless set."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.model_library import ModelDefaults, load_model_defaults, save_model_defaults
from desktop_llm.core.models import ModelRef
from desktop_llm.core.presets import BUILTIN_PRESETS
from desktop_llm.core.settings import CONTEXT_RANGE
from desktop_llm.gui.background import Background

_BACKENDS = (("As in Settings", None), ("Automatic", "auto"), ("llama.cpp", "llamacpp"), ("PyTorch", "torch"))


def _optional(widget: QWidget, label: str) -> tuple[QCheckBox, QHBoxLayout]:
    """A value with a check box in front: unchecked means "use the app's setting"."""
    box = QCheckBox(label)
    row = QHBoxLayout()
    row.addWidget(box)
    row.addWidget(widget, 1)
    box.toggled.connect(widget.setEnabled)
    widget.setEnabled(False)
    return box, row


class ModelDefaultsDialog(QDialog):
    saved = Signal(str)  # model id

    def __init__(self, ref: ModelRef, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelDefaultsDialog")
        self.setWindowTitle(f"Defaults for {ref.name}")
        self.ref = ref
        self.background = background

        self.context = QSpinBox()
        self.context.setObjectName("defaultContext")
        self.context.setRange(*CONTEXT_RANGE)
        self.context.setSingleStep(1024)
        self.context.setSuffix(" tokens")
        self.context.setValue(min(ref.context_length or 4096, 8192))
        self.context_box, context_row = _optional(self.context, "Context size")
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setObjectName("defaultGpuLayers")
        self.gpu_layers.setRange(-1, 999)
        self.gpu_layers.setSpecialValueText("all that fit")
        self.gpu_layers.setValue(-1)
        self.gpu_box, gpu_row = _optional(self.gpu_layers, "GPU layers")
        self.backend = QComboBox()
        self.backend.setObjectName("defaultBackend")
        for text, data in _BACKENDS:
            self.backend.addItem(text, data)
        self.preset = QComboBox()
        self.preset.setObjectName("defaultPreset")
        self.preset.addItem("As in Settings", None)
        for p in BUILTIN_PRESETS:
            self.preset.addItem(f"{p.name}: {p.description}", p.name)

        form = QFormLayout()
        form.addRow(context_row)
        form.addRow(gpu_row)
        form.addRow("Backend", self.backend)
        form.addRow("Sampling preset", self.preset)
        note = QLabel("Unchecked values follow Settings. Context, GPU layers and backend apply at the next load; "
                      "the preset applies to new chats with this model.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._save)
        buttons.rejected.connect(self.reject)
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)
        background.run(lambda: load_model_defaults(ref.id), self._show, lambda _exc: None)

    def _show(self, d: ModelDefaults) -> None:
        if d.context_size is not None:
            self.context_box.setChecked(True)
            self.context.setValue(d.context_size)
        if d.gpu_layers is not None:
            self.gpu_box.setChecked(True)
            self.gpu_layers.setValue(d.gpu_layers)
        self.backend.setCurrentIndex(max(0, self.backend.findData(d.backend)))
        self.preset.setCurrentIndex(max(0, self.preset.findData(d.sampling_preset)))

    def defaults(self) -> ModelDefaults:
        return ModelDefaults(
            context_size=self.context.value() if self.context_box.isChecked() else None,
            gpu_layers=self.gpu_layers.value() if self.gpu_box.isChecked() else None,
            backend=self.backend.currentData(), sampling_preset=self.preset.currentData())

    def _save(self) -> None:
        defaults = self.defaults()
        self.background.run(lambda: save_model_defaults(self.ref.id, defaults), lambda _r: self._done(),
                            lambda exc: self.problem.setText(f"Could not save: {exc}"))

    def _done(self) -> None:
        self.saved.emit(self.ref.id)
        self.accept()
