"""Generation through the real engine process with the bundled SmolLM2 (llama.cpp backend)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from desktop_llm.core.errors import InvalidRequest

# "Still works" checks count tokens: SmolLM2's end-of-generation tokens (0, 2) are banned so that
# a randomly sampled reply cannot end early.
NO_EOS = {"logit_bias": {"0": -100, "2": -100}}
CHAT = [{"role": "user", "content": "Tell me a long story about a dragon who learns to bake bread."}]


def test_reply_streams_token_by_token(engine):
    stream = engine.generate(messages=CHAT, params={"max_tokens": 24, "seed": 3})
    arrivals, texts = [], []
    for event in stream:
        arrivals.append(time.perf_counter())
        texts.append(event["text"])
        assert isinstance(event["token_id"], int) and event["logprob"] <= 0
    done = stream.result
    assert len(texts) == done["usage"]["completion_tokens"] == 24
    assert "".join(texts) == done["text"] and done["text"].strip()
    assert arrivals[-1] - arrivals[0] > 0.01  # tokens arrive over time, not in one lump at the end
    assert done["finish_reason"] == "length"
    assert done["ttft_ms"] > 0 and done["tokens_per_second"] > 0
    assert done["usage"]["prompt_tokens"] > 10


def test_same_seed_gives_same_text_and_other_seed_differs(engine):
    params = {"max_tokens": 30, "seed": 1234, "temperature": 1.0}
    first = engine.generate(messages=CHAT, params=params).result["text"]
    # Something else in between, so the second run cannot just replay a cached state.
    engine.generate(prompt="Unrelated text about the weather", params={"max_tokens": 5}).result
    second = engine.generate(messages=CHAT, params=params).result["text"]
    other = engine.generate(messages=CHAT, params={**params, "seed": 99}).result["text"]
    assert first == second
    assert first != other


def test_stop_sequence_stops_and_is_not_shown(engine):
    done = engine.generate(prompt="Counting: 1, 2, 3, 4,", params={"temperature": 0, "max_tokens": 40,
                                                                   "stop": [" 9"]}).result
    assert done["finish_reason"] == "stop" and done["stop_sequence"] == " 9"
    assert "8" in done["text"] and "9" not in done["text"]
    assert done["usage"]["completion_tokens"] < 40


def test_json_schema_reply_parses_and_validates(engine):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                               "pets": {"type": "array", "items": {"type": "string"}}},
              "required": ["name", "age", "pets"]}
    done = engine.generate(messages=[{"role": "user", "content": "Describe a person as JSON."}],
                           params={"json_schema": schema, "max_tokens": 120, "seed": 5}).result
    value = json.loads(done["text"])
    assert set(value) == {"name", "age", "pets"}
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    assert all(isinstance(p, str) for p in value["pets"])


def test_gbnf_grammar_constrains_reply(engine):
    grammar = 'root ::= ("yes" | "no") "."'
    done = engine.generate(messages=[{"role": "user", "content": "Is the sky blue?"}],
                           params={"grammar": grammar, "max_tokens": 10}).result
    assert done["text"] in ("yes.", "no.")


@pytest.mark.parametrize("mode", [1, 2])
def test_mirostat_samples_reproducibly(engine, mode):
    params = {"mirostat_mode": mode, "mirostat_tau": 3.0, "seed": 11, "max_tokens": 20}
    first = engine.generate(messages=CHAT, params=params).result
    assert first["usage"]["completion_tokens"] > 0 and first["text"].strip()
    assert engine.generate(messages=CHAT, params=params).result["text"] == first["text"]


def test_logit_bias_bans_a_token(engine):
    prompt = "The capital of France is"
    plain = next(iter(engine.generate(prompt=prompt, params={"temperature": 0, "max_tokens": 1})))
    banned = engine.generate(prompt=prompt, params={"temperature": 0, "max_tokens": 1,
                                                    "logit_bias": {str(plain["token_id"]): -100}})
    assert next(iter(banned))["token_id"] != plain["token_id"]


def test_alternatives_match_full_softmax_over_same_logits(engine, bundled_ref):
    """Top-20 from a token event equals the top of a full softmax computed separately in float64."""
    from desktop_llm.engine.backends.llamacpp import LlamaCppBackend

    prompt = "The three primary colours are"
    event = next(iter(engine.generate(prompt=prompt, params={"temperature": 0, "max_tokens": 1}, alternatives=20)))

    backend = LlamaCppBackend()
    backend.load(bundled_ref, {}, lambda *_: None)
    try:
        tokens = backend.tokenize(prompt, add_special=True, parse_special=True)
        backend._eval_prompt(tokens, threading.Event())
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(backend.llm._ctx.ctx, -1),
                                       shape=(backend._n_vocab,)).astype(np.float64)
    finally:
        backend.unload()
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")[:20]

    alts = event["alternatives"]
    assert len(alts) == 20
    assert [a["token_id"] for a in alts] == [int(i) for i in order]
    for alt in alts:
        assert alt["logprob"] == pytest.approx(np.log(probs[alt["token_id"]]), abs=2e-3)
    assert event["token_id"] == int(order[0])  # temperature 0 picks the most likely token
    assert event["logprob"] == pytest.approx(np.log(probs[event["token_id"]]), abs=2e-3)
    assert alts[0]["text"] == event["text"]


def test_alternatives_count_is_checked(engine):
    with pytest.raises(InvalidRequest, match="alternatives"):
        engine.generate(prompt="Hi", alternatives=21).result


def test_cancel_mid_reply_stops_within_a_token(engine):
    stream = engine.generate(messages=CHAT, params={"max_tokens": 400, "seed": 1})
    seen = 0
    for _event in stream:
        seen += 1
        if seen == 5:
            stream.cancel()
    done = stream.result
    assert done["finish_reason"] == "cancelled"
    assert not done.get("killed")
    assert done["usage"]["completion_tokens"] <= 7  # the token in flight, at most one more
    assert engine.generate(prompt="Hello", params={"max_tokens": 3, **NO_EOS}).result["usage"]["completion_tokens"] == 3


def test_cancel_during_prompt_processing(engine):
    pid = engine.pid
    long_prompt = " ".join(f"item{i}" for i in range(1000))  # ~3,800 tokens: seconds of prompt processing
    stream = engine.generate(prompt=long_prompt, params={"max_tokens": 5})
    time.sleep(0.3)
    asked = time.perf_counter()
    stream.cancel()
    done = stream.result
    took = time.perf_counter() - asked
    assert done["finish_reason"] == "cancelled"
    assert done["usage"]["completion_tokens"] == 0
    assert not done.get("killed") and engine.pid == pid  # llama.cpp's abort callback, no restart
    assert took < 2.0
    # The model still answers correctly afterwards (the aborted KV cache was not reused).
    again = engine.generate(prompt="The capital of France is", params={"temperature": 0, "max_tokens": 3})
    assert "Paris" in again.result["text"]


def test_tokenize_and_detokenize_round_trip(engine):
    result = engine.tokenize("Hello, wörld! <|im_start|>")
    assert result["tokens"][-1] == 1  # the special token is parsed as one token
    assert "".join(result["pieces"]) == "Hello, wörld! <|im_start|>"
    assert engine.detokenize(result["tokens"]) == "Hello, wörld! <|im_start|>"


def test_info_reports_the_loaded_model(engine, bundled_ref):
    info = engine.info()
    assert info["model"]["id"] == bundled_ref.id
    assert info["load"]["backend"] == "llamacpp" and info["load"]["n_ctx"] == 4096


def test_long_tokens_are_not_lost(engine):
    """Some tokens are over 32 bytes (64 dashes, a newline and 32 spaces); their text must survive."""
    text = "x" + "-" * 64 + "y\n" + " " * 32 + "z"
    result = engine.tokenize(text)
    assert len(result["tokens"]) < 10  # the long runs really are single tokens
    assert "".join(result["pieces"]) == text
    assert engine.detokenize(result["tokens"]) == text
