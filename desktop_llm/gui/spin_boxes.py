"""Spin boxes used across the window: a typed special value ("Automatic", "Random", "All", "Off"),
and one change per finished edit rather than per typed digit."""

from __future__ import annotations

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox


class SpecialSpinBox(QSpinBox):
    """A spin box whose special value ("Automatic", "Random", "All", "Off") can also be typed."""

    def _is_special(self, text: str) -> bool:
        special = self.specialValueText().lower()
        typed = text.removesuffix(self.suffix()).strip().lower()
        # Any start of the word will do: no number starts with a letter.
        return bool(special and typed) and special.startswith(typed)

    def validate(self, text: str, pos: int) -> object:
        if self._is_special(text):
            return QValidator.State.Acceptable, text, pos
        return super().validate(text, pos)

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt's name
        return self.minimum() if self._is_special(text) else super().valueFromText(text)


def int_spin(name: str, lo: int, hi: int, tip: str, step: int = 1, suffix: str = "", special: str = "") -> QSpinBox:
    spin = SpecialSpinBox()
    spin.setObjectName(name)
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setSuffix(suffix)
    spin.setSpecialValueText(special)  # shown at the minimum: "Automatic", "All", "Random", "Off"
    spin.setToolTip(tip)
    # valueChanged only when editing finishes or an arrow is used, not for every typed digit.
    spin.setKeyboardTracking(False)
    spin.setAccelerated(True)
    spin.setMinimumWidth(150)
    return spin


def float_spin(name: str, lo: float, hi: float, step: float, tip: str, special: str = "") -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setObjectName(name)
    spin.setDecimals(2)
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setSpecialValueText(special)
    spin.setToolTip(tip)
    spin.setKeyboardTracking(False)
    spin.setMinimumWidth(150)
    return spin
