"""The chat page's reads and writes, run through the store on the disk thread, never on the GUI thread.

The page names conversations and messages itself (uuid ids), so it never waits for a write to learn
an id; jobs run in order, so a write never overtakes the one before it. A streaming reply is written
as it grows, at most once a second, so closing or killing the app mid-reply loses at most the last
second; the reply's status says whether it finished.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_llm.core.conversation import Conversation, Message
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.store import ChatStore, SearchHit
from desktop_llm.gui.background import Background

SAVE_EVERY_SECONDS = 1.0


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class OpenedChat:
    """A conversation as the page shows it: the branch on screen and which messages have versions."""

    conversation: Conversation
    path: list[Message]
    versions: dict[str, tuple[int, int]]  # message id -> (its number, how many versions)
    focus_message_id: str | None = None  # a search hit to scroll to


class ChatPersistence:
    def __init__(self, store: ChatStore, background: Background) -> None:
        self.store = store
        self.background = background
        self._last_save = 0.0

    # -- reads ------------------------------------------------------------------------------------
    def _opened(self, conversation_id: str, focus: str | None = None) -> OpenedChat:
        conv = self.store.get_conversation(conversation_id)
        return OpenedChat(conv, self.store.path_to(conv.current_leaf_id), self.store.version_info(conv.id), focus)

    def list_conversations(self, on_result: Callable[[list[Conversation]], None]) -> None:
        self.background.run(self.store.list_conversations, on_result)

    def open(self, conversation_id: str, on_result: Callable[[OpenedChat], None]) -> None:
        self.background.run(lambda: self._opened(conversation_id), on_result)

    def open_at(self, message_id: str, on_result: Callable[[OpenedChat], None]) -> None:
        """Open the conversation holding ``message_id``, on the branch that contains it."""
        def job() -> OpenedChat:
            path = self.store.switch_to(message_id)
            return self._opened(path[0].conversation_id, message_id)

        self.background.run(job, on_result)

    def switch_version(self, message_id: str, step: int, on_result: Callable[[OpenedChat], None]) -> None:
        """Show the previous (step -1) or next (+1) version of a message, and the newest branch below it."""
        def job() -> OpenedChat:
            versions = self.store.siblings(message_id)
            index = next(i for i, m in enumerate(versions) if m.id == message_id)
            target = versions[max(0, min(len(versions) - 1, index + step))]
            self.store.switch_to(target.id)
            return self._opened(target.conversation_id)

        self.background.run(job, on_result)

    def search(self, text: str, on_result: Callable[[tuple[str, list[SearchHit]]], None]) -> None:
        self.background.run(lambda: (text, self.store.search(text)), on_result)

    # -- writes -----------------------------------------------------------------------------------
    def create_conversation(self, conv: Conversation) -> None:
        self.background.run(lambda: self.store.create_conversation(
            conv.title, conv.system_prompt, conv.model_id, conv.params, conversation_id=conv.id))

    def add_message(self, msg: Message) -> None:
        self._last_save = time.monotonic()
        self.background.run(lambda: self.store.add_message(
            msg.conversation_id, msg.role, msg.content, msg.parent_id, msg.status, msg.meta, message_id=msg.id))

    def reply_grew(self, message_id: str, parts: list[str]) -> None:
        """Called per token with the reply's pieces so far; joins and writes them only when a save is due."""
        now = time.monotonic()
        if now - self._last_save >= SAVE_EVERY_SECONDS:
            self._last_save = now
            text = "".join(parts)
            self.background.run(lambda: self.store.update_message(message_id, content=text))

    def finish_reply(self, message_id: str, text: str, status: str, meta: dict[str, Any]) -> None:
        self.background.run(lambda: self.store.update_message(message_id, content=text, status=status, meta=meta))

    def update_conversation(self, conversation_id: str, on_result: Callable[[Conversation], None] | None = None,
                            **fields: Any) -> None:
        self.background.run(lambda: self.store.update_conversation(conversation_id, **fields), on_result)

    def delete(self, conversation_id: str, on_done: Callable[[None], None] | None = None) -> None:
        self.background.run(lambda: self.store.delete_conversation(conversation_id), on_done)

    def restore(self, conversation_id: str, on_done: Callable[[None], None] | None = None) -> None:
        self.background.run(lambda: self.store.restore_conversation(conversation_id), on_done)

    def purge_deleted(self) -> None:
        self.background.run(self.store.purge_deleted)

    def fork(self, message_id: str, on_result: Callable[[OpenedChat], None]) -> None:
        self.background.run(lambda: self._opened(self.store.fork(message_id).id), on_result)

    def export(self, conversation_id: str, fmt: str, path: str, on_done: Callable[[str], None],
               on_error: Callable[[Exception], None]) -> None:
        def job() -> str:
            text = (self.store.export_markdown if fmt == "markdown" else self.store.export_json)(conversation_id)
            target = Path(path)
            partial = target.with_name(target.name + ".partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(target)  # a full disk or a crash never leaves half an export under the real name
            return path

        self.background.run(job, on_done, on_error)

    def import_file(self, path: str, on_result: Callable[[OpenedChat], None],
                    on_error: Callable[[Exception], None]) -> None:
        def job() -> OpenedChat:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidRequest(f"Could not read {path}: {exc}.",
                                     "Choose a JSON file exported from desktop_llm.") from exc
            return self._opened(self.store.import_json(text).id)

        self.background.run(job, on_result, on_error)
