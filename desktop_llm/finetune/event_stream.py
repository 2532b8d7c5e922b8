"""The JSON-lines stdout that the preview and export processes answer on (as the training process does)."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

from desktop_llm.core.errors import DesktopLLMError


class EventStream:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        data = {"event": event, **fields}
        self.stream.write((json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8"))
        self.stream.flush()
        return data


def claim_stdout() -> EventStream:
    """The real stdout for events; anything a library prints goes to stderr (the log) instead."""
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return EventStream(stream)


def run_reporting(work: Callable[[EventStream], dict[str, Any]], what: str, log_hint: str) -> int:
    """Run ``work``; end with a ``done`` event carrying its result, or an ``error`` event saying what failed."""
    out = claim_stdout()
    try:
        out.emit("done", **work(out))
        return 0
    except DesktopLLMError as exc:
        out.emit("error", code=exc.code, message=exc.message, hint=exc.hint)
        return 1
    except Exception as exc:  # noqa: BLE001 - any failure must reach the app as a message, not a traceback
        traceback.print_exc(file=sys.stderr)
        out.emit("error", code=f"{what}_failed", message=f"The {what} failed: {type(exc).__name__}: {exc}",
                 hint=log_hint)
        return 1
