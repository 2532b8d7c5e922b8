"""The chat history: SQLite in WAL mode, numbered migrations, messages as a tree, FTS5 search.

One connection, used under a lock, so the store can be handed to a background thread (the GUI
never touches the disk on its own thread). Every write is its own transaction: a process killed
at any moment leaves a database that opens and holds everything up to the last write.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_llm.core.conversation import MESSAGE_STATUSES, Conversation, Message
from desktop_llm.core.errors import DesktopLLMError, InvalidRequest
from desktop_llm.core.export import parse_json, to_json, to_markdown


class StoreError(DesktopLLMError):
    code = "store_error"


def _m001_initial() -> str:
    return """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            pinned INTEGER NOT NULL DEFAULT 0,
            system_prompt TEXT,
            model_id TEXT,
            params_json TEXT NOT NULL DEFAULT '{}',
            current_leaf_id TEXT,
            deleted_at REAL
        );
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'complete',
            meta_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX messages_by_conversation ON messages(conversation_id, created_at);
        CREATE INDEX messages_by_parent ON messages(parent_id);
        CREATE INDEX conversations_by_activity ON conversations(deleted_at, pinned, updated_at);
        CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='rowid',
                                                     tokenize='unicode61 remove_diacritics 2');
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content);
        END;
    """


# Numbered migrations (each returns its SQL), applied in order, each in one transaction with the
# PRAGMA user_version that records it. Never edit a released migration: add the next one.
MIGRATIONS: list[Callable[[], str]] = [_m001_initial]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class SearchHit:
    conversation_id: str
    conversation_title: str
    message_id: str
    role: str
    snippet: str  # the matching text with the hits between [ and ]


def _new_id() -> str:
    return uuid.uuid4().hex


class ChatStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: never corrupt; a power cut (not a crash) may lose the last commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"The chat history at {self.path} cannot be opened: {exc}.",
                             "Move the file aside to start a fresh history; the app will not overwrite it.") from exc

    # -- schema -----------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        with self._lock:
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(f"The chat history was written by a newer version of the app (schema {version}).",
                                 "Update the app to open it.")
            for number in range(version, SCHEMA_VERSION):
                try:
                    self._db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[number]()};"
                                           f" PRAGMA user_version = {number + 1}; COMMIT;")
                except sqlite3.Error:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations ----------------------------------------------------------------------------
    @staticmethod
    def _conversation(row: sqlite3.Row) -> Conversation:
        return Conversation(row["id"], row["title"], row["created_at"], row["updated_at"], bool(row["pinned"]),
                            row["system_prompt"], row["model_id"], json.loads(row["params_json"]),
                            row["current_leaf_id"])

    def create_conversation(self, title: str = "New chat", system_prompt: str | None = None,
                            model_id: str | None = None, params: dict[str, Any] | None = None,
                            conversation_id: str | None = None) -> Conversation:
        """``conversation_id``: a caller-made id (the window names a chat before the disk write lands)."""
        now = time.time()
        conv = Conversation(conversation_id or _new_id(), title, now, now, False, system_prompt, model_id,
                            dict(params or {}))
        with self._transaction() as db:
            db.execute("INSERT INTO conversations (id, title, created_at, updated_at, system_prompt, model_id,"
                       " params_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (conv.id, title, now, now, system_prompt, model_id, json.dumps(conv.params)))
        return conv

    def get_conversation(self, conversation_id: str) -> Conversation:
        with self._lock:
            row = self._db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise InvalidRequest(f"No conversation {conversation_id}.")
        return self._conversation(row)

    def list_conversations(self) -> list[Conversation]:
        """Pinned first, then by last activity, newest first; deleted ones are left out."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM conversations WHERE deleted_at IS NULL"
                                    " ORDER BY pinned DESC, updated_at DESC").fetchall()
        return [self._conversation(r) for r in rows]

    def update_conversation(self, conversation_id: str, **fields: Any) -> Conversation:
        allowed = {"title", "pinned", "system_prompt", "model_id", "params", "current_leaf_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidRequest(f"Cannot change {', '.join(sorted(unknown))} of a conversation.")
        columns = {("params_json" if k == "params" else k): (json.dumps(v) if k == "params" else v)
                   for k, v in fields.items()}
        if "pinned" in columns:
            columns["pinned"] = int(bool(columns["pinned"]))
        sets = ", ".join(f"{c} = ?" for c in columns)
        with self._transaction() as db:
            db.execute(f"UPDATE conversations SET {sets} WHERE id = ?", (*columns.values(), conversation_id))
        return self.get_conversation(conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        """Moves it out of sight; ``restore_conversation`` undoes it until ``purge_deleted``."""
        with self._transaction() as db:
            db.execute("UPDATE conversations SET deleted_at = ? WHERE id = ?", (time.time(), conversation_id))

    def restore_conversation(self, conversation_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?", (conversation_id,))

    def purge_deleted(self) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM conversations WHERE deleted_at IS NOT NULL").rowcount

    # -- messages ---------------------------------------------------------------------------------
    @staticmethod
    def _message(row: sqlite3.Row) -> Message:
        return Message(row["id"], row["conversation_id"], row["parent_id"], row["role"], row["content"],
                       row["created_at"], row["status"], json.loads(row["meta_json"]))

    def add_message(self, conversation_id: str, role: str, content: str, parent_id: str | None,
                    status: str = "complete", meta: dict[str, Any] | None = None,
                    message_id: str | None = None) -> Message:
        """Add a message under ``parent_id`` (None: the first message) and show it as the current leaf."""
        if status not in MESSAGE_STATUSES:
            raise InvalidRequest(f"Unknown message status {status!r}.")
        now = time.time()
        msg = Message(message_id or _new_id(), conversation_id, parent_id, role, content, now, status,
                      dict(meta or {}))
        with self._transaction() as db:
            db.execute("INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, status,"
                       " meta_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (msg.id, conversation_id, parent_id, role, content, now, status, json.dumps(msg.meta)))
            db.execute("UPDATE conversations SET updated_at = ?, current_leaf_id = ? WHERE id = ?",
                       (now, msg.id, conversation_id))
        return msg

    def update_message(self, message_id: str, content: str | None = None, status: str | None = None,
                       meta: dict[str, Any] | None = None) -> None:
        """Used while a reply streams: each call is one small committed write."""
        columns: dict[str, Any] = {}
        if content is not None:
            columns["content"] = content
        if status is not None:
            if status not in MESSAGE_STATUSES:
                raise InvalidRequest(f"Unknown message status {status!r}.")
            columns["status"] = status
        if meta is not None:
            columns["meta_json"] = json.dumps(meta)
        if not columns:
            return
        sets = ", ".join(f"{c} = ?" for c in columns)
        with self._transaction() as db:
            db.execute(f"UPDATE messages SET {sets} WHERE id = ?", (*columns.values(), message_id))

    def get_message(self, message_id: str) -> Message:
        with self._lock:
            row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise InvalidRequest(f"No message {message_id}.")
        return self._message(row)

    def path_to(self, leaf_id: str | None) -> list[Message]:
        """The messages from the first one down to ``leaf_id``: what the conversation shows."""
        if leaf_id is None:
            return []
        with self._lock:
            rows = self._db.execute("""
                WITH RECURSIVE up(id, depth) AS (
                    SELECT ?, 0
                    UNION ALL
                    SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id
                    WHERE m.parent_id IS NOT NULL)
                SELECT m.* FROM up JOIN messages m ON m.id = up.id ORDER BY up.depth DESC""",
                                    (leaf_id,)).fetchall()
        return [self._message(r) for r in rows]

    def current_path(self, conversation_id: str) -> list[Message]:
        return self.path_to(self.get_conversation(conversation_id).current_leaf_id)

    def siblings(self, message_id: str) -> list[Message]:
        """The versions of a message (same parent), oldest first: what ‹ 2/3 › switches between."""
        msg = self.get_message(message_id)
        with self._lock:
            if msg.parent_id is None:
                rows = self._db.execute("SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS NULL"
                                        " ORDER BY created_at, rowid", (msg.conversation_id,)).fetchall()
            else:
                rows = self._db.execute("SELECT * FROM messages WHERE parent_id = ? ORDER BY created_at, rowid",
                                        (msg.parent_id,)).fetchall()
        return [self._message(r) for r in rows]

    def version_info(self, conversation_id: str) -> dict[str, tuple[int, int]]:
        """For each message that has other versions: (its number, how many), numbered oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, parent_id FROM messages WHERE conversation_id = ?"
                                    " ORDER BY created_at, rowid", (conversation_id,)).fetchall()
        groups: dict[str | None, list[str]] = {}
        for row in rows:
            groups.setdefault(row["parent_id"], []).append(row["id"])
        return {mid: (i + 1, len(ids)) for ids in groups.values() if len(ids) > 1 for i, mid in enumerate(ids)}

    def latest_leaf_under(self, message_id: str) -> str:
        """Follow the newest child down from ``message_id``: where switching to a version lands."""
        current = message_id
        with self._lock:
            while True:
                row = self._db.execute("SELECT id FROM messages WHERE parent_id = ? ORDER BY created_at DESC,"
                                       " rowid DESC LIMIT 1", (current,)).fetchone()
                if row is None:
                    return current
                current = row["id"]

    def switch_to(self, message_id: str) -> list[Message]:
        """Show the branch through ``message_id`` (down its newest replies); returns the new path."""
        msg = self.get_message(message_id)
        leaf = self.latest_leaf_under(message_id)
        with self._transaction() as db:
            db.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (leaf, msg.conversation_id))
        return self.path_to(leaf)

    def fork(self, message_id: str, title: str | None = None) -> Conversation:
        """A new conversation holding the path up to ``message_id``; the original is untouched."""
        msg = self.get_message(message_id)
        source = self.get_conversation(msg.conversation_id)
        conv = self.create_conversation(title or f"{source.title} (fork)", source.system_prompt, source.model_id,
                                        source.params)
        parent = None
        for m in self.path_to(message_id):
            parent = self.add_message(conv.id, m.role, m.content, parent.id if parent else None, m.status,
                                      m.meta)
        return self.get_conversation(conv.id)

    def all_messages(self, conversation_id: str) -> list[Message]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, rowid",
                                    (conversation_id,)).fetchall()
        return [self._message(r) for r in rows]

    def export_json(self, conversation_id: str) -> str:
        return to_json(self.get_conversation(conversation_id), self.all_messages(conversation_id))

    def export_markdown(self, conversation_id: str) -> str:
        return to_markdown(self.get_conversation(conversation_id), self.current_path(conversation_id))

    def import_json(self, text: str) -> Conversation:
        """A new conversation from an export (new ids, same tree and shown branch), in one transaction."""
        fields, messages = parse_json(text)
        now = time.time()
        conv_id = _new_id()
        new_ids = {m["id"]: _new_id() for m in messages}
        with self._transaction() as db:
            db.execute("INSERT INTO conversations (id, title, created_at, updated_at, pinned, system_prompt,"
                       " model_id, params_json, current_leaf_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (conv_id, str(fields.get("title") or "Imported chat"), fields.get("created_at", now),
                        fields.get("updated_at", now), int(bool(fields.get("pinned"))), fields.get("system_prompt"),
                        fields.get("model_id"), json.dumps(fields.get("params") or {}),
                        new_ids.get(fields.get("current_leaf_id"))))
            db.executemany("INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at,"
                           " status, meta_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(new_ids[m["id"]], conv_id, new_ids.get(m.get("parent_id")), m["role"], m["content"],
                             m.get("created_at", now), m.get("status", "complete"), json.dumps(m.get("meta") or {}))
                            for m in messages])
        return self.get_conversation(conv_id)

    # -- search -----------------------------------------------------------------------------------
    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Full-text search over every message, newest first; each word must match (the last as a prefix).

        Newest first is what a chat history wants, and FTS5 streams matches in that order without
        scoring every hit, so a common word over 100,000 messages still answers at once.
        """
        words = [w.replace('"', '""') for w in text.split()]
        if not words:
            return []
        query = " ".join(f'"{w}"' for w in words[:-1]) + (" " if len(words) > 1 else "") + f'"{words[-1]}"*'
        with self._lock:
            rows = self._db.execute("""
                SELECT m.id, m.role, m.conversation_id, c.title,
                       snippet(messages_fts, 0, '[', ']', '…', 12) AS snip
                FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid
                JOIN conversations c ON c.id = m.conversation_id
                WHERE messages_fts MATCH ? AND c.deleted_at IS NULL
                ORDER BY messages_fts.rowid DESC LIMIT ?""", (query, limit)).fetchall()
        return [SearchHit(r["conversation_id"], r["title"], r["id"], r["role"], r["snip"]) for r in rows]

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
