"""RemoteClient against a real socket server: models, streamed replies, probabilities, faults, cancel."""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

from desktop_llm.core.errors import (
    DesktopLLMError,
    ModelNotFound,
    NoModelLoaded,
    RemoteAuthFailed,
    RemoteBadRequest,
    RemoteDisconnected,
    RemoteError,
    RemoteModelNotFound,
    RemoteRateLimited,
    RemoteServerError,
    RemoteTimeout,
    RemoteUnreachable,
    UnsupportedParameter,
    error_from_code,
)
from desktop_llm.core.models import ModelRef
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.remote.client import RemoteClient
from desktop_llm.remote.providers import Provider, split_remote_model_id
from tests.remote.fault_server import KEY, PROMPT_TOKENS, REPLY, REPLY_TEXT, REPLY_TOKENS, token_logprob

HI = [{"role": "user", "content": "Say hello"}]


def _error_of(stream) -> DesktopLLMError:
    with pytest.raises(DesktopLLMError) as info:
        stream.wait(10)
    return info.value


# -- models ----------------------------------------------------------------------------------------------
def test_list_models_names_ids_and_context_lengths(client, server):
    refs = {r.repo_id: r for r in client.list_models()}
    assert list(refs) == ["tiny-chat", "org/big-model", "hosted-1", "plain"]
    big = refs["org/big-model"]
    assert big.id == "remote:test-vllm/org/big-model"
    assert split_remote_model_id(big.id) == ("test-vllm", "org/big-model")
    assert big.name == "org/big-model · Test vLLM"
    assert (big.format, big.source, big.path) == ("remote", "remote", server.base_url)
    # llama.cpp's meta.n_ctx_train, vLLM's max_model_len, OpenRouter's context_length; none given.
    assert [refs[m].context_length for m in refs] == [2048, 8192, 4096, None]
    assert server.last["headers"]["Authorization"] == f"Bearer {KEY}"
    assert server.last["path"] == "/v1/models"


def test_load_checks_the_model_is_served_and_returns_engine_style_info(client):
    events = []
    info = client.load("remote:test-vllm/tiny-chat", on_event=events.append)
    assert info["backend"] == "remote" and info["device"] == "Test vLLM"
    assert info["n_ctx"] == 2048 and info["load_seconds"] >= 0
    assert ModelRef.from_dict(info["model"]).repo_id == "tiny-chat"
    assert [e["event"] for e in events] == ["progress", "loaded"]
    assert client.info()["model"]["id"] == "remote:test-vllm/tiny-chat"
    assert client.info()["provider"] == "Test vLLM"
    # A ModelRef from list_models loads too.
    ref = next(r for r in client.list_models() if r.repo_id == "org/big-model")
    assert client.load(ref)["n_ctx"] == 8192


def test_load_of_a_model_the_endpoint_does_not_serve_names_it_and_what_it_serves(client):
    with pytest.raises(RemoteModelNotFound) as info:
        client.load("llama-9000")
    err = info.value
    assert isinstance(err, ModelNotFound)  # code that handles local "model not found" handles this too
    assert "llama-9000" in err.message and "Test vLLM" in err.message
    assert "tiny-chat" in err.hint and "org/big-model" in err.hint


def test_a_model_of_another_provider_is_refused(client):
    with pytest.raises(DesktopLLMError, match="another provider"):
        client.load("remote:other/tiny-chat")


# -- streamed replies ---------------------------------------------------------------------------------------
def test_chat_reply_streams_tokens_and_a_done_event_with_the_servers_usage(loaded, server):
    seen = []
    threads = set()

    def on_event(event):
        seen.append(event)
        threads.add(threading.current_thread().name)

    stream = loaded.generate(messages=HI, params=SamplingParams(max_tokens=50, seed=7), on_event=on_event)
    tokens = list(stream)
    assert "".join(t["text"] for t in tokens) == REPLY_TEXT
    assert [t["text"] for t in tokens] == [text for text, _ in REPLY]  # one event per delta without logprobs
    assert all(t["token_id"] is None and t["logprob"] is None and t["alternatives"] == [] for t in tokens)
    done = stream.result
    assert done["event"] == "done" and done["finish_reason"] == "stop"
    assert done["usage"] == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": REPLY_TOKENS}
    assert done["text"] == REPLY_TEXT and done["seed"] == 7 and done["ttft_ms"] >= 0
    assert seen[-1] is stream.final and len(seen) == len(tokens) + 1
    assert threading.current_thread().name not in threads  # on_event runs on the reader thread

    body = server.last["body"]
    assert server.last["path"] == "/v1/chat/completions"
    assert body["model"] == "tiny-chat" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == HI and body["max_tokens"] == 50 and body["seed"] == 7
    assert body["top_k"] == 40  # sampling extensions are on for this provider
    assert "logprobs" not in body


def test_completion_prompt_goes_to_completions(loaded, server):
    stream = loaded.generate(prompt="Once upon a time", params={"max_tokens": 3})
    assert stream.text() == "Hello, world"
    assert stream.result["finish_reason"] == "length"  # the server stopped at max_tokens
    assert server.last["path"] == "/v1/completions"
    assert server.last["body"]["prompt"] == "Once upon a time"


def test_chat_alternatives_give_one_token_event_per_token_with_probabilities(loaded, server):
    stream = loaded.generate(messages=HI, alternatives=3)
    tokens = list(stream)
    body = server.last["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert len(tokens) == REPLY_TOKENS
    # Per-token text, with the "é" split over two byte tokens put back together on the second.
    assert [t["text"] for t in tokens] == ["Hello", ",", " wor", "ld", " caf", "\u00e9", "!"]
    assert "".join(t["text"] for t in tokens) == REPLY_TEXT
    for i, token in enumerate(tokens):
        assert token["logprob"] == pytest.approx(token_logprob(i))
        alts = token["alternatives"]
        assert len(alts) == 3
        assert [a["logprob"] for a in alts] == sorted((a["logprob"] for a in alts), reverse=True)
        assert set(alts[0]) == {"token_id", "text", "logprob"} and alts[0]["token_id"] is None
        assert alts[1]["text"] == "Hi"
    assert tokens[0]["alternatives"][0]["text"] == "Hello"
    assert math.exp(tokens[0]["logprob"]) == pytest.approx(0.905, abs=0.001)  # a probability the UI can show
    assert stream.result["usage"]["completion_tokens"] == REPLY_TOKENS


def test_completion_alternatives_read_the_legacy_logprobs_shape(loaded, server):
    stream = loaded.generate(prompt="Hi", alternatives=2)
    tokens = list(stream)
    assert server.last["body"]["logprobs"] == 2
    assert len(tokens) == REPLY_TOKENS and "".join(t["text"] for t in tokens) == REPLY_TEXT
    assert tokens[0]["logprob"] == pytest.approx(token_logprob(0))
    assert [a["text"] for a in tokens[0]["alternatives"]] == ["Hello", "Hi"]


def test_without_a_usage_chunk_the_tokens_are_counted(loaded, server):
    server.fault = "no_usage"
    done = loaded.generate(messages=HI).wait(10)
    assert done["usage"] == {"completion_tokens": len(REPLY)}  # one per delta; the prompt's count is unknown


def test_sse_comments_and_crlf_line_ends_are_understood(loaded, server):
    server.fault = "comments"
    assert loaded.generate(messages=HI).text() == REPLY_TEXT


def test_a_reply_without_done_marker_but_with_finish_reason_is_complete(loaded, server):
    server.fault = "no_done"
    assert loaded.generate(messages=HI).wait(10)["finish_reason"] == "stop"


def test_a_server_that_does_not_stream_still_gives_the_reply(loaded, server):
    server.fault = "json"
    stream = loaded.generate(messages=HI)
    assert stream.text() == REPLY_TEXT
    assert stream.result["usage"]["completion_tokens"] == REPLY_TOKENS


def test_standard_only_provider_refuses_a_changed_extension_in_the_stream(server):
    strict = Provider(id="strict", name="Strict API", base_url=server.base_url, sampling_extensions=False)
    remote = RemoteClient(strict, KEY)
    remote.load("tiny-chat")
    err = _error_of(remote.generate(messages=HI, params={"top_k": 5}))
    assert isinstance(err, UnsupportedParameter) and "top_k" in err.message
    assert remote.generate(messages=HI).text() == REPLY_TEXT
    assert "top_k" not in server.last["body"] and "min_p" not in server.last["body"]


# -- what a remote model cannot do ---------------------------------------------------------------------------
def test_branching_tokenizing_and_step_mode_are_refused_clearly(loaded):
    err = _error_of(loaded.generate(messages=HI, continuation=[1, 2]))
    assert "not available for remote models" in err.message and "Branching" in err.message
    for call in (lambda: loaded.tokenize("hi"), lambda: loaded.tokenize_messages(HI),
                 lambda: loaded.detokenize([1]), lambda: loaded.next_token(prompt="hi")):
        with pytest.raises(RemoteError, match="not available for remote models"):
            call()


def test_generate_before_load_ends_with_no_model_loaded(client):
    err = _error_of(client.generate(messages=HI))
    assert isinstance(err, NoModelLoaded) and "Test vLLM" in err.message


# -- HTTP faults ----------------------------------------------------------------------------------------------
def test_wrong_key_is_refused_naming_the_provider_and_where_to_fix_it(provider):
    wrong = "sk-wrong-key-that-must-not-leak"
    remote = RemoteClient(provider, api_key=wrong)
    with pytest.raises(RemoteAuthFailed) as info:
        remote.list_models()
    text = str(info.value)
    assert "Test vLLM" in text and "refused the API key" in text
    assert "Settings → Remote providers" in info.value.hint
    assert wrong not in text  # the server echoed it; the message must not


def test_missing_key_says_one_is_needed(provider):
    with pytest.raises(RemoteAuthFailed, match="needs an API key"):
        RemoteClient(provider).list_models()


def test_a_model_the_server_stopped_serving_is_named_with_what_it_serves(loaded, server):
    server.models = [m for m in server.models if m["id"] != "tiny-chat"]
    err = _error_of(loaded.generate(messages=HI))
    assert isinstance(err, RemoteModelNotFound)
    assert "tiny-chat" in err.message and "Test vLLM" in err.message
    assert "org/big-model" in err.hint


def test_rate_limit_gives_retry_after(loaded, server):
    server.fault = "429"
    err = _error_of(loaded.generate(messages=HI))
    assert isinstance(err, RemoteRateLimited) and err.retry_after == 7
    assert "rate limiting" in err.message and "Wait 7 s" in err.hint


def test_bad_request_shows_the_endpoints_message(loaded, server):
    server.fault = "400"
    err = _error_of(loaded.generate(messages=HI, params={"max_tokens": 999999}))
    assert isinstance(err, RemoteBadRequest)
    assert "max_tokens is too large: 999999" in err.message and "HTTP 400" in err.message


def test_server_error_shows_its_message(loaded, server):
    server.fault = "500"
    err = _error_of(loaded.generate(messages=HI))
    assert isinstance(err, RemoteServerError) and "CUDA error: out of memory" in err.message


def test_error_events_rebuild_the_same_error_class(loaded, server):
    server.fault = "429"
    stream = loaded.generate(messages=HI)
    final = stream.finished.wait(10) and stream.final
    assert final["event"] == "error" and final["code"] == "remote_rate_limited"
    assert isinstance(error_from_code(final["code"], final["message"], final["hint"]), RemoteRateLimited)


def test_connection_refused_names_provider_url_and_reason():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = Provider(id="gone", name="Gone box", base_url=f"http://127.0.0.1:{port}/v1", timeout_seconds=2)
    with pytest.raises(RemoteUnreachable) as info:
        RemoteClient(gone).list_models()
    assert str(info.value).startswith(f"Could not reach Gone box at http://127.0.0.1:{port}/v1: ")
    assert "refused" in info.value.message and "server is running" in info.value.hint


# -- never hang ---------------------------------------------------------------------------------------------------
def _quick(server) -> RemoteClient:
    fast = Provider(id="fast", name="Hanging box", base_url=server.base_url, timeout_seconds=1.0)
    return RemoteClient(fast, KEY)


def test_a_server_that_never_answers_times_out(server):
    remote = _quick(server)
    server.fault = "hang"
    started = time.monotonic()
    with pytest.raises(RemoteTimeout) as info:
        remote.list_models()
    assert time.monotonic() - started < 4
    assert "Hanging box" in info.value.message and "1 s" in info.value.message


def test_a_generate_that_gets_no_answer_ends_with_a_timeout_error(server):
    remote = _quick(server)
    remote.load("tiny-chat")
    server.fault = "hang"
    started = time.monotonic()
    stream = remote.generate(messages=HI)
    assert stream.finished.wait(5), "the stream hung"
    assert time.monotonic() - started < 4
    assert stream.final["event"] == "error" and stream.final["code"] == "remote_timeout"
    with pytest.raises(RemoteTimeout):
        stream.wait()


def test_a_stream_that_stalls_mid_reply_times_out(server):
    remote = _quick(server)
    remote.load("tiny-chat")
    server.fault = "stall"
    events = []
    stream = remote.generate(messages=HI, on_event=events.append)
    assert stream.finished.wait(5), "the stream hung"
    assert [e["event"] for e in events] == ["token", "error"]
    assert "in the middle of the reply" in events[-1]["message"]


def test_a_dropped_connection_ends_with_a_clear_error(loaded, server):
    server.fault = "drop"
    stream = loaded.generate(messages=HI)
    assert stream.finished.wait(5)
    err = _error_of(stream)
    assert isinstance(err, RemoteDisconnected)
    assert "the connection closed before the reply ended" in err.message and "Test vLLM" in err.message


def test_cancel_ends_a_slow_stream_quickly_and_closes_the_connection(loaded, server):
    server.fault = "slow"
    stream = loaded.generate(messages=HI)
    tokens = stream.tokens()
    next(tokens), next(tokens)
    started = time.monotonic()
    stream.cancel()
    done = stream.wait(2)
    assert time.monotonic() - started < 1
    assert done["finish_reason"] == "cancelled" and done["text"].startswith("tick tick")
    assert server.closed.wait(3), "the server did not see the connection close"
    stream.cancel()  # a second cancel is harmless


def test_shutdown_cancels_streams_in_flight(loaded, server):
    server.fault = "slow"
    stream = loaded.generate(messages=HI)
    next(stream.tokens())
    loaded.shutdown()
    assert stream.wait(2)["finish_reason"] == "cancelled"


def test_https_to_a_plain_http_server_says_the_secure_connection_failed(server):
    wrong = Provider(id="tls", name="TLS box", base_url=f"https://127.0.0.1:{server.port}/v1", timeout_seconds=2)
    with pytest.raises(RemoteUnreachable) as info:
        RemoteClient(wrong, KEY).list_models()
    assert "TLS box" in info.value.message and "secure connection failed" in info.value.message
    assert "http:// or https://" in info.value.hint


def test_a_base_url_without_the_api_path_points_at_v1(server):
    wrong = Provider(id="box", name="Box", base_url=f"http://127.0.0.1:{server.port}/api", timeout_seconds=2)
    with pytest.raises(RemoteBadRequest) as info:
        RemoteClient(wrong, KEY).list_models()
    assert f"http://127.0.0.1:{server.port}/api/models" in info.value.message and "404" in info.value.message
    assert "/v1" in info.value.hint
