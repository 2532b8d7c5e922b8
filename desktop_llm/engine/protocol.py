"""The engine's wire format: one JSON object per line. See docs/engine-protocol.md.

Requests (app -> engine) carry ``id`` and ``op``; events (engine -> app) carry the ``id`` of
the request they belong to and ``event``.
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1

OPS = ("load", "unload", "generate", "next_token", "tokenize", "detokenize", "cancel", "info", "shutdown")
# Ops that use the model in memory. They may carry "model_load" (a load request's fields): the engine
# loads that model first when another is in memory, so the window and the local server can share it.
MODEL_OPS = ("generate", "next_token", "tokenize", "detokenize")
# Events that end a request; every request gets exactly one of them.
FINAL_EVENTS = ("loaded", "done", "result", "error")
EVENTS = ("progress", "token", *FINAL_EVENTS)

MAX_ALTERNATIVES = 20
# Most tokens a next_token (step mode) result lists before and after the sampler chain.
MAX_STEP_TOP = 50


def encode(message: dict[str, Any]) -> bytes:
    # ensure_ascii keeps each message on one line whatever the token text holds.
    return (json.dumps(message, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def decode(line: bytes | str) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a protocol message must be a JSON object")
    return message
