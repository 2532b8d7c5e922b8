"""A chat longer than the context: the oldest turns are left out, the system prompt never is."""

from __future__ import annotations

import pytest

from desktop_llm.core.errors import ContextOverflow
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.client import EngineClient

SYSTEM = {"role": "system", "content": "You are a helpful assistant called Quill."}


def long_chat(turns: int) -> list[dict[str, str]]:
    chat = [SYSTEM]
    for i in range(turns):
        chat.append({"role": "user", "content": f"Question {i}: " + "tell me about rivers and mountains. " * 8})
        chat.append({"role": "assistant", "content": f"Answer {i}: " + "rivers flow down from mountains. " * 8})
    chat.append({"role": "user", "content": "What is the capital of France?"})
    return chat


@pytest.fixture(scope="module")
def small_ctx_engine(bundled_ref):
    client = EngineClient()
    client.load(bundled_ref, options={"n_ctx": 512})
    yield client
    client.shutdown()


def test_overlong_chat_drops_oldest_turns_and_answers_the_last(small_ctx_engine):
    params = SamplingParams(temperature=0, repeat_penalty=1.0, max_tokens=24)
    with pytest.raises(ContextOverflow):
        small_ctx_engine.generate(messages=long_chat(12), params=params).result  # noqa: B018
    stream = small_ctx_engine.generate(messages=long_chat(12), params=params, fit_context=True)
    text = stream.text()
    done = stream.result
    assert done["dropped_messages"] >= 2 and done["dropped_messages"] % 2 == 0  # whole turns only
    assert done["usage"]["prompt_tokens"] + min(24, 512 // 4) <= done["n_ctx"] == 512
    assert "Paris" in text


def test_chat_that_fits_drops_nothing(small_ctx_engine):
    stream = small_ctx_engine.generate(messages=long_chat(1), params=SamplingParams(max_tokens=4),
                                       fit_context=True)
    assert stream.result["dropped_messages"] == 0


def test_fitted_prompt_keeps_system_prompt_and_starts_with_a_user_turn(llamacpp_smol):
    from desktop_llm.engine.generation import fit_messages

    backend = llamacpp_smol
    chat = long_chat(120)
    tokens, text, dropped = fit_messages(backend, chat, reserve=256)
    assert dropped > 0 and len(tokens) + 256 <= backend.n_ctx
    assert SYSTEM["content"] in text
    kept = chat[1 + dropped:]
    assert kept[0]["role"] == "user" and kept[0]["content"] in text
    assert chat[dropped]["content"] not in text  # the last turn left out is really gone
    assert "What is the capital of France?" in text
