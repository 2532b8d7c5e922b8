"""The llama.cpp backend applies logit bias and repetition penalties itself (engine/penalties.py):
it must sample exactly the tokens llama.cpp's own bias and penalties samplers lead to."""

from __future__ import annotations

import threading

import pytest

from desktop_llm.core.sampling import SamplingParams

# SmolLM2's end-of-text and end-of-turn tokens, banned where a reply would otherwise end too soon to tell.
NO_END = {"0": float("-inf"), "2": float("-inf")}
PROMPT = "List fruits, one per line, and keep going: apple, banana,"


def _reply(backend, params: SamplingParams, native: bool, n: int = 120, continuation=None) -> list[tuple[int, float]]:
    tokens = backend.tokenize(PROMPT, True, True)
    steps = backend.stream(tokens, params, 3, threading.Event(), continuation, native_penalties=native)
    out = []
    try:
        for step in steps:
            out.append((step.token_id, round(step.logprob, 5), [t for t, _ in step.alternatives]))
            if len(out) >= n:
                break
    finally:
        steps.close()
    return out


@pytest.mark.parametrize("fields", [
    # strong penalties over a short window: many tokens go in and out of it
    {"repeat_penalty": 1.6, "repeat_last_n": 8, "frequency_penalty": 0.7, "presence_penalty": 0.5,
     "logit_bias": NO_END},
    {"repeat_penalty": 0.8, "repeat_last_n": 64},                       # < 1 rewards repeats
    {"repeat_penalty": 1.3, "logit_bias": {"11": 5.0, "28": -3.5, "198": -100.0}},  # bias and penalties meet
    {"logit_bias": {"17": 8.0, "30": float("-inf")}, "repeat_penalty": 1.0},  # bias alone
    {"frequency_penalty": 1.2, "repeat_last_n": 3, "temperature": 0.0, "logit_bias": NO_END},  # greedy
])
def test_python_penalties_sample_what_llama_cpp_samples(llamacpp_smol, fields):
    params = SamplingParams.from_dict({"temperature": 0.9, "top_k": 50, "top_p": 0.95, "seed": 1234,
                                       "max_tokens": 200, **fields})
    ours = _reply(llamacpp_smol, params, native=False)
    theirs = _reply(llamacpp_smol, params, native=True)
    assert len(ours) >= 20
    assert ours == theirs


def test_a_chosen_continuation_counts_for_the_penalties(llamacpp_smol):
    params = SamplingParams.from_dict({"temperature": 0.7, "seed": 7, "repeat_penalty": 1.8, "repeat_last_n": 16})
    continuation = llamacpp_smol.tokenize(" cherry, cherry, cherry,", False, True)
    ours = _reply(llamacpp_smol, params, native=False, n=60, continuation=continuation)
    theirs = _reply(llamacpp_smol, params, native=True, n=60, continuation=continuation)
    assert ours == theirs


def test_a_biased_token_that_repeats_gets_both_and_its_logprob_stays_the_models(llamacpp_smol):
    # ',' (id 28) is pushed up by the bias and held back by the penalties, which grow with its count
    # in the window; the log-probabilities must still be those of the raw logits.
    params = SamplingParams.from_dict({"temperature": 0.9, "top_k": 50, "seed": 99, "repeat_penalty": 1.2,
                                       "frequency_penalty": 0.3, "presence_penalty": 0.2, "repeat_last_n": 64,
                                       "logit_bias": {"28": 6.0, **NO_END}})
    ours = _reply(llamacpp_smol, params, native=False, n=80)
    theirs = _reply(llamacpp_smol, params, native=True, n=80)
    assert sum(token == 28 for token, _, _ in ours) >= 3
    assert ours == theirs
