"""The PyTorch backend through the real engine process, as the app uses it."""

from __future__ import annotations

import os
import signal

import pytest

from desktop_llm.core.errors import EngineCrashed, UnsupportedParameter
from desktop_llm.engine.client import EngineClient


@pytest.fixture()
def torch_engine(torch_smol):
    # The home where torch_smol already made the safetensors copy: no second conversion.
    client = EngineClient(env={**os.environ, "DESKTOP_LLM_HOME": str(torch_smol.home)})
    yield client
    client.shutdown()


def test_torch_backend_streams_with_alternatives_and_survives_a_crash(torch_engine, bundled_ref):
    info = torch_engine.load(bundled_ref, backend="torch", options={"n_ctx": 1024})
    assert info["backend"] == "torch" and info["device"] == "cpu" and info["n_ctx"] == 1024

    stream = torch_engine.generate(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                   params={"temperature": 0, "repeat_penalty": 1.0, "max_tokens": 12},
                                   alternatives=3)
    tokens = list(stream)
    assert "Paris" in stream.result["text"]
    assert all(len(t["alternatives"]) == 3 and t["alternatives"][0]["token_id"] == t["token_id"] for t in tokens)

    with pytest.raises(UnsupportedParameter, match="mirostat"):
        torch_engine.generate(prompt="Hi", params={"mirostat_mode": 2}).result

    long_reply = torch_engine.generate(prompt="Once upon a time", params={"max_tokens": 200})
    next(iter(long_reply))
    os.kill(torch_engine.pid, signal.SIGKILL)
    with pytest.raises(EngineCrashed):
        long_reply.result
    # A fresh engine loads the same model with the same backend again.
    again = torch_engine.generate(prompt="The capital of France is", params={"temperature": 0, "max_tokens": 3})
    assert "Paris" in again.result["text"]
    assert torch_engine.info()["load"]["backend"] == "torch"
