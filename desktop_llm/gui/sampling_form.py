"""The sampling parameters a chat uses: one definition for a chat's own settings and Settings' defaults."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from desktop_llm.core.settings import CONTEXT_RANGE
from desktop_llm.gui.spin_boxes import float_spin, int_spin


def sampling_spins() -> dict[str, tuple[str, QSpinBox | QDoubleSpinBox]]:
    """Fresh spin boxes for each SamplingParams field a user sets per chat: name -> (label, spin box)."""
    return {
        "temperature": ("Temperature", float_spin(
            "temperatureSpin", 0.0, 5.0, 0.05, "How adventurous the wording is. 0: always the most likely "
            "word; around 0.7: natural; above 1: wild.")),
        "top_p": ("Top-p", float_spin(
            "topPSpin", 0.01, 1.0, 0.05, "Top-p: pick only from the most likely words that together make up "
            "this share of the probability. 1: no limit.")),
        "top_k": ("Top-k", int_spin(
            "topKSpin", 0, 1000, "Top-k: pick only from this many most likely words. Off: no limit.",
            special="Off")),
        "min_p": ("Min-p", float_spin(
            "minPSpin", 0.0, 1.0, 0.01, "Min-p: drop words less likely than this share of the most likely "
            "one. Off: keep all.", special="Off")),
        "repeat_penalty": ("Repeat penalty", float_spin(
            "repeatPenaltySpin", 0.5, 3.0, 0.05, "Makes recently used words less likely, against loops. "
            "1: off; 1.1: mild.")),
        "max_tokens": ("Max reply length", int_spin(
            "maxTokensSpin", 1, CONTEXT_RANGE[1], "The longest reply, in tokens (a token is about three "
            "quarters of a word).", step=128, suffix=" tokens")),
        "seed": ("Seed", int_spin(
            "seedSpin", -1, 2**31 - 1, "Random: a different reply each time. A number: the same settings and "
            "prompt give the same reply again.", special="Random")),
    }


def spin_value(name: str, spin: QAbstractSpinBox) -> Any:
    value = spin.value()  # type: ignore[attr-defined]
    return None if name == "seed" and value < 0 else value


def show_value(name: str, spin: QAbstractSpinBox, value: Any) -> None:
    spin.setValue(-1 if name == "seed" and value is None else value)  # type: ignore[attr-defined]


class SamplingForm(QWidget):
    """The per-chat sampling fields as a form; ``changed`` carries all of them after every edit."""

    changed = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.spins: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name, (label, spin) in sampling_spins().items():
            spin.setMinimumWidth(110)  # a side panel, narrower than the Settings page
            spin.valueChanged.connect(self._emit)
            self.spins[name] = spin
            layout.addRow(label, spin)
        self._quiet = False

    def values(self) -> dict[str, Any]:
        return {name: spin_value(name, spin) for name, spin in self.spins.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        """Show ``values`` (SamplingParams fields; others are ignored) without emitting ``changed``."""
        self._quiet = True
        try:
            for name, spin in self.spins.items():
                if name in values:
                    show_value(name, spin, values[name])
        finally:
            self._quiet = False

    def _emit(self, *_args: Any) -> None:
        if not self._quiet:
            self.changed.emit(self.values())
