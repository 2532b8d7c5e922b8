"""Conversations to and from files: JSON (the whole tree, for import) and Markdown (the branch shown)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from desktop_llm.core.conversation import MESSAGE_STATUSES, Conversation, Message
from desktop_llm.core.errors import InvalidRequest

FORMAT = "desktop_llm.conversation"
FORMAT_VERSION = 1
_ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}


def to_json(conv: Conversation, messages: list[Message]) -> str:
    """Every message of the conversation (all versions and branches), with the branch shown."""
    data = {"format": FORMAT, "version": FORMAT_VERSION, "conversation": conv.to_dict(),
            "messages": [m.to_dict() for m in messages]}
    return json.dumps(data, ensure_ascii=False, indent=1)


def to_markdown(conv: Conversation, path: list[Message]) -> str:
    when = datetime.fromtimestamp(conv.updated_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {conv.title}", "", f"*{when}" + (f" · {conv.model_id}" if conv.model_id else "") + "*", ""]
    if conv.system_prompt:
        lines += ["**System prompt:**", "", conv.system_prompt, ""]
    for m in path:
        lines += [f"### {_ROLE_TITLES.get(m.role, m.role)}", "", m.content, ""]
    return "\n".join(lines)


def parse_json(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check an exported conversation; return its conversation fields and its messages, parents first."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"This file is not valid JSON (line {exc.lineno}: {exc.msg}).",
                             "Import a file exported by desktop_llm as JSON.") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidRequest("This JSON file is not a desktop_llm conversation export.",
                             "Import a file exported by desktop_llm as JSON.")
    if not isinstance(data.get("version"), int) or data["version"] > FORMAT_VERSION:
        raise InvalidRequest(f"This export has format version {data.get('version')}, newer than this app reads.",
                             "Update the app to import it.")
    conv, messages = data.get("conversation"), data.get("messages")
    if not isinstance(conv, dict) or not isinstance(messages, list):
        raise InvalidRequest("The export is missing its conversation or its messages.")
    ids = set()
    for i, m in enumerate(messages, 1):
        ok = (isinstance(m, dict) and isinstance(m.get("id"), str) and isinstance(m.get("content"), str)
              and m.get("role") in _ROLE_TITLES and m.get("status", "complete") in MESSAGE_STATUSES)
        if not ok:
            raise InvalidRequest(f"Message {i} of the export is malformed (needs id, role and text content).")
        ids.add(m["id"])
    ordered: list[dict[str, Any]] = []
    placed: set[str | None] = {None}
    pending = list(messages)
    while pending:  # parents before children, whatever order the file has
        ready = [m for m in pending if m.get("parent_id") in placed]
        if not ready:
            raise InvalidRequest("The export's messages point to parents that are not in it.")
        for m in ready:
            ordered.append(m)
            placed.add(m["id"])
        pending = [m for m in pending if m["id"] not in placed]
    return conv, ordered
