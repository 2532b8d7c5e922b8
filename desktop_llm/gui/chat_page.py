"""The Chat page: saved conversations at the left, the transcript and input in the middle, the chat's
own settings at the right.

The page keeps the branch on screen (``path``) and names new messages itself, so it never waits
for the disk; every read and write goes through ``ChatPersistence`` on the disk thread.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.conversation import Conversation, Message
from desktop_llm.core.presets import preset_named
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.settings import Settings
from desktop_llm.core.store import SearchHit
from desktop_llm.gui.chat_persistence import ChatPersistence, OpenedChat, new_id
from desktop_llm.gui.chat_settings_panel import ChatSettingsPanel
from desktop_llm.gui.conversation_list import ConversationList
from desktop_llm.gui.engine_bridge import QtEngine
from desktop_llm.gui.transcript_view import TranscriptView

# Tokens a chat template adds around each message (role markers); for the estimate before a reply.
_TEMPLATE_TOKENS_PER_MESSAGE = 5


class MessageInput(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line."""

    def __init__(self, on_send: Any) -> None:
        super().__init__()
        self.setObjectName("messageInput")
        self._on_send = on_send
        self.setPlaceholderText("Message the model (Enter sends, Shift+Enter for a new line)")
        self.setFixedHeight(76)

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self._on_send()
            return
        super().keyPressEvent(event)


class ChatPage(QWidget):
    context_changed = Signal(int, int, bool)  # tokens used, the model's context size, exact (else estimated)
    reply_done = Signal(dict)  # the done event of this page's last reply
    model_wanted = Signal(str)  # a chat opened that was made with another model: its id
    pick_model_requested = Signal()
    status_message = Signal(str)  # a short confirmation for the status bar

    def __init__(self, engine: QtEngine, persistence: ChatPersistence, settings: Settings) -> None:
        super().__init__()
        self.engine = engine
        self.persistence = persistence
        self.settings = settings
        self.path: list[Message] = []
        self.versions: dict[str, tuple[int, int]] = {}
        self._model_preset: str | None = None  # the loaded model's sampling preset (per-model default)
        self.conv = self._blank_conversation()
        self._saved = False  # whether self.conv is in the store yet
        self._reply: Message | None = None  # the reply streaming now
        self._reply_parts: list[str] = []
        self._editing: Message | None = None
        self._model_id: str | None = None
        self._model_name: str | None = None
        self._n_ctx = 0

        self.conversation_list = ConversationList()
        self.transcript = TranscriptView()
        self.input = MessageInput(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the reply (Esc); what was written so far is kept")
        self.send_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        self.settings_button = QPushButton("Chat settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setObjectName("chatSettingsButton")
        self.title_label = QLabel()
        self.title_label.setObjectName("chatTitle")
        self.edit_banner = QLabel()
        self.edit_banner.setObjectName("editBanner")
        self.edit_banner.setWordWrap(True)
        self.edit_banner.setVisible(False)
        self.edit_banner.setText('Editing your message: sending makes a new branch, and the original stays '
                                 '(switch with ‹ ›). <a href="cancel">Cancel</a> (Esc)')
        self.edit_banner.linkActivated.connect(lambda _link: self.cancel_edit())
        self.context_bar = QProgressBar()
        self.context_bar.setObjectName("contextGauge")
        self.context_bar.setMaximumHeight(14)
        self.context_bar.setTextVisible(False)
        self.context_label = QLabel("Context: —")
        self.context_label.setObjectName("contextLabel")
        self.settings_panel = ChatSettingsPanel()
        self.settings_panel.setVisible(False)
        self.settings_panel.setMinimumWidth(250)

        top = QHBoxLayout()
        top.addWidget(self.title_label, 1)
        top.addWidget(self.settings_button)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        entry = QHBoxLayout()
        entry.addWidget(self.input, 1)
        entry.addLayout(buttons)
        gauge = QHBoxLayout()
        gauge.addWidget(self.context_label)
        gauge.addWidget(self.context_bar, 1)
        middle = QWidget()
        center = QVBoxLayout(middle)
        center.addLayout(top)
        center.addWidget(self.transcript, 1)
        center.addWidget(self.edit_banner)
        center.addLayout(entry)
        center.addLayout(gauge)
        splitter = QSplitter()
        splitter.addWidget(self.conversation_list)
        splitter.addWidget(middle)
        splitter.addWidget(self.settings_panel)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([250, 700, 280])
        splitter.setChildrenCollapsible(False)
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(splitter)

        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.settings_button.toggled.connect(self.settings_panel.setVisible)
        self.transcript.message_action.connect(self._on_message_action)
        self.transcript.copied.connect(lambda what: self.status_message.emit(f"Copied the {what}."))
        lst = self.conversation_list
        lst.open_requested.connect(self.open_conversation)
        lst.hit_requested.connect(self.open_hit)
        lst.new_requested.connect(self.new_chat)
        lst.import_requested.connect(self.import_file)
        lst.export_requested.connect(self.export_conversation)
        lst.rename_requested.connect(self.rename_conversation)
        lst.pin_requested.connect(self.pin_conversation)
        lst.delete_requested.connect(self.delete_conversation)
        lst.undo_delete_requested.connect(self.undo_delete)
        lst.search_changed.connect(self._search)
        panel = self.settings_panel
        panel.system_prompt_changed.connect(self._set_system_prompt)
        panel.params_changed.connect(self._set_params)
        panel.reset_requested.connect(self._reset_chat_settings)
        panel.pick_model_requested.connect(self.pick_model_requested)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self._escape)

        engine.token.connect(self._on_token)
        engine.finished.connect(self._on_finished)
        engine.failed.connect(self._on_failed)
        self.persistence.background.on_error = lambda exc: self.transcript.add_note(
            f"Could not save the chat: {exc}", error=True)
        self._show_title()
        self._show_chat_settings()
        self.refresh_conversations()

    # -- state helpers ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._reply is not None

    def _blank_conversation(self) -> Conversation:
        now = time.time()
        return Conversation(new_id(), "New chat", now, now, False, self.settings.system_prompt or None,
                            None, self._preset_params())

    def _preset_params(self) -> dict[str, Any]:
        """The loaded model's sampling preset (its per-model default), as changes from Settings' defaults."""
        preset = preset_named(self._model_preset)
        return self._changes_from_defaults(preset.values) if preset is not None else {}

    def _changes_from_defaults(self, values: dict[str, Any]) -> dict[str, Any]:
        """Only what differs from Settings' defaults, so later changes of the defaults still reach this chat."""
        defaults = self.settings.sampling_params().to_dict()
        return {k: v for k, v in values.items() if defaults.get(k) != v}

    def set_model_preset(self, name: str | None) -> None:
        """The sampling preset chosen for the model being loaded; new chats with it start from the preset."""
        self._model_preset = name
        if not self._saved and not self.path and not self.busy:
            self.conv.params = self._preset_params()
            self._show_chat_settings()

    def chat_params(self) -> SamplingParams:
        """The parameters this chat's replies use: Settings' defaults with the chat's own changes."""
        return self.settings.sampling_params().with_updates(**self.conv.params)

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setEnabled(not busy and self._model_id is not None)
        self.stop_button.setEnabled(busy)

    def _show_title(self) -> None:
        self.title_label.setText(f"<b>{self.conv.title}</b>" if self._saved else "<b>New chat</b>")

    def _show_chat_settings(self) -> None:
        params = self.chat_params().to_dict()
        self.settings_panel.show_chat(self.conv.system_prompt or "", params, self._model_name)

    def transcript_text(self) -> str:
        return self.transcript.plain_text()

    # -- model ------------------------------------------------------------------------------------
    def on_model_loaded(self, info: dict[str, Any]) -> None:
        self._model_id = info["model"]["id"]
        self._model_name = info["model"]["name"]
        self._n_ctx = int(info.get("n_ctx") or 0)
        self.transcript.set_model_names({self._model_id: self._model_name})
        self.settings_panel.set_model_name(self._model_name)
        if self.conv.model_id != self._model_id:
            self.conv.model_id = self._model_id
            if self._saved:
                self.persistence.update_conversation(self.conv.id, model_id=self._model_id)
        self._set_busy(self.busy)
        self._estimate_context()
        self.input.setFocus()

    def on_model_unloaded(self) -> None:
        self._model_id = None
        self._model_name = None
        self.settings_panel.set_model_name(None)
        self._set_busy(self.busy)

    def set_settings(self, settings: Settings) -> None:
        self.settings = settings
        if not self._saved and not self.path:
            self.conv.system_prompt = settings.system_prompt or None
        self._show_chat_settings()

    def set_dark(self, dark: bool) -> None:
        self.transcript.set_dark(dark)

    # -- sending and replies ----------------------------------------------------------------------
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.busy or self.engine.busy:
            return
        if self._model_id is None:
            self.transcript.add_note("No model is loaded. Pick one with Ctrl+K.", error=True)
            return
        self.settings_panel.flush()
        self.input.clear()
        self.transcript.clear_notes()
        if not self._saved:
            self.conv.title = " ".join(text.split())[:60] or "New chat"
            self.conv.model_id = self._model_id
            self.persistence.create_conversation(self.conv)
            self._saved = True
            self._show_title()
        if self._editing is not None:
            edited = self._editing
            self.cancel_edit()
            base = self.path[:self._index_of(edited.id)]
            count = self.versions.get(edited.id, (1, 1))[1] + 1
        else:
            base, count = list(self.path), 1
        user = Message(new_id(), self.conv.id, base[-1].id if base else None, "user", text, time.time())
        self.persistence.add_message(user)
        if count > 1:
            self.versions[user.id] = (count, count)
        self._start_reply(base + [user])
        self.refresh_conversations()

    def regenerate(self, message_id: str) -> None:
        """Another version of an assistant reply; the earlier ones stay (‹ 1/2 ›)."""
        index = self._index_of(message_id)
        if index is None or self.busy or self._model_id is None or index == 0:
            return
        count = self.versions.get(message_id, (1, 1))[1] + 1
        self.transcript.clear_notes()
        self._start_reply(self.path[:index], versions=count)

    def _start_reply(self, base: list[Message], versions: int = 1) -> None:
        reply = Message(new_id(), self.conv.id, base[-1].id, "assistant", "", time.time(), "streaming",
                        {"model_id": self._model_id})
        self.persistence.add_message(reply)
        if versions > 1:
            self.versions[reply.id] = (versions, versions)
        self.path = base + [reply]
        self._reply, self._reply_parts = reply, []
        self.transcript.show_messages(self.path, self.versions, live=True)
        self._set_busy(True)
        self.engine.generate(self._messages_for_model(base), self.chat_params())

    def _messages_for_model(self, path: list[Message]) -> list[dict[str, str]]:
        system = self.conv.system_prompt
        messages = [{"role": "system", "content": system}] if system else []
        # Replies that failed before writing anything are not part of what the model is told.
        messages += [{"role": m.role, "content": m.content} for m in path
                     if m.role in ("user", "assistant") and (m.content or m.status != "error")]
        return messages

    def stop(self) -> None:
        if self.busy:
            self.engine.stop()

    def _escape(self) -> None:
        if self.busy:
            self.stop()
        elif self._editing is not None:
            self.cancel_edit()

    def _on_token(self, event: dict[str, Any]) -> None:
        if self._reply is None:
            return
        self._reply_parts.append(event["text"])
        self.transcript.append_reply(event["text"])
        self.persistence.reply_grew(self._reply.id, self._reply_parts)

    def _on_finished(self, done: dict[str, Any]) -> None:
        if self._reply is None:
            return
        meta = {k: done[k] for k in ("finish_reason", "tokens_per_second", "ttft_ms", "dropped_messages",
                                     "context_full", "usage") if done.get(k) is not None}
        status = "stopped" if done.get("finish_reason") == "cancelled" else "complete"
        self._end_reply(status, meta)
        usage = done.get("usage") or {}
        if usage and done.get("n_ctx"):
            self._n_ctx = int(done["n_ctx"])
            used = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
            self._show_context(used, True)
        self.reply_done.emit(done)

    def _on_failed(self, message: str) -> None:
        if self._reply is not None:
            self._end_reply("error", {"error": message})

    def _end_reply(self, status: str, meta: dict[str, Any]) -> None:
        reply = self._reply
        assert reply is not None
        text = "".join(self._reply_parts)
        meta = {**reply.meta, **meta}
        done = dataclasses.replace(reply, content=text, status=status, meta=meta)
        self.persistence.finish_reply(reply.id, text, status, meta)
        self.path[-1] = done
        self._reply, self._reply_parts = None, []
        self.transcript.end_reply(done)
        self._set_busy(False)
        self.refresh_conversations()

    # -- versions, edits, forks -------------------------------------------------------------------
    def _index_of(self, message_id: str) -> int | None:
        return next((i for i, m in enumerate(self.path) if m.id == message_id), None)

    def _on_message_action(self, action: str, message_id: str) -> None:
        if action in ("regenerate", "retry"):
            self.regenerate(message_id)
        elif action == "edit":
            self.start_edit(message_id)
        elif action in ("prev", "next"):
            self.switch_version(message_id, -1 if action == "prev" else 1)
        elif action == "fork":
            self.fork(message_id)

    def start_edit(self, message_id: str) -> None:
        index = self._index_of(message_id)
        if index is None or self.busy:
            return
        self._editing = self.path[index]
        self.input.setPlainText(self._editing.content)
        self.edit_banner.setVisible(True)
        self.input.setFocus()

    def cancel_edit(self) -> None:
        if self._editing is not None:
            self._editing = None
            self.edit_banner.setVisible(False)
            self.input.clear()

    def switch_version(self, message_id: str, step: int) -> None:
        if self.busy:
            return
        self.persistence.switch_version(message_id, step, self._show_opened)

    def fork(self, message_id: str) -> None:
        if self.busy:
            return
        self.persistence.fork(message_id, self._on_forked)

    def _on_forked(self, opened: OpenedChat) -> None:
        self._show_opened(opened)
        self.refresh_conversations()
        self.status_message.emit(f"Forked into a new chat: {opened.conversation.title}")

    # -- conversations ----------------------------------------------------------------------------
    def new_chat(self) -> None:
        if self.busy:
            self.status_message.emit("Stop the reply first (Esc).")
            return
        self.cancel_edit()
        self.conv = self._blank_conversation()
        self.conv.model_id = self._model_id
        self._saved = False
        self.path, self.versions = [], {}
        self.transcript.clear_notes()
        self.transcript.show_messages([], {})
        self.conversation_list.select(None)
        self._show_title()
        self._show_chat_settings()
        self._show_context(0, True)
        self.input.setFocus()

    def start_from(self, system_prompt: str | None, params: dict[str, Any], draft: str) -> None:
        """A new chat with a system prompt, sampling values and a message ready to send (from the Playground)."""
        self.new_chat()
        if self.busy:
            return
        self.conv.system_prompt = system_prompt or None
        self.conv.params = self._changes_from_defaults(params)
        self._show_chat_settings()
        self.input.setPlainText(draft)
        self._estimate_context()

    def refresh_conversations(self) -> None:
        if self.conversation_list.search_text().strip():
            return  # the list shows search hits; it goes back to the chats when the search is cleared
        self.persistence.list_conversations(self._show_conversations)

    def _show_conversations(self, conversations: list[Conversation]) -> None:
        if self.conversation_list.search_text().strip():
            return
        self.conversation_list.set_conversations(conversations)
        self.conversation_list.select(self.conv.id if self._saved else None)

    def open_latest(self) -> None:
        """Reopen the chat with the newest activity (where the user left off), if there is one."""
        def show(conversations: list[Conversation]) -> None:
            if conversations and not self._saved and not self.path:
                self.open_conversation(max(conversations, key=lambda c: c.updated_at).id)

        self.persistence.list_conversations(show)

    def open_conversation(self, conversation_id: str) -> None:
        if self.busy:
            self.status_message.emit("Stop the reply first (Esc).")
            return
        self.persistence.open(conversation_id, self._show_opened)

    def open_hit(self, message_id: str, words: list[str]) -> None:
        if self.busy:
            self.status_message.emit("Stop the reply first (Esc).")
            return
        self.persistence.open_at(message_id, lambda opened: self._show_opened(opened, words))

    def _show_opened(self, opened: OpenedChat, find: list[str] | None = None) -> None:
        self.cancel_edit()
        self.conv = opened.conversation
        self._saved = True
        self.path, self.versions = list(opened.path), dict(opened.versions)
        self.transcript.clear_notes()
        self.transcript.show_messages(self.path, self.versions, focus_id=opened.focus_message_id)
        if find and opened.focus_message_id:
            self.transcript.find_in_message(opened.focus_message_id, find)
        self.conversation_list.select(self.conv.id)
        self._show_title()
        self._show_chat_settings()
        self._estimate_context()
        if self.conv.model_id and self._model_id and self.conv.model_id != self._model_id:
            self.model_wanted.emit(self.conv.model_id)

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        if conversation_id == self.conv.id:
            self.conv.title = title
            self._show_title()
        self.persistence.update_conversation(conversation_id, lambda _conv: self.refresh_conversations(),
                                             title=title)

    def pin_conversation(self, conversation_id: str, pinned: bool) -> None:
        self.persistence.update_conversation(conversation_id, lambda _conv: self.refresh_conversations(),
                                             pinned=pinned)

    def delete_conversation(self, conversation_id: str) -> None:
        if conversation_id == self.conv.id and self.busy:
            self.status_message.emit("Stop the reply first (Esc).")
            return
        title = self.conv.title if conversation_id == self.conv.id else ""

        def done(_: None) -> None:
            self.refresh_conversations()
            self.conversation_list.show_deleted(conversation_id, title or "the chat")

        if conversation_id == self.conv.id:
            self.new_chat()
        self.persistence.delete(conversation_id, done)

    def undo_delete(self, conversation_id: str) -> None:
        self.persistence.restore(conversation_id, lambda _: self.refresh_conversations())

    def export_conversation(self, conversation_id: str, fmt: str, path: str) -> None:
        self.persistence.export(
            conversation_id, fmt, path,
            lambda where: self.status_message.emit(f"Exported to {where}"),
            lambda exc: self.transcript.add_note(f"Could not export the chat: {exc}", error=True))

    def import_file(self, path: str) -> None:
        def opened(chat: OpenedChat) -> None:
            self._show_opened(chat)
            self.refresh_conversations()
            self.status_message.emit(f"Imported “{chat.conversation.title}”.")

        if self.busy:
            self.status_message.emit("Stop the reply first (Esc).")
            return
        self.persistence.import_file(
            path, opened, lambda exc: self.transcript.add_note(f"Could not import {path}: {exc}", error=True))

    def _search(self, text: str) -> None:
        if text.strip():
            self.persistence.search(text.strip(), self._show_hits)
        else:
            self.refresh_conversations()

    def _show_hits(self, result: tuple[str, list[SearchHit]]) -> None:
        query, hits = result
        self.conversation_list.set_hits(query, hits)

    # -- this chat's settings ---------------------------------------------------------------------
    def _set_system_prompt(self, text: str) -> None:
        self.conv.system_prompt = text or None
        if self._saved:
            self.persistence.update_conversation(self.conv.id, system_prompt=self.conv.system_prompt)
        self._estimate_context()

    def _set_params(self, values: dict[str, Any]) -> None:
        self.conv.params = self._changes_from_defaults(values)
        if self._saved:
            self.persistence.update_conversation(self.conv.id, params=self.conv.params)

    def _reset_chat_settings(self) -> None:
        self.conv.params = {}
        self.conv.system_prompt = self.settings.system_prompt or None
        if self._saved:
            self.persistence.update_conversation(self.conv.id, params={}, system_prompt=self.conv.system_prompt)
        self._show_chat_settings()

    # -- context gauge ----------------------------------------------------------------------------
    def _estimate_context(self) -> None:
        """Until a reply reports the exact figure, count the chat's tokens with the model's tokenizer."""
        if self._model_id is None:
            return
        messages = self._messages_for_model(self.path)
        if not messages:
            self._show_context(0, True)
            return
        text = "\n".join(m["content"] for m in messages)
        overhead = _TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
        conv_id = self.conv.id
        self.engine.count_tokens(text, lambda n: self._show_context(n + overhead, False)
                                 if self.conv.id == conv_id and not self.busy else None)

    def _show_context(self, used: int, exact: bool) -> None:
        limit = self._n_ctx
        if limit <= 0:
            self.context_label.setText("Context: —")
            self.context_bar.setValue(0)
            return
        self.context_bar.setRange(0, limit)
        self.context_bar.setValue(min(used, limit))
        share = used / limit
        approx = "" if exact else "≈ "
        self.context_label.setText(f"Context: {approx}{used:,} / {limit:,} tokens ({share:.0%})")
        tip = ("How much of the model's context this chat fills. When a new turn would not fit, the oldest "
               "turns are left out (the system prompt is always kept) and the chat says so.")
        self.context_bar.setToolTip(tip)
        self.context_label.setToolTip(tip)
        self.context_changed.emit(used, limit, exact)

    def closing(self) -> None:
        """The window is closing: keep a streaming reply as far as it got, and finish every write."""
        if self._reply is not None:
            self.engine.stop()
            self._end_reply("stopped", {})
        self.persistence.background.drain()
