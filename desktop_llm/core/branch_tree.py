"""The Playground's branches: each generation, and each "continue with this token instead", as a tree.

A branch keeps the first ``at`` tokens of its parent's text and adds its own. Clicking an
alternative at position i of a branch makes a child with ``at = i`` whose first own token is the
alternative (the engine is asked to continue after exactly those token ids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenInfo:
    token_id: int | None  # None from a remote endpoint, which does not give token ids
    text: str
    logprob: float | None  # None when the endpoint gave no probabilities
    alternatives: list[dict[str, Any]] = field(default_factory=list)  # {token_id, text, logprob}
    forced: bool = False  # chosen by the user, not drawn

    @property
    def prob(self) -> float | None:
        return None if self.logprob is None else math.exp(self.logprob)

    def is_alternative(self, alternative: dict[str, Any]) -> bool:
        """True when ``alternative`` is this token (by id; by text when ids are unknown)."""
        if self.token_id is not None and alternative.get("token_id") is not None:
            return alternative["token_id"] == self.token_id
        return alternative.get("text") == self.text

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> TokenInfo:
        token_id, logprob = event.get("token_id"), event.get("logprob")
        return cls(None if token_id is None else int(token_id), event.get("text", ""),
                   None if logprob is None else float(logprob), list(event.get("alternatives") or []),
                   bool(event.get("forced")))


@dataclass
class Branch:
    id: int
    parent: int | None
    at: int  # how many of the parent's tokens come first
    label: str
    tokens: list[TokenInfo] = field(default_factory=list)
    done: dict[str, Any] | None = None  # the engine's done event: stats, finish reason


class BranchTree:
    def __init__(self) -> None:
        self.branches: dict[int, Branch] = {}
        self._next = 0

    def new_root(self, label: str) -> Branch:
        """A fresh generation from the prompt (the tree keeps earlier ones as other roots)."""
        return self._add(None, 0, label)

    def branch_from(self, parent_id: int, position: int, token: dict[str, Any]) -> Branch:
        """A child of ``parent_id`` that keeps its first ``position`` tokens, then ``token`` (an alternative)."""
        parent = self.path(parent_id)
        if not 0 <= position < len(parent):
            raise IndexError(f"position {position} is outside the text's {len(parent)} tokens")
        shown = token.get("text", "").replace("\n", "⏎")
        was = parent[position].text.replace("\n", "⏎")
        return self._add(parent_id, position, f"at token {position + 1}: {was!r} → {shown!r}")

    def _add(self, parent: int | None, at: int, label: str) -> Branch:
        branch = Branch(self._next, parent, at, label)
        self.branches[branch.id] = branch
        self._next += 1
        return branch

    def path(self, branch_id: int) -> list[TokenInfo]:
        """Every token of the branch's text: what it keeps of its ancestors, then its own."""
        branch = self.branches[branch_id]
        if branch.parent is None:
            return list(branch.tokens)
        return self.path(branch.parent)[: branch.at] + branch.tokens

    def text(self, branch_id: int) -> str:
        return "".join(t.text for t in self.path(branch_id))

    def continuation(self, parent_id: int, position: int, token_id: int) -> list[int]:
        """Token ids the engine continues after, for a branch at ``position`` with ``token_id``."""
        return [t.token_id for t in self.path(parent_id)[:position]] + [token_id]

    def children(self, branch_id: int | None) -> list[Branch]:
        return [b for b in self.branches.values() if b.parent == branch_id]

    def clear(self) -> None:
        self.branches.clear()
        self._next = 0
