"""Generated text as tokens coloured by how likely the model thought each was.

Hovering a token shows its top alternatives with their probabilities; clicking it selects it so
the alternatives list beside the text can continue from there with another token.
"""

from __future__ import annotations

import html
import math

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QColor, QCursor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QTextBrowser, QToolTip, QWidget

from desktop_llm.core.branch_tree import TokenInfo
from desktop_llm.gui.theme import is_dark

HREF = "tok:"


def visible(text: str) -> str:
    """A token's text with its invisible characters made visible (for lists and tooltips)."""
    if text == "":
        return "∅"
    return text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")


def prob_colour(prob: float, dark: bool) -> QColor:
    """Red (unlikely) through yellow to green (likely); the square root spreads the low end."""
    hue = int(120 * math.sqrt(max(0.0, min(1.0, prob))))
    return QColor.fromHsl(hue, 150, 70) if dark else QColor.fromHsl(hue, 190, 212)


def _id_text(token_id: int | None) -> str:
    return "id unknown (remote)" if token_id is None else f"id {token_id}"


def alternatives_html(token: TokenInfo, index: int) -> str:
    rows = "".join(
        f"<tr><td>{'▶ ' if token.is_alternative(a) else ''}{html.escape(visible(a.get('text', '')))}</td>"
        f"<td align='right'>{math.exp(a['logprob']) * 100:.1f}%</td><td>{_id_text(a.get('token_id'))}</td></tr>"
        for a in token.alternatives)
    chosen = "chosen by you" if token.forced else "drawn"
    odds = ("probability not given by the endpoint" if token.prob is None or token.logprob is None
            else f"probability {token.prob * 100:.1f}% (log-prob {token.logprob:.3f})")
    head = (f"<b>Token {index + 1}</b>: {html.escape(visible(token.text))} ({_id_text(token.token_id)}, {chosen}) "
            f"<br>{odds}")
    if not rows:
        return head + "<br><i>Alternatives are off (turn on Show probabilities).</i>"
    return head + f"<br>The model's top choices here:<table cellspacing='4'>{rows}</table>Click to branch."


class TokenView(QTextBrowser):
    """The prompt's tail in grey, then the tokens; ``token_clicked(index)`` when one is clicked."""

    token_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tokenView")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.tokens: list[TokenInfo] = []
        self.colour = True
        self.selected: int | None = None
        self.anchorClicked.connect(self._clicked)
        self.highlighted.connect(self._hovered)

    def show_tokens(self, prompt: str, tokens: list[TokenInfo]) -> None:
        self.clear()
        self.tokens = []
        cursor = self.textCursor()
        grey = QTextCharFormat()
        grey.setForeground(QColor("#888888"))
        cursor.insertText(prompt, grey)
        for t in tokens:
            self.append_token(t)

    def append_token(self, token: TokenInfo) -> None:
        index = len(self.tokens)
        self.tokens.append(token)
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        fmt = QTextCharFormat()
        fmt.setAnchor(True)
        fmt.setAnchorHref(f"{HREF}{index}")
        fmt.setForeground(self.palette().text())
        if self.colour and token.prob is not None:
            fmt.setBackground(prob_colour(token.prob, is_dark()))
        if token.forced:
            fmt.setFontUnderline(True)
        if index == self.selected:
            fmt.setFontWeight(700)
        cursor.insertText(token.text, fmt)

    def _index(self, url: QUrl) -> int | None:
        text = url.toString()
        if not text.startswith(HREF):
            return None
        index = int(text[len(HREF):])
        return index if 0 <= index < len(self.tokens) else None

    def _clicked(self, url: QUrl) -> None:
        index = self._index(url)
        if index is not None:
            self.token_clicked.emit(index)

    def _hovered(self, url: QUrl) -> None:
        index = self._index(url)
        if index is None:
            QToolTip.hideText()
            return
        QToolTip.showText(QCursor.pos(), self.tooltip_for(index), self)

    def tooltip_for(self, index: int) -> str:
        return alternatives_html(self.tokens[index], index)


class AlternativesList(QListWidget):
    """The selected token's alternatives; activating one asks for a branch with it."""

    chosen = Signal(int, dict)  # position, alternative {token_id, text, logprob}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("alternativesList")
        self.position: int | None = None
        self.itemClicked.connect(self._clicked)

    def show_token(self, position: int | None, token: TokenInfo | None) -> None:
        self.clear()
        self.position = position
        if token is None or position is None:
            return
        for alt in token.alternatives:
            mark = " (the one written)" if token.is_alternative(alt) else ""
            item = QListWidgetItem(f"{math.exp(alt['logprob']) * 100:5.1f}%  {visible(alt.get('text', ''))}{mark}")
            item.setData(256, alt)
            item.setToolTip(f"token {_id_text(alt.get('token_id'))}; click to continue the text with this token "
                            "instead")
            self.addItem(item)

    def _clicked(self, item: QListWidgetItem) -> None:
        alt = item.data(256)
        if self.position is not None and alt is not None:
            self.chosen.emit(self.position, alt)
