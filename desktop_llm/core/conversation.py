"""Conversations and messages: one ``Conversation`` shared by GUI, CLI and store.

Messages form a tree (each has a parent), so a regenerated reply or an edited question adds a
sibling instead of replacing anything; the conversation remembers which leaf is showing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MESSAGE_STATUSES = ("complete", "streaming", "stopped", "error")


@dataclass
class Message:
    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    created_at: float
    status: str = "complete"
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. tokens/s, finish reason, model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Conversation:
    id: str
    title: str
    created_at: float
    updated_at: float
    pinned: bool = False
    system_prompt: str | None = None
    model_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # SamplingParams fields that differ per chat
    current_leaf_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
