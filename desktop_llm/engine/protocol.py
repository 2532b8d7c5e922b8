"""The engine's wire format: one JSON object per line. See docs/engine-protocol.md.

Requests (app -> engine) carry ``id`` and ``op``; events (engine -> app) carry the ``id`` of
the request they belong to and ``event``.
"""

from __future__ import annotations

import json
import json.scanner
import math
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


# json's C scanner, called directly: json.loads adds several Python-level steps (encoding detection,
# whitespace regexes), which cost more than the parsing itself for the short line of each token.
_scan_json = json.scanner.c_make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


def decode(line: bytes | str) -> dict[str, Any]:
    try:
        text = line.decode("ascii") if isinstance(line, bytes) else line
        message, end = _scan_json(text, 0)
        if not isinstance(message, dict) or text[end:].strip():
            raise ValueError
    except (ValueError, StopIteration):  # not ASCII, not JSON or more after it: json.loads says what is wrong
        message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a protocol message must be a JSON object")
    return message


_json_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # the C encoder json.dumps uses


_TOKEN_EVENT_KEYS = ({"event", "token_id", "text", "logprob", "alternatives"},
                     {"event", "token_id", "text", "logprob", "alternatives", "forced"})


def _plain_number(value: object) -> bool:
    # Exactly float: a numpy float's repr is not JSON. Not finite: json writes NaN / Infinity.
    return type(value) is float and math.isfinite(value)


def _alternative_json(alt: dict[str, Any]) -> str:
    return f'{{"token_id":{alt["token_id"]},"text":{_json_string(alt["text"])},"logprob":{alt["logprob"]!r}}}'


def encode_token_event(rid: str, event: dict[str, Any]) -> bytes:
    """``encode({"id": rid, **event})`` for a generate's token event: the same JSON, about 3x faster.

    It runs once per generated token, where the general encoder's cost is measurable against
    decoding a token of a small model. Anything unusual (a non-finite number, another field)
    goes through the general encoder.
    """
    alternatives = event["alternatives"]
    logprob = event["logprob"]
    if (event.keys() not in _TOKEN_EVENT_KEYS or event["event"] != "token" or event.get("forced", True) is not True
            or type(event["token_id"]) is not int or any(type(a["token_id"]) is not int for a in alternatives)
            or not all(_plain_number(v) for v in (logprob, *(a["logprob"] for a in alternatives)))):
        return encode({"id": rid, **event})
    alts = ",".join(_alternative_json(a) for a in alternatives)
    forced = ',"forced":true' if event.get("forced") is True else ""
    line = (f'{{"id":{_json_string(rid)},"event":"token","token_id":{event["token_id"]},'
            f'"text":{_json_string(event["text"])},"logprob":{logprob!r},"alternatives":[{alts}]{forced}}}\n')
    return line.encode("ascii")
