"""The engine side of the Playground: seeds, greedy picks, step mode (``next_token``) and
branching from an alternative token (``generate`` with a ``continuation``).

Most checks run through the real engine process on the bundled SmolLM2 (llama.cpp); one runs
the PyTorch backend on the same model; one compares the step-mode sampler chain (numpy) with
llama.cpp's own samplers on a synthetic logits vector.
"""

from __future__ import annotations

import ctypes
import json
import math
import threading

import llama_cpp
import numpy as np
import pytest

from desktop_llm.core.errors import InvalidRequest, UnsupportedParameter
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.generation import run_generation, run_next_token
from desktop_llm.engine.sampling_stages import explain_next_token

RAW_PROMPT = "Once upon a time, in a small village by the sea, there lived"
# The sampler with every cut-off and penalty off: what is left is the model's own distribution.
PLAIN = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}
NO_EOS = {"0": -100, "2": -100}  # SmolLM2's end-of-generation tokens, banned where a count matters


def token_events(stream) -> list[dict]:
    return list(stream)


# -- seeds and greedy ----------------------------------------------------------------------------
def test_same_seed_same_text_and_another_seed_differs(engine):
    params = {"temperature": 0.9, "seed": 1234, "max_tokens": 24, "logit_bias": NO_EOS}
    first = token_events(engine.generate(prompt=RAW_PROMPT, params=params))
    engine.generate(prompt="Something else entirely:", params={"max_tokens": 3}).result  # move the cache on
    second = token_events(engine.generate(prompt=RAW_PROMPT, params=params))
    other = token_events(engine.generate(prompt=RAW_PROMPT, params={**params, "seed": 4321}))
    assert len(first) == 24
    assert [e["token_id"] for e in first] == [e["token_id"] for e in second]
    assert "".join(e["text"] for e in first) == "".join(e["text"] for e in second)
    assert [e["token_id"] for e in first] != [e["token_id"] for e in other]


def test_temperature_zero_picks_the_most_likely_token_every_time(engine):
    events = token_events(engine.generate(prompt=RAW_PROMPT, alternatives=1,
                                          params={"temperature": 0, "repeat_penalty": 1.0, "max_tokens": 16}))
    assert len(events) == 16
    for e in events:
        assert e["token_id"] == e["alternatives"][0]["token_id"]
        assert e["logprob"] == pytest.approx(e["alternatives"][0]["logprob"])
        assert "forced" not in e


def test_greedy_step_mode_walks_the_same_path_as_greedy_generation(engine):
    params = {"temperature": 0, "max_tokens": 8}  # default penalties: step mode must count the history too
    generated = [e["token_id"] for e in engine.generate(prompt=RAW_PROMPT, params=params)]
    chosen: list[int] = []
    for _ in generated:
        step = engine.next_token(prompt=RAW_PROMPT, continuation=chosen, params=params, top=5)
        assert step["after"] == [{**step["after"][0], "prob": 1.0}]
        chosen.append(step["sampled"]["token_id"])
    assert chosen == generated


# -- step mode -----------------------------------------------------------------------------------
def test_step_mode_top_k_keeps_the_k_most_likely(engine):
    step = engine.next_token(prompt=RAW_PROMPT, params={**PLAIN, "top_k": 5}, top=20)
    before_ids = [t["token_id"] for t in step["before"]]
    assert [t["token_id"] for t in step["after"]] == before_ids[:5]
    assert {"name": "top_k", "kept": 5} in step["stages"]
    assert step["stages"][0] == {"name": "vocabulary", "kept": step["stages"][0]["kept"]}
    assert step["stages"][0]["kept"] == 49152
    assert step["kept"] == 5
    assert step["sampled"]["token_id"] in before_ids[:5]
    assert step["position"] == step["prompt_tokens"] > 5
    assert step["n_ctx"] == 4096 and step["ms"] > 0
    assert sum(t["prob"] for t in step["after"]) == pytest.approx(1.0)
    # before: the raw distribution, most likely first, prob = exp(logprob)
    assert [t["logprob"] for t in step["before"]] == sorted((t["logprob"] for t in step["before"]), reverse=True)
    for t in step["before"]:
        assert t["prob"] == pytest.approx(math.exp(t["logprob"]))


def test_step_mode_min_p_keeps_tokens_within_the_ratio_of_the_best(engine):
    step = engine.next_token(prompt=RAW_PROMPT, params={**PLAIN, "min_p": 0.2}, top=50)
    before = step["before"]
    floor = before[0]["logprob"] + math.log(0.2)
    expected = [t for t in before if t["logprob"] >= floor]
    assert len(expected) < len(before)  # the cut falls inside the list shown, so it is all of it
    assert [t["token_id"] for t in step["after"]] == [t["token_id"] for t in expected]
    total = sum(t["prob"] for t in expected)
    for got, raw in zip(step["after"], expected, strict=True):
        assert got["prob"] == pytest.approx(raw["prob"] / total, abs=1e-4)
    assert [s["name"] for s in step["stages"]] == ["vocabulary", "min_p", "temperature"]
    assert step["kept"] == len(expected)


def test_step_mode_temperature_zero_is_the_argmax(engine):
    step = engine.next_token(prompt=RAW_PROMPT, params={**PLAIN, "temperature": 0}, top=10)
    best = step["before"][0]
    assert step["sampled"]["token_id"] == best["token_id"]
    assert step["sampled"]["logprob"] == pytest.approx(best["logprob"])
    assert step["after"] == [{"token_id": best["token_id"], "text": best["text"], "prob": 1.0}]
    assert step["stages"][-1] == {"name": "greedy", "kept": 1}


def test_step_mode_draws_reproducibly_per_seed_and_position(engine):
    params = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "seed": 77}
    a = engine.next_token(prompt=RAW_PROMPT, params=params)
    b = engine.next_token(prompt=RAW_PROMPT, params=params)
    assert a["sampled"] == b["sampled"] and a["seed"] == b["seed"] == 77
    draws = {engine.next_token(prompt=RAW_PROMPT, params={**params, "seed": s})["sampled"]["token_id"]
             for s in range(6)}
    assert len(draws) > 1  # a flat distribution: six seeds do not all draw the same token


# -- step mode against llama.cpp's own samplers ------------------------------------------------
def llama_cpp_chain(logits: np.ndarray, p: SamplingParams, history: list[int]) -> dict[int, float]:
    """Apply llama.cpp's samplers (the llama.cpp backend's chain, without the draw) to ``logits``;
    return the surviving tokens and their final logits."""
    n = logits.shape[0]
    data = (llama_cpp.llama_token_data * n)()
    for i in range(n):
        data[i].id, data[i].logit, data[i].p = i, float(logits[i]), 0.0
    arr = llama_cpp.llama_token_data_array(data=ctypes.cast(data, llama_cpp.llama_token_data_p),
                                           size=n, selected=-1, sorted=False)
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: object) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if p.logit_bias:
        biases = (llama_cpp.llama_logit_bias * len(p.logit_bias))(
            *[llama_cpp.llama_logit_bias(t, b) for t, b in p.logit_bias.items()])
        add(llama_cpp.llama_sampler_init_logit_bias(n, len(p.logit_bias), biases))
    add(llama_cpp.llama_sampler_init_penalties(n, p.repeat_last_n, p.repeat_penalty, p.frequency_penalty,
                                               p.presence_penalty))
    if p.top_k > 0:
        add(llama_cpp.llama_sampler_init_top_k(p.top_k))
    add(llama_cpp.llama_sampler_init_typical(p.typical_p, 1))
    add(llama_cpp.llama_sampler_init_top_p(p.top_p, 1))
    add(llama_cpp.llama_sampler_init_min_p(p.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(p.temperature))
    try:
        for t in history:
            llama_cpp.llama_sampler_accept(chain, t)
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(arr))
        return {arr.data[i].id: arr.data[i].logit for i in range(arr.size) if math.isfinite(arr.data[i].logit)}
    finally:
        llama_cpp.llama_sampler_free(chain)


SYNTHETIC = np.random.default_rng(20240611).standard_normal(1000).astype(np.float32) * 3
_TOP = [int(i) for i in np.argsort(-SYNTHETIC)[:8]]
HISTORY = [_TOP[0], _TOP[0], _TOP[1], _TOP[3], 17, _TOP[2], 17, 400]


@pytest.mark.parametrize("changes", [
    {"top_k": 40},  # the defaults: top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1
    {"top_k": 0, "top_p": 0.8, "min_p": 0.0, "repeat_penalty": 1.0},
    {"top_k": 0, "top_p": 1.0, "min_p": 0.1, "repeat_penalty": 1.0},
    {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 0.7, "repeat_penalty": 1.0},
    {"top_k": 100, "typical_p": 0.9, "top_p": 0.9, "min_p": 0.02, "temperature": 0.6},
    {"top_k": 50, "repeat_penalty": 1.4, "repeat_last_n": 4, "frequency_penalty": 0.3, "presence_penalty": 0.2,
     "logit_bias": {_TOP[6]: 4.0, _TOP[0]: -2.0}, "top_p": 0.99, "temperature": 1.3},
], ids=["defaults", "top_p", "min_p", "typical", "all cut-offs", "bias and penalties"])
def test_step_mode_chain_keeps_what_llama_cpp_keeps(changes):
    params = SamplingParams(**changes)
    ours = explain_next_token(SYNTHETIC, params, HISTORY, 1000, np.random.default_rng(0))
    theirs = llama_cpp_chain(SYNTHETIC, params, HISTORY)
    assert {t for t, _ in ours["after"]} == set(theirs)
    assert ours["kept"] == len(theirs)
    # And the same final distribution: llama.cpp's surviving logits (after temperature), softmaxed.
    logits = np.array([theirs[t] for t, _ in ours["after"]], dtype=np.float64)
    probs = np.exp(logits - logits.max())
    np.testing.assert_allclose([p for _, p in ours["after"]], probs / probs.sum(), atol=1e-5)


def test_step_mode_chain_matches_the_torch_backends_sampler():
    """Draws of ``TorchBackend.sample`` (the PyTorch backend's sampler) land only on the tokens the
    step-mode chain keeps, about as often as its ``after`` distribution says."""
    import torch

    from desktop_llm.engine.backends.torch import TorchBackend

    params = SamplingParams(top_k=50, top_p=0.9, min_p=0.05, temperature=0.8, repeat_penalty=1.2)
    ours = explain_next_token(SYNTHETIC, params, HISTORY, 1000, np.random.default_rng(0))
    expected = dict(ours["after"])
    generator = torch.Generator().manual_seed(5)
    sampler = TorchBackend()
    logits = torch.from_numpy(SYNTHETIC.copy())
    n = 3000
    draws = [sampler.sample(logits, params, HISTORY, generator) for _ in range(n)]
    assert set(draws) <= set(expected)
    for token, prob in expected.items():
        assert draws.count(token) / n == pytest.approx(prob, abs=0.03)


# -- structured output ---------------------------------------------------------------------------
def test_json_schema_reply_is_a_person(engine):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    done = engine.generate(messages=[{"role": "user", "content": "Describe a person with a name and an age."}],
                           params={"json_schema": schema, "max_tokens": 80, "seed": 3}).result
    value = json.loads(done["text"])
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


# -- branching -----------------------------------------------------------------------------------
def test_branching_from_an_alternative_token(engine):
    greedy = {"temperature": 0, "repeat_penalty": 1.0, "max_tokens": 6}
    first = token_events(engine.generate(prompt=RAW_PROMPT, params=greedy, alternatives=5))
    t0, t1 = first[0]["token_id"], first[1]["token_id"]
    alt = next(a for a in first[2]["alternatives"][1:] if a["token_id"] != first[2]["token_id"])

    stream = engine.generate(prompt=RAW_PROMPT, params={**greedy, "max_tokens": 4, "logit_bias": NO_EOS},
                             alternatives=5, continuation=[t0, t1, alt["token_id"]])
    events = token_events(stream)
    done = stream.result
    assert events[0]["token_id"] == alt["token_id"] and events[0]["forced"] is True
    assert events[0]["logprob"] == pytest.approx(alt["logprob"], abs=1e-3)
    assert events[0]["alternatives"][0]["token_id"] == first[2]["token_id"]  # what the model preferred
    assert all("forced" not in e for e in events[1:])
    assert done["text"].startswith(alt["text"])
    assert done["usage"]["completion_tokens"] == len(events) == 4  # the chosen token counts as generated

    step = engine.next_token(prompt=RAW_PROMPT, continuation=[t0, t1], params=PLAIN, top=10)
    shown = {t["token_id"]: t for t in step["before"]}
    assert alt["token_id"] in shown
    assert shown[alt["token_id"]]["logprob"] == pytest.approx(alt["logprob"], abs=1e-3)
    assert step["position"] == step["prompt_tokens"] + 2 == done["usage"]["prompt_tokens"] + 2


def test_a_forced_token_counts_toward_max_tokens_and_stop_sequences(engine):
    tokens = engine.tokenize(" Hello")["tokens"]
    one = engine.generate(prompt=RAW_PROMPT, params={"max_tokens": 1}, continuation=tokens).result
    assert one["text"] == " Hello" and one["usage"]["completion_tokens"] == 1
    assert one["finish_reason"] == "length"
    stopped = engine.generate(prompt=RAW_PROMPT, params={"max_tokens": 10, "stop": ["ell"]},
                              continuation=tokens).result
    assert stopped["finish_reason"] == "stop" and stopped["text"] == " H"


# -- PyTorch backend -----------------------------------------------------------------------------
def test_torch_step_mode_agrees_with_llama_cpp(engine, torch_smol):
    backend = torch_smol.backend
    prompt = "Paris is the capital of"
    request = {"prompt": prompt, "params": PLAIN, "top": 5}
    ours = run_next_token(backend, request, threading.Event())
    theirs = engine.next_token(prompt=prompt, params=PLAIN, top=5)
    assert ours["prompt_tokens"] == theirs["prompt_tokens"]
    # Same top choice (a clear lead here) and near the same probabilities: the backends differ by
    # llama.cpp's quantized activations (see test_backend_parity.py), by ~0.01-0.2 in log-prob.
    assert ours["before"][0]["token_id"] == theirs["before"][0]["token_id"]
    assert ours["before"][0]["logprob"] - ours["before"][1]["logprob"] > 0.5
    ids_t = [t["token_id"] for t in ours["before"]]
    ids_l = [t["token_id"] for t in theirs["before"]]
    assert len(set(ids_t) & set(ids_l)) >= 4
    llama_lp = {t["token_id"]: t["logprob"] for t in theirs["before"]}
    for t in ours["before"]:
        if t["token_id"] in llama_lp:
            assert t["logprob"] == pytest.approx(llama_lp[t["token_id"]], abs=0.4)

    # Warm cache (the last request's tokens plus one) gives what a fresh evaluation gives.
    best = ours["before"][0]["token_id"]
    warm = run_next_token(backend, {**request, "continuation": [best]}, threading.Event())
    cold = backend.next_token_logits(backend.tokenize(prompt, True, True) + [best])
    cold_lp = cold.astype(np.float64) - np.log(np.sum(np.exp(cold.astype(np.float64) - cold.max()))) - cold.max()
    assert warm["before"][0]["token_id"] == int(np.argmax(cold))
    assert warm["before"][0]["logprob"] == pytest.approx(float(cold_lp.max()), abs=1e-4)

    # Branching on torch: the chosen token comes first, marked, with its step-mode log-prob.
    alt = ours["before"][1]
    events: list[dict] = []
    done = run_generation(backend, {"prompt": prompt, "continuation": [alt["token_id"]], "alternatives": 2,
                                    "params": {"max_tokens": 3, "temperature": 0}},
                          threading.Event(), events.append)
    assert events[0]["token_id"] == alt["token_id"] and events[0]["forced"] is True
    assert events[0]["logprob"] == pytest.approx(alt["logprob"], abs=1e-4)
    assert done["text"].startswith(alt["text"]) and done["usage"]["completion_tokens"] <= 3


# -- bad input -----------------------------------------------------------------------------------
def test_bad_continuations_and_step_parameters_are_refused(engine):
    with pytest.raises(InvalidRequest, match="1000000"):
        engine.generate(prompt=RAW_PROMPT, continuation=[1, 1_000_000]).result
    with pytest.raises(InvalidRequest, match="1000000"):
        engine.next_token(prompt=RAW_PROMPT, continuation=[1_000_000])
    with pytest.raises(InvalidRequest, match="grammar or JSON schema"):
        engine.generate(prompt=RAW_PROMPT, continuation=[1],
                        params={"grammar": 'root ::= "yes"'}).result
    with pytest.raises(UnsupportedParameter, match="[Ss]tep mode") as info:
        engine.next_token(prompt=RAW_PROMPT, params={"mirostat_mode": 1})
    assert "normal generation" in info.value.hint
    with pytest.raises(UnsupportedParameter):
        engine.next_token(prompt=RAW_PROMPT, params={"json_schema": {"type": "object"}})
    for empty in (lambda: engine.generate(prompt="").result, lambda: engine.next_token(prompt="")):
        with pytest.raises(InvalidRequest, match="empty"):
            empty()
    with pytest.raises(InvalidRequest, match="top"):
        engine.next_token(prompt=RAW_PROMPT, top=51)
    # The engine is still fine afterwards.
    assert engine.next_token(prompt=RAW_PROMPT, top=1)["after"]


def test_tokenize_a_chat_counts_what_generate_feeds_the_model(engine):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    shown = engine.tokenize_messages(messages)
    assert "".join(shown["pieces"]).startswith("<|im_start|>system\nBe brief.")
    assert "".join(shown["pieces"]).endswith("<|im_start|>assistant\n")
    done = engine.generate(messages=messages, params={"max_tokens": 1}).result
    assert done["usage"]["prompt_tokens"] == len(shown["tokens"])
