"""The sampling parameters a chat uses, as a form: shared by a chat's settings and the Settings page."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

# name: (label, minimum, maximum, step, decimals (0 = whole numbers), tooltip)
CHAT_PARAMS: dict[str, tuple[str, float, float, float, int, str]] = {
    "temperature": ("Temperature", 0.0, 2.0, 0.05, 2,
                    "How adventurous the word choice is. 0 always takes the most likely next token; "
                    "higher values pick less likely tokens more often."),
    "top_p": ("Top P", 0.01, 1.0, 0.01, 2,
              "Only sample from the most likely tokens whose probabilities add up to this share."),
    "top_k": ("Top K", 0, 1000, 1, 0, "Only sample from this many most likely tokens (0: no limit)."),
    "min_p": ("Min P", 0.0, 1.0, 0.01, 2,
              "Drop tokens less likely than this fraction of the most likely token's probability."),
    "repeat_penalty": ("Repeat penalty", 0.5, 2.0, 0.01, 2,
                       "Makes tokens already used in the reply less likely (1: off)."),
    "max_tokens": ("Max tokens", 1, 32768, 16, 0, "The longest reply, in tokens."),
}


class SamplingForm(QWidget):
    """Temperature, top P/K, min P, repeat penalty, max tokens and seed; ``changed`` on every edit."""

    changed = Signal(dict)  # the form's values

    def __init__(self, values: dict[str, Any] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.spins: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name, (label, low, high, step, decimals, tip) in CHAT_PARAMS.items():
            spin: QSpinBox | QDoubleSpinBox
            if decimals:
                spin = QDoubleSpinBox()
                spin.setDecimals(decimals)
            else:
                spin = QSpinBox()
            spin.setRange(low, high)
            spin.setSingleStep(step)
            spin.setToolTip(tip)
            spin.setObjectName(f"{name}Spin")
            spin.setKeyboardTracking(False)  # one change per finished edit, not per keystroke
            spin.valueChanged.connect(self._emit)
            self.spins[name] = spin
            layout.addRow(label, spin)
        self.seed = QSpinBox()
        self.seed.setObjectName("seedSpin")
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("Random")
        self.seed.setToolTip("The same seed with the same settings gives the same reply. Random: a new one each time.")
        self.seed.setKeyboardTracking(False)
        self.seed.valueChanged.connect(self._emit)
        layout.addRow("Seed", self.seed)
        self._quiet = False
        if values:
            self.set_values(values)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: spin.value() for name, spin in self.spins.items()}
        out["seed"] = None if self.seed.value() < 0 else self.seed.value()
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Show ``values`` (SamplingParams fields; others are ignored) without emitting ``changed``."""
        self._quiet = True
        try:
            for name, spin in self.spins.items():
                if name in values and values[name] is not None:
                    spin.setValue(values[name])
            if "seed" in values:
                self.seed.setValue(-1 if values["seed"] is None else int(values["seed"]))
        finally:
            self._quiet = False

    def _emit(self, *_args: Any) -> None:
        if not self._quiet:
            self.changed.emit(self.values())
