"""The local server through the official openai client, on the bundled model."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.server.conftest import KEY

GREEDY = {"temperature": 0, "seed": 7}


def test_lists_the_library_models(oai):
    ids = [m.id for m in oai.models.list().data]
    assert any(i.startswith("bundled:") for i in ids)
    assert oai.models.retrieve(ids[0]).id == ids[0]
    bundled = next(m for m in oai.models.list().data if m.id.startswith("bundled:")).to_dict()
    assert bundled["context_length"] == 4096  # what it is served with (Settings' context), not its training length


def test_chat_without_and_with_streaming_gives_the_same_reply(oai, model_id):
    messages = [{"role": "user", "content": "Name three colours."}]
    whole = oai.chat.completions.create(model=model_id, messages=messages, max_tokens=20, **GREEDY)
    reply = whole.choices[0].message.content
    assert reply.strip()
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 20
    assert whole.usage.prompt_tokens > 5

    chunks = list(oai.chat.completions.create(model=model_id, messages=messages, max_tokens=20, stream=True,
                                              stream_options={"include_usage": True}, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 20  # the usage chunk comes last


def test_completion_with_logprobs_lists_the_alternatives(oai, model_id):
    r = oai.completions.create(model=model_id, prompt="The capital of France is", max_tokens=4, logprobs=3,
                               **GREEDY)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert len(lp.top_logprobs) == 4 and all(len(alts) == 3 for alts in lp.top_logprobs)
    for token, token_lp, alts in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert token_lp <= 0
        # greedy: the chosen token is the model's most likely one
        assert max(alts, key=alts.get) == token and alts[token] == pytest.approx(token_lp, abs=1e-4)
    assert lp.text_offset[0] == 0


def test_chat_logprobs_when_streaming(oai, model_id):
    chunks = list(oai.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}],
                                              max_tokens=3, logprobs=True, top_logprobs=2, stream=True, **GREEDY))
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert len(entries) == 3
    assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)


def test_json_schema_response_validates(oai, model_id):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = oai.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Describe a person as JSON."}], max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}, **GREEDY)
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_stop_and_seed_are_honoured(oai, model_id):
    prompt = "Once upon a time"
    free = oai.completions.create(model=model_id, prompt=prompt, max_tokens=24, **GREEDY).choices[0].text
    word = free.split()[3]
    cut = oai.completions.create(model=model_id, prompt=prompt, max_tokens=24, stop=[word], **GREEDY).choices[0]
    assert cut.finish_reason == "stop" and word not in cut.text
    assert free.startswith(cut.text)

    sampled = [oai.completions.create(model=model_id, prompt=prompt, max_tokens=16, temperature=1.0, seed=s)
               .choices[0].text for s in (11, 11, 12)]
    assert sampled[0] == sampled[1]
    assert sampled[0] != sampled[2] or sampled[0] != oai.completions.create(
        model=model_id, prompt=prompt, max_tokens=16, temperature=1.0, seed=13).choices[0].text


def test_a_wrong_key_is_refused(server, model_id):
    wrong = openai.OpenAI(base_url=server.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.models.list()
    assert caught.value.status_code == 401 and "API key" in caught.value.message
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "x"}])
    # never in the log
    assert all("sk-wrong" not in json.dumps(e.to_dict()) and KEY not in json.dumps(e.to_dict())
               for e in server.log_entries)


def test_bad_requests_get_an_error_body_naming_the_problem(oai, model_id):
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=model_id, messages=messages, extra_body={"frobnicate": 1})
    assert caught.value.body["param"] == "frobnicate" and "frobnicate" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=model_id, messages=messages, n=2)
    assert caught.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=model_id, messages=messages, temperature=5)
    assert "temperature" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=model_id, messages=messages,
                                    tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert "not supported" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="no-such-model", messages=messages)
    assert caught.value.body["code"] == "model_not_found" and "bundled:" in caught.value.message


def test_the_log_has_method_model_tokens_and_time_but_no_bodies(server, oai, model_id):
    oai.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "secret words"}],
                                max_tokens=2, **GREEDY)
    entry = server.log_entries[-1]
    assert (entry.method, entry.path, entry.status, entry.model) == ("POST", "/v1/chat/completions", 200, model_id)
    assert entry.completion_tokens == 2 and entry.prompt_tokens > 0 and entry.duration_ms > 0
    assert entry.body is None and entry.reply is None
    assert "secret words" not in entry.line()
