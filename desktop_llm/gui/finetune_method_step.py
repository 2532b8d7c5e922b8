"""The wizard's Method step: a preset (Quick test, Balanced, Thorough), the method, and every setting."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.finetune.config import DEFAULT_PRESET, FULL_MAX_PARAMETERS, PRESETS, TrainConfig
from desktop_llm.gui.spin_boxes import float_spin, int_spin

_METHODS = (("lora", "LoRA (a small adapter; the base model stays as it is)"),
            ("full", "Full fine-tune (every weight; small models only)"),
            ("qlora", "QLoRA (LoRA on a 4-bit base; needs an NVIDIA GPU and bitsandbytes)"))


class MethodStep(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.presets = QButtonGroup(self)
        presets_box = QGroupBox("Preset")
        presets_layout = QVBoxLayout(presets_box)
        for name, preset in PRESETS.items():
            button = QRadioButton(f"{name}: {preset.description}")
            button.setObjectName(f"preset_{name.replace(' ', '_')}")
            button.setProperty("preset", name)
            self.presets.addButton(button)
            presets_layout.addWidget(button)
            button.setChecked(name == DEFAULT_PRESET)
        self.presets.buttonClicked.connect(lambda b: self.apply_preset(b.property("preset")))

        self.method = QComboBox()
        self.method.setObjectName("method")
        for key, title in _METHODS:
            self.method.addItem(title, key)
        self.method_note = QLabel("")
        self.method_note.setWordWrap(True)
        self.method_note.setObjectName("methodNote")

        d = TrainConfig(base_model="", dataset="")
        self.widgets: dict[str, Any] = {
            "lora_r": int_spin("lora_r", 1, 1024, "Rank of the adapter: more is more capacity, slower and larger"),
            "lora_alpha": float_spin("lora_alpha", 1, 4096, 8, "Scale of the adapter's update (often r or 2 × r)"),
            "lora_dropout": float_spin("lora_dropout", 0, 0.9, 0.05, "Dropout on the adapter's input"),
            "target": QLineEdit(d.target),
            "learning_rate": _sci_spin("learning_rate", d.learning_rate),
            "epochs": int_spin("epochs", 1, 100, "Passes over the training records"),
            "max_steps": int_spin("max_steps", 0, 10_000_000, "Stop after this many optimizer steps",
                                  special="No limit"),
            "micro_batch": int_spin("micro_batch", 0, 1024, "Records per forward pass", special="Automatic"),
            "grad_accum": int_spin("grad_accum", 0, 1024, "Micro-batches per optimizer step",
                                   special="Automatic (about 8 records a step)"),
            "warmup_ratio": float_spin("warmup_ratio", 0, 0.5, 0.05, "Share of the steps the learning rate "
                                       "rises over"),
            "lr_schedule": _combo("lr_schedule", ("cosine", "linear", "constant")),
            "weight_decay": float_spin("weight_decay", 0, 1, 0.01, "AdamW weight decay"),
            "train_on": _combo("train_on", ("assistant", "all")),
            "eval_every": int_spin("eval_every", 0, 1_000_000, "Validation loss every N steps", special="At the end"),
            "sample_every": int_spin("sample_every", 0, 1_000_000, "Sample replies every N steps", special="Never"),
            "checkpoint_every": int_spin("checkpoint_every", 0, 1_000_000, "Checkpoint every N steps",
                                         special="Only when cancelled"),
            "gradient_checkpointing": QCheckBox("Gradient checkpointing (less memory, about 30 % slower)"),
            "seed": int_spin("seed", 0, 2**31 - 1, "Seed of the data order and the adapter's start"),
            "device": _combo("device", ("auto", "cpu", "cuda", "mps")),
        }
        self.widgets["target"].setObjectName("target")
        self.widgets["lora_dropout"].setDecimals(2)
        self.sample_prompts = QPlainTextEdit()
        self.sample_prompts.setObjectName("sample_prompts")
        self.sample_prompts.setPlaceholderText("One prompt a line (empty: the first questions of 3 validation records)")
        self.sample_prompts.setMaximumHeight(70)
        advanced = QGroupBox("Settings")
        form = QFormLayout(advanced)
        titles = {"lora_r": "LoRA rank (r)", "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout",
                  "target": "Layers adapted", "learning_rate": "Learning rate", "epochs": "Epochs",
                  "max_steps": "Maximum steps", "micro_batch": "Micro-batch", "grad_accum": "Gradient accumulation",
                  "warmup_ratio": "Warm-up share", "lr_schedule": "Schedule", "weight_decay": "Weight decay",
                  "train_on": "Loss on", "eval_every": "Evaluate every", "sample_every": "Samples every",
                  "checkpoint_every": "Checkpoint every", "gradient_checkpointing": "", "seed": "Seed",
                  "device": "Device"}
        for key, widget in self.widgets.items():
            form.addRow(titles[key], widget)
            signal = getattr(widget, "valueChanged", None) or getattr(widget, "currentIndexChanged", None) or \
                getattr(widget, "toggled", None) or widget.textChanged
            signal.connect(self.changed)
        form.addRow("Sample prompts", self.sample_prompts)
        self.method.currentIndexChanged.connect(self._method_changed)

        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(presets_box)
        method_form = QFormLayout()
        method_form.addRow("Method", self.method)
        layout.addLayout(method_form)
        layout.addWidget(self.method_note)
        layout.addWidget(advanced)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.parameters: int | None = None
        self.cuda = False
        self._problem: str | None = None
        self.apply_preset(DEFAULT_PRESET)

    def apply_preset(self, name: str) -> None:
        config = PRESETS[name].apply(TrainConfig(base_model="", dataset=""))
        self._set_values(config)
        for button in self.presets.buttons():
            button.setChecked(button.property("preset") == name)
        self.changed.emit()

    def _set_values(self, config: TrainConfig) -> None:
        for key, widget in self.widgets.items():
            value = getattr(config, key)
            widget.blockSignals(True)
            if isinstance(widget, QComboBox):
                widget.setCurrentIndex(max(0, widget.findData(value)))
            elif isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, QLineEdit):
                widget.setText(str(value))
            else:
                widget.setValue(value)
            widget.blockSignals(False)
        self.preset_values = dict(PRESETS[self.preset_name()].values) if self.preset_name() else {}

    def preset_name(self) -> str:
        checked = self.presets.checkedButton()
        return str(checked.property("preset")) if checked is not None else DEFAULT_PRESET

    def set_model(self, parameters: int | None, cuda: bool = False) -> None:
        """What the base model and machine allow: full fine-tuning below 1 B weights, QLoRA with CUDA."""
        self.parameters, self.cuda = parameters, cuda
        self._method_changed()

    def _method_changed(self) -> None:
        method = self.method.currentData()
        note = ""
        if method == "full" and self.parameters and self.parameters > FULL_MAX_PARAMETERS:
            note = (f"This model has {self.parameters / 1e9:.1f} billion weights: a full fine-tune needs about "
                    "16 bytes a weight. Use LoRA.")
        elif method == "qlora" and not self.cuda:
            note = "QLoRA needs an NVIDIA GPU (CUDA) and the bitsandbytes package, which this machine does not have."
        elif method == "full":
            note = "Every weight trains: the result is a whole model, not an adapter."
        self._problem = note if "needs" in note else None
        self.method_note.setText(f"<span style='color:#c62828'>{note}</span>" if self._problem else note)
        for key in ("lora_r", "lora_alpha", "lora_dropout", "target"):
            self.widgets[key].setEnabled(method != "full")
        self.changed.emit()

    def problem(self) -> str | None:
        """Why the chosen method cannot run here, or None."""
        return self._problem

    def settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {"method": self.method.currentData()}
        for key, widget in self.widgets.items():
            if isinstance(widget, QComboBox):
                values[key] = widget.currentData()
            elif isinstance(widget, QCheckBox):
                values[key] = widget.isChecked()
            elif isinstance(widget, QLineEdit):
                values[key] = widget.text().strip() or "all-linear"
            elif isinstance(widget, QSpinBox):
                values[key] = int(widget.value())
            else:
                values[key] = float(widget.value())
        values["sample_prompts"] = [ln.strip() for ln in self.sample_prompts.toPlainText().splitlines() if ln.strip()]
        # The preset's own settings that this form does not show (max_length is the Data step's).
        values.update({k: v for k, v in self.preset_values.items() if k == "sample_max_tokens"})
        return values


def _combo(name: str, choices: tuple[str, ...]) -> QComboBox:
    combo = QComboBox()
    combo.setObjectName(name)
    for choice in choices:
        combo.addItem(choice, choice)
    return combo


def _sci_spin(name: str, value: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setObjectName(name)
    spin.setDecimals(6)
    spin.setRange(1e-6, 1.0)
    spin.setSingleStep(1e-5)
    spin.setValue(value)
    spin.setKeyboardTracking(False)
    return spin
