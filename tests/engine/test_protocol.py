"""The per-token fast encoder writes exactly what the general encoder writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desktop_llm.engine.protocol import decode, encode, encode_token_event

TEXTS = ["Hello", " world", "", "\n", 'say "hi"\\', "\u00e9t\u00e9 \u2014 \U0001f600", "\x00\x1f\x7f", "\ufffd"]


def _token(text: str, logprob: float = -1.25, alternatives: int = 0, forced: bool = False) -> dict:
    event = {"event": "token", "token_id": 42, "text": text, "logprob": logprob,
             "alternatives": [{"token_id": 7 + i, "text": TEXTS[i % len(TEXTS)], "logprob": -0.1 * i - 1e-9}
                              for i in range(alternatives)]}
    if forced:
        event["forced"] = True
    return event


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("alternatives", [0, 1, 20])
@pytest.mark.parametrize("forced", [False, True])
def test_fast_token_encoding_matches_the_general_encoder(text, alternatives, forced):
    event = _token(text, -3.0000000000000004e-05, alternatives, forced)
    line = encode_token_event("r17", event)
    assert line == encode({"id": "r17", **event})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == {"id": "r17", **event}


@pytest.mark.parametrize("event", [
    _token("x", float("-inf")),                      # JSON has no -inf: the general encoder's output stands
    _token("x", float("nan")),
    {**_token("x"), "logprob": np.float64(-1.5)},    # a numpy float's repr is not JSON
    {**_token("x"), "token_id": np.int64(3)},
    {**_token("x"), "extra": 1},
    {**_token("x"), "forced": False},
])
def test_unusual_token_events_fall_back_to_the_general_encoder(event):
    try:
        expected = encode({"id": "r1", **event})
    except TypeError:  # numpy ints are not JSON serialisable: the same error either way
        with pytest.raises(TypeError):
            encode_token_event("r1", event)
        return
    assert encode_token_event("r1", event) == expected


@pytest.mark.parametrize("line", [b'{"id":"r1","event":"done","usage":{"prompt_tokens":3}}\n',
                                  '{"id": "r1", "text": "\u00e9"}', b'{"t":"\xc3\xa9"}\n',
                                  b'  {"x":[1.5e3,null,true]}  \n'])
def test_decoding_reads_what_json_reads(line):
    assert decode(line) == json.loads(line)


@pytest.mark.parametrize("line", [b'{"a":1} {"b":2}\n', b"[1, 2]\n", b"nope\n", b'{"a":\n', b"\xff\n"])
def test_a_line_that_is_not_one_json_object_is_refused(line):
    with pytest.raises(ValueError):
        decode(line)
