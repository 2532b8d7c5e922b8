"""The main window: a streamed chat with the loaded model.

Tokens are appended at the end of the transcript as they arrive (never a re-render of the whole
reply), so a long reply streams as smoothly as a short one.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.conversation import Conversation, Message
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.store import SearchHit
from desktop_llm.gui.chat_persistence import ChatPersistence
from desktop_llm.gui.engine_bridge import QtEngine

_ROLE_TITLES = {"user": "You", "assistant": "Assistant"}


class MessageInput(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line."""

    def __init__(self, on_send: Any) -> None:
        super().__init__()
        self._on_send = on_send
        self.setPlaceholderText("Message the model (Enter sends, Shift+Enter for a new line)")
        self.setFixedHeight(72)

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self._on_send()
            return
        super().keyPressEvent(event)


class ChatWindow(QMainWindow):
    def __init__(self, engine: QtEngine, params: SamplingParams | None = None,
                 persistence: ChatPersistence | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.persistence = persistence
        self._model_id: str | None = None
        self.params = params or SamplingParams()
        self.history: list[dict[str, str]] = []
        self._reply: list[str] = []
        self._model_name = ""
        self.setWindowTitle("desktop_llm")
        self.resize(900, 680)

        self.model_label = QLabel("Starting the engine…")
        self.model_label.setObjectName("modelLabel")
        self.new_button = QPushButton("New chat")
        self.system_edit = QLineEdit()
        self.system_edit.setPlaceholderText("System prompt (optional): how the assistant should behave")
        self.transcript = QTextBrowser()
        self.transcript.setOpenExternalLinks(True)
        self.input = MessageInput(self.send)
        self.send_button = QPushButton("Send")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.send_button.setEnabled(False)

        top = QHBoxLayout()
        top.addWidget(self.model_label, 1)
        top.addWidget(self.new_button)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)
        layout = QVBoxLayout()
        layout.addLayout(top)
        layout.addWidget(self.system_edit)
        layout.addWidget(self.transcript, 1)
        layout.addLayout(bottom)
        chat = QWidget()
        chat.setLayout(layout)
        self.conversations = QListWidget()
        self.conversations.setObjectName("conversationList")
        self.conversations.setTextElideMode(Qt.TextElideMode.ElideRight)  # long titles end in "…"
        self.conversations.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search all chats (Ctrl+F)")
        self.search_edit.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=150)  # search as you type, not per key
        sidebar = QWidget()
        side = QVBoxLayout(sidebar)
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.search_edit)
        side.addWidget(self.conversations, 1)
        splitter = QSplitter()
        splitter.addWidget(sidebar)
        splitter.addWidget(chat)
        splitter.setSizes([230, 670])
        sidebar.setVisible(persistence is not None)
        self.setCentralWidget(splitter)
        self.engine_state = QLabel("engine: starting")
        self.reply_stats = QLabel("")
        self.statusBar().addWidget(self.engine_state)
        self.statusBar().addPermanentWidget(self.reply_stats)

        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.new_button.clicked.connect(self.new_chat)
        self.conversations.itemClicked.connect(self._open_item)
        self.search_edit.textChanged.connect(lambda _text: self._search_timer.start())
        self._search_timer.timeout.connect(self._run_search)
        QShortcut(QKeySequence("Ctrl+F"), self, activated=self.search_edit.setFocus)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.stop)
        QShortcut(QKeySequence("Ctrl+N"), self, activated=self.new_chat)

        engine.state_changed.connect(self._on_state)
        engine.load_progress.connect(lambda stage, f: self.model_label.setText(f"Loading: {stage} {f:.0%}"))
        engine.loaded.connect(self._on_loaded)
        engine.load_failed.connect(self._on_load_failed)
        engine.token.connect(self._on_token)
        engine.finished.connect(self._on_finished)
        engine.failed.connect(self._on_failed)
        if persistence is not None:
            persistence.background.on_error = lambda exc: self.show_note(f"Could not save the chat: {exc}",
                                                                            error=True)
            self.refresh_conversations()

    # -- engine events ----------------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        self.engine_state.setText(f"engine: {state}")

    def _on_loaded(self, info: dict[str, Any]) -> None:
        self._model_name = info["model"]["name"]
        self._model_id = info["model"]["id"]
        self.model_label.setText(f"<b>{html.escape(self._model_name)}</b> · {info['backend']} on {info['device']}"
                                 f" · context {info['n_ctx']} tokens")
        self.send_button.setEnabled(True)
        self.input.setFocus()

    def _on_load_failed(self, message: str) -> None:
        self.model_label.setText("No model loaded")
        self.show_note(f"Could not load the model: {message}", error=True)

    def _on_token(self, event: dict[str, Any]) -> None:
        self._reply.append(event["text"])
        self._insert_plain(event["text"])
        if self.persistence is not None:
            self.persistence.reply_grew(lambda: "".join(self._reply))

    def _on_finished(self, done: dict[str, Any]) -> None:
        text = "".join(self._reply)
        if text:
            self.history.append({"role": "assistant", "content": text})
        stats = f"{(done.get('usage') or {}).get('completion_tokens', len(self._reply))} tokens"
        if done.get("tokens_per_second"):
            stats += f" · {done['tokens_per_second']:.1f} tok/s"
        if done.get("ttft_ms") is not None:
            stats += f" · first token {done['ttft_ms']:.0f} ms"
        if done.get("finish_reason") == "cancelled":
            self.show_note("(stopped)")
        elif done.get("context_full"):
            self.show_note("(the context is full)")
        self.reply_stats.setText(stats)
        if self.persistence is not None:
            status = "stopped" if done.get("finish_reason") == "cancelled" else "complete"
            meta = {k: done.get(k) for k in ("finish_reason", "tokens_per_second", "ttft_ms") if k in done}
            meta["model_id"] = self._model_id
            self.persistence.finish_turn(text, status, meta)
            self.refresh_conversations()
        self._set_busy(False)

    def _on_failed(self, message: str) -> None:
        if self.history and self.history[-1]["role"] == "user" and not self._reply:
            self.history.pop()
        self.show_note(message, error=True)
        if self.persistence is not None:
            self.persistence.finish_turn("".join(self._reply), "error", {"error": message})
        self._set_busy(False)

    # -- actions ----------------------------------------------------------------------------------
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.engine.busy or not self.send_button.isEnabled():
            return
        self.input.clear()
        self.history.append({"role": "user", "content": text})
        self._append_message("You", text)
        self._append_message("Assistant", "")
        self._reply = []
        self._set_busy(True)
        system = self.system_edit.text().strip()
        if self.persistence is not None:
            self.persistence.start_turn(text, system or None, self._model_id,
                                        on_created=lambda _conv: self.refresh_conversations())
        messages = ([{"role": "system", "content": system}] if system else []) + self.history
        self.engine.generate(messages, self.params)

    def stop(self) -> None:
        if self.engine.busy:
            self.engine.stop()

    def new_chat(self) -> None:
        if self.engine.busy:
            return
        self.history = []
        self.transcript.clear()
        self.reply_stats.setText("")
        if self.persistence is not None:
            self.persistence.new_conversation()
            self.conversations.clearSelection()

    # -- saved conversations ----------------------------------------------------------------------
    def refresh_conversations(self) -> None:
        if self.persistence is not None:
            self.persistence.list_conversations(self._show_conversations)

    def _show_conversations(self, conversations: list[Conversation]) -> None:
        current = self.persistence.conversation_id if self.persistence else None
        self.conversations.clear()
        for conv in conversations:
            item = QListWidgetItem(("📌 " if conv.pinned else "") + conv.title)
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            item.setToolTip(conv.title)
            self.conversations.addItem(item)
            if conv.id == current:
                item.setSelected(True)

    def _run_search(self) -> None:
        text = self.search_edit.text().strip()
        if self.persistence is None:
            return
        if not text:
            self.refresh_conversations()
            return
        self.persistence.search(text, self._show_hits)

    def _show_hits(self, result: tuple[str, list[SearchHit]]) -> None:
        query, hits = result
        if query != self.search_edit.text().strip():
            return  # an older search answered after the user typed on
        self.conversations.clear()
        if not hits:
            self.conversations.addItem(QListWidgetItem("No message matches."))
        for hit in hits:
            snippet = " ".join(hit.snippet.split())  # one line per hit, whatever the message's layout
            item = QListWidgetItem(f"{hit.conversation_title}\n  {snippet}")
            item.setData(Qt.ItemDataRole.UserRole, hit.conversation_id)
            item.setData(Qt.ItemDataRole.UserRole + 1, hit.message_id)
            item.setToolTip(hit.snippet)
            self.conversations.addItem(item)

    def _open_item(self, item: QListWidgetItem) -> None:
        if self.engine.busy or self.persistence is None or item.data(Qt.ItemDataRole.UserRole) is None:
            return
        message_id = item.data(Qt.ItemDataRole.UserRole + 1)
        if message_id:  # a search hit: open its branch and show the words found
            words = self.search_edit.text().split()
            self.persistence.open_at(message_id, lambda loaded: self._show_conversation(loaded, words))
        else:
            self.persistence.open(item.data(Qt.ItemDataRole.UserRole), self._show_conversation)

    def _show_conversation(self, loaded: tuple[Conversation, list[Message]], find: list[str] | None = None) -> None:
        conv, path = loaded
        self.transcript.clear()
        self.reply_stats.setText("")
        self.system_edit.setText(conv.system_prompt or "")
        # Replies that failed before writing anything are not part of what the model is told.
        self.history = [{"role": m.role, "content": m.content} for m in path
                        if m.role in _ROLE_TITLES and (m.content or m.status != "error")]
        for m in path:
            if m.role in _ROLE_TITLES:
                self._append_message(_ROLE_TITLES[m.role], m.content)
                if m.status == "stopped":
                    self.show_note("(stopped)")
                elif m.status == "streaming":
                    self.show_note("(cut off: the app closed while this reply was being written)")
        if find:
            # Select the first place the first searched word appears, and scroll to it.
            self.transcript.moveCursor(QTextCursor.MoveOperation.Start)
            self.transcript.find(find[0])

    # -- transcript -------------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.send_button.setEnabled(not busy and bool(self._model_name))
        self.stop_button.setEnabled(busy)
        self.new_button.setEnabled(not busy)

    def _append_message(self, who: str, text: str) -> None:
        color = "#2563eb" if who == "You" else "#059669"
        self.transcript.append(f'<p style="margin-top:10px"><b style="color:{color}">{who}</b></p>')
        self.transcript.append("")
        self._insert_plain(text)

    def show_note(self, text: str, error: bool = False) -> None:
        color = "#dc2626" if error else "#6b7280"
        self.transcript.append(f'<p><i style="color:{color}">{html.escape(text)}</i></p>')

    def _insert_plain(self, text: str) -> None:
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.transcript.setTextCursor(cursor)
        self.transcript.ensureCursorVisible()

    def transcript_text(self) -> str:
        return self.transcript.toPlainText()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        busy = self.engine.busy
        if busy:
            self.engine.stop()
        if self.persistence is not None:
            if busy:  # keep what was written so far, marked as stopped
                self.persistence.finish_turn("".join(self._reply), "stopped", {})
            self.persistence.background.drain()
        self.engine.shutdown()
        super().closeEvent(event)
