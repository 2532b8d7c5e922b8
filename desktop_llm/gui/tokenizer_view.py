"""The Playground's Tokens tab: the prompt as the model reads it, token by token, with ids.

Shows the boundaries (alternating shades), each token's id, the count and the share of the
loaded model's context the prompt uses. Chat prompts are shown after the model's chat template,
special tokens included, because that is what the model really reads.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.gui.engine_bridge import QtEngine
from desktop_llm.gui.theme import is_dark

SHADES_LIGHT = ("#dbe9f7", "#f7e3cf")
SHADES_DARK = ("#2d4660", "#5a4330")


def token_html(pieces: list[str], ids: list[int], show_ids: bool, dark: bool) -> str:
    shades = SHADES_DARK if dark else SHADES_LIGHT
    out = []
    for i, (piece, tid) in enumerate(zip(pieces, ids, strict=True)):
        # Spaces as a middle dot and newlines as ⏎ (then a real line break): boundaries stay visible.
        shown = html.escape(piece).replace(" ", "·").replace("\n", "⏎").replace("\t", "⇥") or "∅"
        sub = f"<sub style='color:#888'>{tid}</sub>" if show_ids else ""
        brk = "<br>" if piece.endswith("\n") else ""  # after the id, so the id stays with its token
        out.append(f"<span style='background:{shades[i % 2]}' title='token {i + 1}: id {tid}'>{shown}{sub}</span>{brk}")
    return "<div style='font-family:monospace; line-height:160%'>" + "".join(out) + "</div>"


class TokenizerView(QWidget):
    status = Signal(str)

    def __init__(self, engine: QtEngine, source: Callable[[], dict[str, Any]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.source = source
        self.result: dict[str, Any] | None = None
        self.summary = QLabel("")
        self.summary.setObjectName("tokenSummary")
        self.summary.setWordWrap(True)
        self.show_ids = QCheckBox("Show token ids")
        self.show_ids.setChecked(True)
        self.show_ids.toggled.connect(lambda _on: self._render())
        self.view = QTextBrowser()
        self.view.setObjectName("tokenizerView")
        explain = QLabel("A model reads and writes tokens: pieces of words with a number each. Shades mark where "
                         "one token ends and the next begins; · is a space, ⏎ a line break. Chat prompts are shown "
                         "after the model's chat template, with its special tokens.")
        explain.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.show_ids)
        layout = QVBoxLayout(self)
        layout.addWidget(explain)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        # Re-tokenized shortly after typing stops, not per keystroke.
        self.timer = QTimer(self, singleShot=True, interval=400)
        self.timer.timeout.connect(self.refresh)

    def schedule(self) -> None:
        if self.isVisible():
            self.timer.start()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        try:
            source = self.source()
        except DesktopLLMError as exc:
            self.summary.setText(exc.message)
            self.view.clear()
            return
        if self.engine.loaded_info is None:
            self.summary.setText("Load a model to see how it splits the prompt into tokens.")
            return

        def job(client: Any) -> dict[str, Any]:
            if "messages" in source:
                return client.tokenize_messages(source["messages"])
            return client.tokenize(source["prompt"], add_special=True)

        self.engine.call(job, self._shown, self._failed)

    def _shown(self, result: dict[str, Any]) -> None:
        self.result = result
        self._render()

    def _failed(self, message: str) -> None:
        self.summary.setText(f"<span style='color:#c62828'>{html.escape(message)}</span>")

    def _render(self) -> None:
        if self.result is None:
            return
        ids, pieces = self.result["tokens"], self.result["pieces"]
        n_ctx = (self.engine.loaded_info or {}).get("n_ctx") or 0
        share = f", {len(ids) / n_ctx * 100:.1f}% of the {n_ctx:,}-token context" if n_ctx else ""
        chars = sum(len(p) for p in pieces)
        per = f" (about {chars / len(ids):.1f} characters a token)" if ids else ""
        self.summary.setText(f"<b>{len(ids):,} tokens</b>{share}{per}")
        self.view.setHtml(token_html(pieces, ids, self.show_ids.isChecked(), is_dark()))
