"""The local server's request log: one entry a request, for the Server page and the terminal.

An entry never holds the API key, and holds message bodies only when the user turned that on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LogEntry:
    method: str
    path: str
    status: int
    client: str
    model: str | None = None
    stream: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: float = 0.0
    error: str | None = None
    body: str | None = None  # the request body, only with "log bodies" on
    reply: str | None = None  # the reply text, only with "log bodies" on
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a terminal or a list: time, method, path, status, model, tokens, duration."""
        parts = [time.strftime("%H:%M:%S", time.localtime(self.at)), self.method, self.path, str(self.status)]
        if self.model:
            parts.append(self.model)
        if self.prompt_tokens is not None:
            parts.append(f"{self.prompt_tokens}+{self.completion_tokens or 0} tokens")
        parts.append(f"{self.duration_ms:.0f} ms")
        if self.stream:
            parts.append("stream")
        if self.error:
            parts.append(f"– {self.error}")
        return "  ".join(parts)
