"""A live line chart of training and validation loss against the step, drawn with QPainter.

(QtCharts ships in PySide6-Addons, a large extra dependency; two lines and their axes do not need it.)
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

TRAIN_COLOUR = QColor("#1e88e5")
VALIDATION_COLOUR = QColor("#e65100")
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 52, 16, 26, 30


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round axis values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


class LossChart(QWidget):
    """``add_train(step, loss)`` and ``add_validation(step, loss)`` as events come; ``clear()`` for a new run."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossChart")
        self.train: list[tuple[int, float]] = []
        self.validation: list[tuple[int, float]] = []
        self.total_steps: int | None = None
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(480, 240)

    def clear(self, total_steps: int | None = None) -> None:
        self.train, self.validation, self.total_steps = [], [], total_steps
        self.update()

    def add_train(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.train.append((step, loss))
            self.update()

    def add_validation(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.validation.append((step, loss))
            self.update()

    # -- drawing ------------------------------------------------------------------------------
    def _ranges(self) -> tuple[float, float, float, float]:
        points = self.train + self.validation
        steps = [s for s, _ in points]
        losses = [v for _, v in points]
        x_hi = float(max(self.total_steps or 0, max(steps, default=1)))
        y_lo, y_hi = min(losses, default=0.0), max(losses, default=1.0)
        pad = (y_hi - y_lo) * 0.08 or 0.5
        return 0.0, x_hi, max(0.0, y_lo - pad), y_hi + pad

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        grid = pal.color(QPalette.ColorRole.Mid)
        plot = QRectF(_MARGIN_LEFT, _MARGIN_TOP, self.width() - _MARGIN_LEFT - _MARGIN_RIGHT,
                      self.height() - _MARGIN_TOP - _MARGIN_BOTTOM)
        x_lo, x_hi, y_lo, y_hi = self._ranges()
        yticks = [t for t in nice_ticks(y_lo, y_hi) if y_lo <= t <= y_hi] or [y_lo, y_hi]

        def to_point(step: float, loss: float) -> QPointF:
            x = plot.left() + (step - x_lo) / (x_hi - x_lo or 1) * plot.width()
            y = plot.bottom() - (loss - y_lo) / (y_hi - y_lo or 1) * plot.height()
            return QPointF(x, y)

        fm = p.fontMetrics()
        p.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
        for t in yticks:
            y = to_point(x_lo, t).y()
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(text)
            label = f"{t:.2f}" if y_hi - y_lo < 5 else f"{t:.1f}"
            p.drawText(QRectF(0, y - fm.height() / 2, _MARGIN_LEFT - 6, fm.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
            p.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
        for t in nice_ticks(x_lo, x_hi, 6):
            if t > x_hi:
                continue
            x = to_point(t, y_lo).x()
            p.setPen(text)
            p.drawText(QRectF(x - 30, plot.bottom() + 4, 60, fm.height()), Qt.AlignmentFlag.AlignHCenter,
                       f"{int(t)}")
        p.setPen(QPen(text, 1))
        p.drawLine(plot.bottomLeft(), plot.bottomRight())
        p.drawLine(plot.bottomLeft(), plot.topLeft())
        p.drawText(QRectF(plot.left(), plot.bottom() + 4 + fm.height(), plot.width(), fm.height()),
                   Qt.AlignmentFlag.AlignHCenter, "step")

        for series, colour, width in ((self.train, TRAIN_COLOUR, 1.6), (self.validation, VALIDATION_COLOUR, 2.2)):
            if not series:
                continue
            path = QPainterPath(to_point(*series[0]))
            for step, loss in series[1:]:
                path.lineTo(to_point(step, loss))
            p.setPen(QPen(colour, width))
            p.drawPath(path)
            if len(series) < 40:  # few points: mark them so a single validation value is visible
                p.setBrush(colour)
                for step, loss in series:
                    p.drawEllipse(to_point(step, loss), 2.5, 2.5)
                p.setBrush(Qt.BrushStyle.NoBrush)

        # Legend, top right.
        x = plot.right() - 10
        for name, colour, series in (("validation loss", VALIDATION_COLOUR, self.validation),
                                     ("training loss", TRAIN_COLOUR, self.train)):
            last = f" {series[-1][1]:.3f}" if series else ""
            label = f"{name}{last}"
            w = fm.horizontalAdvance(label)
            x -= w
            p.setPen(text)
            p.drawText(QPointF(x, _MARGIN_TOP - 8), label)
            p.setPen(QPen(colour, 3))
            p.drawLine(QPointF(x - 18, _MARGIN_TOP - 12), QPointF(x - 4, _MARGIN_TOP - 12))
            x -= 34
        if not self.train and not self.validation:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The loss appears here as training runs.")
        p.end()
