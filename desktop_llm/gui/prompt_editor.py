"""The Playground's prompt: raw text to continue (completion), or chat messages with roles."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import InvalidRequest

ROLES = ("system", "user", "assistant")
COMPLETION, CHAT = 0, 1


class MessageRow(QWidget):
    def __init__(self, role: str, content: str, on_remove: Any, on_change: Any) -> None:
        super().__init__()
        self.role = QComboBox()
        self.role.addItems(ROLES)
        self.role.setCurrentText(role)
        self.role.currentIndexChanged.connect(on_change)
        self.content = QPlainTextEdit(content)
        self.content.setPlaceholderText(f"{role} message")
        self.content.setMaximumHeight(80)
        self.content.textChanged.connect(on_change)
        remove = QPushButton("✕")
        remove.setToolTip("Remove this message")
        remove.setFixedWidth(28)
        remove.clicked.connect(lambda: on_remove(self))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.role)
        layout.addWidget(self.content, 1)
        layout.addWidget(remove)


class PromptEditor(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = QComboBox()
        self.mode.setObjectName("playgroundMode")
        self.mode.addItems(["Completion: the model continues your text", "Chat: messages with roles"])
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.text = QPlainTextEdit()
        self.text.setObjectName("completionPrompt")
        self.text.setPlaceholderText("Text for the model to continue, e.g. 'The three primary colours are'")
        self.text.textChanged.connect(self.changed)
        self.rows: list[MessageRow] = []
        self._rows_box = QVBoxLayout()
        self._rows_box.setContentsMargins(0, 0, 0, 0)
        add = QPushButton("Add message")
        add.setObjectName("addMessage")
        add.clicked.connect(lambda: self.add_message(self._next_role(), ""))
        rows_widget = QWidget()
        rl = QVBoxLayout(rows_widget)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(self._rows_box)
        rl.addWidget(add)
        rl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(rows_widget)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.text)
        self.stack.addWidget(scroll)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Mode"))
        top.addWidget(self.mode, 1)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        self.add_message("system", "You are a helpful assistant.")
        self.add_message("user", "")

    def _mode_changed(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.changed.emit()

    def is_chat(self) -> bool:
        return self.mode.currentIndex() == CHAT

    def set_mode(self, mode: int) -> None:
        self.mode.setCurrentIndex(mode)

    def _next_role(self) -> str:
        last = self.rows[-1].role.currentText() if self.rows else "assistant"
        return "assistant" if last == "user" else "user"

    def add_message(self, role: str, content: str) -> MessageRow:
        row = MessageRow(role, content, self._remove, lambda *_: self.changed.emit())
        self.rows.append(row)
        self._rows_box.addWidget(row)
        self.changed.emit()
        return row

    def _remove(self, row: MessageRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.changed.emit()

    def set_messages(self, messages: list[dict[str, str]]) -> None:
        for row in list(self.rows):
            self._remove(row)
        for m in messages:
            self.add_message(m.get("role", "user"), m.get("content", ""))

    def messages(self) -> list[dict[str, str]]:
        return [{"role": r.role.currentText(), "content": r.content.toPlainText()} for r in self.rows
                if r.content.toPlainText().strip()]

    def keep(self, text: str) -> None:
        """Continue from generated ``text``: appended to the completion, or an assistant message in a chat."""
        if self.is_chat():
            self.add_message("assistant", text.strip())
        else:
            self.text.setPlainText(self.text.toPlainText() + text)
            self.text.moveCursor(QTextCursor.MoveOperation.End)
        self.changed.emit()

    def source(self) -> dict[str, Any]:
        """The prompt part of an engine request; an empty prompt is refused with what to do."""
        if self.is_chat():
            messages = self.messages()
            if not any(m["role"] == "user" for m in messages):
                raise InvalidRequest("The chat has no user message.", "Write a user message for the model to answer.")
            return {"messages": messages}
        text = self.text.toPlainText()
        if not text.strip():
            raise InvalidRequest("The prompt is empty.", "Type some text for the model to continue.")
        return {"prompt": text}
