"""What the user sees when things break: a killed engine, damaged files, hostile templates, bad input."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from desktop_llm.core.errors import (
    EngineCrashed,
    InvalidRequest,
    ModelLoadError,
    TemplateError,
    UnsupportedParameter,
)
from desktop_llm.core.models import ref_for_path

# "Still works" checks count tokens: SmolLM2's end-of-generation tokens (0, 2) are banned so that
# a randomly sampled reply cannot end early.
NO_EOS = {"logit_bias": {"0": -100, "2": -100}}
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def test_sigkill_mid_reply_reports_error_promptly_and_next_request_works(own_engine):
    stream = own_engine.generate(messages=STORY, params={"max_tokens": 300, "seed": 2})
    old_pid = own_engine.pid
    received = 0
    with pytest.raises(EngineCrashed, match="SIGKILL") as caught:
        for _event in stream:
            received += 1
            if received == 3:
                killed_at = time.perf_counter()
                os.kill(old_pid, signal.SIGKILL)
    assert time.perf_counter() - killed_at < 2.0
    assert "next request starts it again" in str(caught.value)
    # The next request starts a fresh engine, with the same model loaded again.
    done = own_engine.generate(prompt="The capital of France is", params={"temperature": 0, "max_tokens": 3}).result
    assert "Paris" in done["text"]
    assert own_engine.pid not in (None, old_pid)
    assert own_engine.restarts == 1


@pytest.mark.parametrize("sig", [signal.SIGABRT, signal.SIGSEGV])
def test_native_crash_in_engine_is_reported(own_engine, sig):
    """SIGABRT is what a failed GGML_ASSERT raises in native code; SIGSEGV a bad pointer."""
    stream = own_engine.generate(messages=STORY, params={"max_tokens": 300})
    next(iter(stream))
    os.kill(own_engine.pid, sig)
    with pytest.raises(EngineCrashed, match=sig.name):
        stream.result
    assert own_engine.tokenize("hello")["tokens"]


def test_hung_engine_is_restarted_when_cancel_is_ignored(bundled_ref):
    """Last resort: an engine that does not stop after a cancel is killed; the reply counts as stopped."""
    from desktop_llm.engine.client import EngineClient

    with EngineClient(cancel_grace=1.0) as client:
        client.load(bundled_ref)
        stream = client.generate(messages=STORY, params={"max_tokens": 300})
        next(iter(stream))
        hung_pid = client.pid
        os.kill(hung_pid, signal.SIGSTOP)  # frozen: it can no longer see the cancel
        asked = time.perf_counter()
        stream.cancel()
        done = stream.result
        assert done["finish_reason"] == "cancelled" and done["killed"] is True
        assert 0.9 < time.perf_counter() - asked < 5
        done = client.generate(prompt="Hi", params={"max_tokens": 2, **NO_EOS}).result
        assert done["usage"]["completion_tokens"] == 2
        assert client.pid != hung_pid


def test_pending_requests_all_end_when_engine_dies(own_engine):
    streams = [own_engine.generate(messages=STORY, params={"max_tokens": 200}) for _ in range(3)]
    next(iter(streams[0]))
    os.kill(own_engine.pid, signal.SIGKILL)
    for stream in streams:
        assert stream.finished.wait(5), "a request was left hanging"
        with pytest.raises(EngineCrashed):
            stream.result


def test_truncated_gguf_gives_clear_error_and_engine_stays_usable(own_engine, bundled_ref, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(Path(bundled_ref.path).read_bytes()[: 30_000_000])
    with pytest.raises(ModelLoadError) as caught:
        own_engine.load(ref_for_path(cut))
    assert "cut.gguf" in str(caught.value)
    assert "download" in str(caught.value).lower()
    own_engine.load(bundled_ref)
    done = own_engine.generate(prompt="Hi", params={"max_tokens": 2, **NO_EOS}).result
    assert done["usage"]["completion_tokens"] == 2


def test_header_only_truncation_and_random_bytes(own_engine, tmp_path):
    header_cut = tmp_path / "header.gguf"
    header_cut.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (10).to_bytes(8, "little") + b"\x05\x00")
    with pytest.raises(ModelLoadError, match="cut short"):
        own_engine.load(ref_for_path(header_cut))
    noise = tmp_path / "noise.gguf"
    noise.write_bytes(os.urandom(4096))
    with pytest.raises(ModelLoadError, match="not a GGUF model file"):
        own_engine.load(ref_for_path(noise))
    assert own_engine.info()["pid"] == own_engine.pid  # same engine, still answering


def test_damaged_tensor_data_is_refused_without_taking_the_client_down(own_engine, bundled_ref, tmp_path):
    """A valid header over wrong-sized data: llama.cpp must refuse it (or crash in isolation)."""
    src = Path(bundled_ref.path).read_bytes()
    bad = tmp_path / "bad-data.gguf"
    bad.write_bytes(src[: len(src) // 2] + os.urandom(1000))
    with pytest.raises((ModelLoadError, EngineCrashed)):
        own_engine.load(ref_for_path(bad))
    own_engine.load(bundled_ref)
    assert own_engine.generate(prompt="Hi", params={"max_tokens": 1}).result


@pytest.mark.parametrize("template", [
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for m in messages %}{{ m.__class__.__init__.__globals__ }}{% endfor %}",
])
def test_hostile_chat_template_in_gguf_fails_safely(own_engine, gguf_with_template, template):
    own_engine.load(ref_for_path(gguf_with_template(template)))
    with pytest.raises(TemplateError, match="not allowed"):
        own_engine.generate(messages=[{"role": "user", "content": "hi"}]).result
    # Raw completion needs no template and still works on the same model and engine.
    done = own_engine.generate(prompt="Hi", params={"max_tokens": 2, **NO_EOS}).result
    assert done["usage"]["completion_tokens"] == 2


def test_broken_template_syntax_is_reported(own_engine, gguf_with_template):
    own_engine.load(ref_for_path(gguf_with_template("{% for m in messages %}{{ m.content }")))
    with pytest.raises(TemplateError, match="syntax error"):
        own_engine.generate(messages=[{"role": "user", "content": "hi"}]).result


def test_bad_requests_name_the_problem(engine):
    with pytest.raises(InvalidRequest, match="top_p"):
        engine.generate(prompt="Hi", params={"top_p": 0}).result
    with pytest.raises(InvalidRequest, match="Unknown sampling parameter.*temprature"):
        engine.generate(prompt="Hi", params={"temprature": 0.5}).result
    with pytest.raises(InvalidRequest, match="JSON schema"):
        engine.generate(prompt="Hi", params={"json_schema": {"type": "no-such-type"}}).result
    with pytest.raises(InvalidRequest, match="logit_bias"):
        engine.generate(prompt="Hi", params={"logit_bias": {"99999999": 1}}).result
    with pytest.raises(InvalidRequest, match="prompt"):
        engine.request("generate").wait()


def test_unknown_and_unsupported_load_options(own_engine, bundled_ref):
    with pytest.raises(InvalidRequest, match="Unknown load option 'n_cxt'"):
        own_engine.load(bundled_ref, options={"n_cxt": 512})
    with pytest.raises(UnsupportedParameter, match="'device'"):
        own_engine.load(bundled_ref, backend="llamacpp", options={"device": "cuda"})


def test_load_options_take_effect(own_engine, bundled_ref):
    info = own_engine.load(bundled_ref, options={"n_ctx": 512, "n_threads": 1, "use_mmap": False,
                                                  "flash_attn": True})
    assert info["n_ctx"] == 512
    assert info["options"]["n_threads"] == 1 and info["options"]["use_mmap"] is False
    too_long = " ".join(["word"] * 600)
    with pytest.raises(Exception, match="context holds 512"):
        own_engine.generate(prompt=too_long).result


def test_generate_without_model(tmp_path):
    from desktop_llm.core.errors import NoModelLoaded
    from desktop_llm.engine.client import EngineClient

    with EngineClient() as client, pytest.raises(NoModelLoaded, match="Load a model"):
        client.generate(prompt="Hi").result
