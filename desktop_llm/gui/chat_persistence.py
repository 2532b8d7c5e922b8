"""Saving the chat window's conversation as it happens, through the store, off the GUI thread.

A streaming reply is written as it grows, at most once a second, so closing or killing the app
mid-reply loses at most the last second; the reply's status says whether it finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from desktop_llm.core.conversation import Conversation, Message
from desktop_llm.core.store import ChatStore, SearchHit
from desktop_llm.gui.background import Background

SAVE_EVERY_SECONDS = 1.0


class ChatPersistence:
    def __init__(self, store: ChatStore, background: Background) -> None:
        self.store = store
        self.background = background
        # Read and written on the disk thread only: ids of what the current turn has written.
        self._ids: dict[str, str | None] = {"conversation": None, "leaf": None, "reply": None}
        self._last_save = 0.0

    @property
    def conversation_id(self) -> str | None:
        return self._ids["conversation"]

    def list_conversations(self, on_result: Callable[[list[Conversation]], None]) -> None:
        self.background.run(self.store.list_conversations, on_result)

    def open(self, conversation_id: str, on_result: Callable[[tuple[Conversation, list[Message]]], None]) -> None:
        def job() -> tuple[Conversation, list[Message]]:
            conv = self.store.get_conversation(conversation_id)
            path = self.store.path_to(conv.current_leaf_id)
            self._ids.update(conversation=conv.id, leaf=conv.current_leaf_id, reply=None)
            return conv, path

        self.background.run(job, on_result)

    def search(self, text: str, on_result: Callable[[tuple[str, list[SearchHit]]], None]) -> None:
        self.background.run(lambda: (text, self.store.search(text)), on_result)

    def open_at(self, message_id: str,
                on_result: Callable[[tuple[Conversation, list[Message]]], None]) -> None:
        """Open the conversation holding ``message_id``, on the branch that contains it."""
        def job() -> tuple[Conversation, list[Message]]:
            path = self.store.switch_to(message_id)
            conv = self.store.get_conversation(path[0].conversation_id)
            self._ids.update(conversation=conv.id, leaf=conv.current_leaf_id, reply=None)
            return conv, path

        self.background.run(job, on_result)

    def new_conversation(self) -> None:
        def job() -> None:
            self._ids.update(conversation=None, leaf=None, reply=None)

        self.background.run(job)

    def start_turn(self, user_text: str, system_prompt: str | None, model_id: str | None,
                   on_created: Callable[[Conversation], None] | None = None) -> None:
        """Save the user's message and an empty, streaming reply under it."""
        def job() -> Conversation | None:
            created = None
            if self._ids["conversation"] is None:
                title = " ".join(user_text.split())[:48] or "New chat"
                created = self.store.create_conversation(title, system_prompt, model_id)
                self._ids["conversation"] = created.id
            conv_id = self._ids["conversation"]
            user = self.store.add_message(conv_id, "user", user_text, self._ids["leaf"])
            reply = self.store.add_message(conv_id, "assistant", "", user.id, status="streaming")
            self._ids.update(leaf=reply.id, reply=reply.id)
            return created

        self._last_save = time.monotonic()
        self.background.run(job, (lambda conv: on_created(conv) if conv else None) if on_created else None)

    def reply_grew(self, current_text: Callable[[], str]) -> None:
        """Called per token; writes (and builds the text) only when a save is due."""
        now = time.monotonic()
        if now - self._last_save >= SAVE_EVERY_SECONDS:
            self._last_save = now
            text = current_text()
            self.background.run(lambda: self._write_reply(text, None, None))

    def finish_turn(self, text: str, status: str, meta: dict[str, Any]) -> None:
        self.background.run(lambda: self._write_reply(text, status, meta))

    def _write_reply(self, text: str, status: str | None, meta: dict[str, Any] | None) -> None:
        if self._ids["reply"] is not None:
            self.store.update_message(self._ids["reply"], content=text, status=status, meta=meta)
