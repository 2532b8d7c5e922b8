"""How a finished generation is summed up for people: the one wording shared by the chat status bar,
the playground, the compare columns and the terminal.

A done event (docs/engine-protocol.md) carries usage, time to first token, tokens per second, the
finish reason and the seed; each view picks the figures it has room for.
"""

from __future__ import annotations

from typing import Any

FINISH_TEXT = {"length": "max tokens reached", "stop": "end of text", "cancelled": "stopped"}


def finish_text(done: dict[str, Any]) -> str:
    """Why the reply ended, in words; a full context window says so, as it is why the limit was hit."""
    reason = done.get("finish_reason") or "?"
    if done.get("context_full"):
        return "context full"
    return FINISH_TEXT.get(reason, reason)


def reply_figures(done: dict[str, Any], *, usage: bool = True, finish: bool = True,
                  seed: bool = False) -> list[str]:
    """The figures of one reply, in reading order; the caller joins them as it likes."""
    parts: list[str] = []
    counts = done.get("usage") or {}
    if usage:
        parts += [f"{counts.get('prompt_tokens', '?')} prompt tokens",
                  f"{counts.get('completion_tokens', '?')} generated"]
    ttft = done.get("ttft_ms")
    speed = done.get("tokens_per_second")
    parts.append(f"first token {ttft:.0f} ms" if isinstance(ttft, (int, float)) else "first token –")
    parts.append(f"{speed:.1f} tokens/s" if isinstance(speed, (int, float)) and speed else "– tokens/s")
    if finish:
        parts.append(finish_text(done))
    if seed and done.get("seed") is not None:
        parts.append(f"seed {done['seed']}")
    return parts
