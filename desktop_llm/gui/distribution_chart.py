"""A horizontal bar chart of a next-token distribution (up to 20 tokens), drawn with QPainter.

Step mode shows two of them side by side: the model's own distribution and what is left after the
sampling settings. One row per token: the token made visible (spaces and newlines would vanish
otherwise), a bar as long as its probability, and the percentage. The drawn token is marked,
tokens the settings removed are greyed and struck through, and a click on a row picks that token.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QEvent, QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QMouseEvent, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

MAX_ROWS = 20
# The drawn token's bar: an orange that reads on both the light and the dark palette (as the
# loss chart's validation line) and differs from the palette's blue highlight used for the rest.
DRAWN_COLOUR = QColor("#e65100")
_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}
_PAD = 6


def visible_token(text: str) -> str:
    """The token's text with whitespace made visible: '␣' space, '⏎' newline, '⇥' tab, '∅' empty."""
    if not text:
        return "∅"
    return "".join(_VISIBLE.get(ch, ch) for ch in text)


def format_percent(prob: float) -> str:
    """A probability as a short percentage ("62.1%", "<0.1%")."""
    if prob <= 0:
        return "0%"
    if prob < 0.0005:
        return "<0.1%"
    return f"{prob * 100:.1f}%"


class DistributionChart(QWidget):
    """``set_rows(rows, highlight)`` with ``{token_id, text, prob[, logprob]}`` most likely first.

    ``set_removed(ids)`` greys the tokens the sampling settings removed; ``token_picked(id, text)``
    fires when the user clicks a row.
    """

    token_picked = Signal(int, str)

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.rows: list[dict[str, Any]] = []
        self.highlight: int | None = None
        self.removed: set[int] = set()
        self.placeholder = "Press “Next token” to see the distribution."
        self._hover: int | None = None
        self._pressed: int | None = None
        self.setAccessibleName(title)
        self.setMouseTracking(True)  # the hovered row is shaded, a cue that rows can be clicked
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMinimumSize(self.minimumSizeHint())

    # -- data ---------------------------------------------------------------------------------------
    def set_rows(self, rows: list[dict[str, Any]], highlight: int | None = None) -> None:
        """Show ``rows`` (the first ``MAX_ROWS``); ``highlight`` is the token id to mark (the drawn one)."""
        self.rows = list(rows[:MAX_ROWS])
        self.highlight = highlight
        self._hover = None
        self.update()

    def set_removed(self, ids: set[int]) -> None:
        """Token ids the sampling settings removed: greyed and struck through."""
        self.removed = set(ids)
        self.update()

    def clear(self) -> None:
        self.rows, self.highlight, self.removed, self._hover = [], None, set(), None
        self.update()

    # -- geometry -----------------------------------------------------------------------------------
    def _row_height(self) -> int:
        return max(self.fontMetrics().height() + 4, 18)

    def _title_height(self) -> int:
        return self.fontMetrics().height() + 10

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        fm = self.fontMetrics()
        return QSize(fm.horizontalAdvance("M") * 22, self._title_height() + MAX_ROWS * self._row_height() + 4)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(max(360, self.minimumSizeHint().width()), self.minimumSizeHint().height())

    def row_at(self, y: float) -> int | None:
        """Index of the row drawn at height ``y`` (widget coordinates), or None."""
        top = self._title_height()
        if y < top:
            return None
        index = int((y - top) // self._row_height())
        return index if 0 <= index < len(self.rows) else None

    def row_rect(self, index: int) -> QRect:
        """Where row ``index`` is drawn (for clicks in tests and tooltips)."""
        h = self._row_height()
        return QRect(0, self._title_height() + index * h, self.width(), h)

    def _columns(self) -> tuple[int, int, int]:
        """Widths of the token label and percentage columns, and the bar area's width."""
        fm = self.fontMetrics()
        widest = max((fm.horizontalAdvance(visible_token(r.get("text", ""))) for r in self.rows), default=40)
        label_w = int(min(max(widest + 2 * _PAD, 60), self.width() * 0.42))
        pct_w = fm.horizontalAdvance("100.0%") + 2 * _PAD
        return label_w, pct_w, max(10, self.width() - label_w - pct_w)

    # -- drawing ------------------------------------------------------------------------------------
    def paintEvent(self, _event: QEvent) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        faint = pal.color(QPalette.ColorRole.PlaceholderText)
        accent = pal.color(QPalette.ColorRole.Highlight)
        fm = p.fontMetrics()

        title_font = QFont(self.font())
        title_font.setBold(True)
        p.setFont(title_font)
        p.setPen(text)
        p.drawText(QRectF(_PAD, 0, self.width() - 2 * _PAD, self._title_height()),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self.title)
        p.setFont(self.font())
        if not self.rows:
            p.setPen(faint)
            p.drawText(QRectF(_PAD, self._title_height(), self.width() - 2 * _PAD, self._row_height() * 3),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                       self.placeholder)
            p.end()
            return

        label_w, pct_w, bar_w = self._columns()
        track = QColor(faint)
        track.setAlpha(35)
        for i, row in enumerate(self.rows):
            rect = self.row_rect(i)
            token_id = int(row.get("token_id", -1))
            drawn = token_id == self.highlight
            removed = token_id in self.removed
            if drawn or i == self._hover:
                shade = QColor(DRAWN_COLOUR if drawn else accent)
                shade.setAlpha(45 if drawn else 25)
                p.fillRect(rect, shade)
            font = QFont(self.font())
            font.setBold(drawn)
            font.setStrikeOut(removed)
            p.setFont(font)
            p.setPen(faint if removed else text)
            label = fm.elidedText(visible_token(str(row.get("text", ""))), Qt.TextElideMode.ElideRight,
                                  label_w - 2 * _PAD)
            p.drawText(QRect(rect.left() + _PAD, rect.top(), label_w - 2 * _PAD, rect.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)

            bar = QRectF(label_w, rect.top() + 3, bar_w, rect.height() - 6)
            p.fillRect(bar, track)
            prob = float(row.get("prob", 0.0))
            if math.isfinite(prob) and prob > 0:
                colour = QColor(faint if removed else DRAWN_COLOUR if drawn else accent)
                if removed:
                    colour.setAlpha(110)
                # At least a sliver, so a tiny probability is still a visible bar.
                p.fillRect(QRectF(bar.left(), bar.top(), max(2.0, bar.width() * min(prob, 1.0)), bar.height()),
                           colour)
            p.setPen(faint if removed else text)
            p.drawText(QRect(label_w + bar_w, rect.top(), pct_w - _PAD, rect.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, format_percent(prob))
        p.end()

    # -- interaction --------------------------------------------------------------------------------
    def tooltip_for(self, index: int) -> str:
        row = self.rows[index]
        token_id = int(row.get("token_id", -1))
        lines = [f"“{visible_token(str(row.get('text', '')))}”  (token id {token_id})",
                 f"probability {format_percent(float(row.get('prob', 0.0)))}"]
        if row.get("logprob") is not None:
            lines.append(f"logprob {float(row['logprob']):.3f}")
        if token_id == self.highlight:
            lines.append("the token the draw picked")
        if token_id in self.removed:
            lines.append("removed by the sampling settings")
        lines.append("Click to choose this token instead.")
        return "\n".join(lines)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            index = self.row_at(event.pos().y())  # type: ignore[attr-defined]
            if index is None:
                QToolTip.hideText()
                event.ignore()
            else:
                QToolTip.showText(event.globalPos(), self.tooltip_for(index), self,  # type: ignore[attr-defined]
                                  self.row_rect(index))
            return True
        return super().event(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        index = self.row_at(event.position().y())
        if index != self._hover:
            self._hover = index
            self.setCursor(Qt.CursorShape.PointingHandCursor if index is not None else Qt.CursorShape.ArrowCursor)
            self.update()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        if self._hover is not None:
            self._hover = None
            self.update()
        super().leaveEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        if event.button() == Qt.MouseButton.LeftButton:
            self._pressed = self.row_at(event.position().y())
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        # A click is a press and a release on the same row (dragging off a row cancels it, as with buttons).
        if event.button() == Qt.MouseButton.LeftButton and self._pressed is not None:
            index = self.row_at(event.position().y())
            if index == self._pressed:
                row = self.rows[index]
                self.token_picked.emit(int(row.get("token_id", -1)), str(row.get("text", "")))
        self._pressed = None
        super().mouseReleaseEvent(event)

    def row_center(self, index: int) -> QPoint:
        """The middle of row ``index``'s bar area: where a test clicks."""
        return self.row_rect(index).center()
