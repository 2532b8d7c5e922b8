"""What the commands share: an engine client with its log, model loading with progress."""

from __future__ import annotations

import sys
from typing import Any

from desktop_llm.core.models import ModelRef, resolve_model
from desktop_llm.core.paths import logs_dir
from desktop_llm.core.reply_stats import reply_figures
from desktop_llm.engine.client import EngineClient


def make_client() -> EngineClient:
    return EngineClient(log_path=logs_dir() / "engine.log")


def load_model(client: EngineClient, spec: str | None, backend: str, options: dict[str, Any],
               quiet: bool = False) -> tuple[ModelRef, dict[str, Any]]:
    ref = resolve_model(spec)
    if not quiet:
        print(f"Loading {ref.name} …", file=sys.stderr, flush=True)
    info = client.load(ref, backend=backend, options=options)
    if not quiet:
        print(f"Ready: {info['backend']} on {info['device']}, context {info['n_ctx']} tokens, "
              f"loaded in {info['load_seconds']:.1f} s.", file=sys.stderr, flush=True)
    return ref, info


def stats_line(done: dict[str, Any]) -> str:
    ended_early = done.get("finish_reason") != "stop" or bool(done.get("context_full"))
    figures = reply_figures(done, usage=False, finish=ended_early)
    return f"[{(done.get('usage') or {}).get('completion_tokens', 0)} tokens, " + ", ".join(figures) + "]"


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
