"""The llama.cpp backend decodes a reply's tokens itself (not through ``Llama.eval``); the next
prompt reuses the KV cache for the prefix it shares with what the cache holds, so the reply's
tokens must be recorded as the cache's contents."""

from __future__ import annotations

import threading

from desktop_llm.core.sampling import SamplingParams

GREEDY = SamplingParams.from_dict({"temperature": 0.0, "logit_bias": {"0": float("-inf"), "2": float("-inf")}})


def _greedy(backend, tokens: list[int], n: int) -> list[int]:
    steps = backend.stream(tokens, GREEDY, 0, threading.Event())
    out = []
    try:
        for step in steps:
            out.append(step.token_id)
            if len(out) >= n:
                break
    finally:
        steps.close()
    return out


def test_a_prompt_after_a_reply_is_answered_as_if_the_cache_were_empty(llamacpp_smol):
    backend = llamacpp_smol
    base = backend.tokenize("The three primary colours are", True, True)
    other = backend.tokenize(" not what you think: the sky is green and", False, True)
    fresh = _greedy(backend, base + other, 8)   # the cache now holds base + other
    reply = _greedy(backend, base, len(other) + 2)  # a reply to base alone takes other's positions
    assert reply[: len(other)] != other
    again = _greedy(backend, base + other, 8)   # must not reuse the reply's cache entries as if they were other
    assert again == fresh
