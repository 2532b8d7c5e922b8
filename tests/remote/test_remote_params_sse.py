"""Sampling settings -> OpenAI request fields, and the SSE parser on awkward streams."""

from __future__ import annotations

import pytest

from desktop_llm.core.errors import UnsupportedParameter
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.remote.params import openai_fields
from desktop_llm.remote.sse import SSEParser

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


# -- params ------------------------------------------------------------------------------------------------
def test_standard_fields_are_always_sent_and_empty_ones_left_out():
    fields = openai_fields(SamplingParams(), extensions=False)
    assert fields == {"temperature": 0.8, "top_p": 0.95, "max_tokens": 512,
                      "presence_penalty": 0.0, "frequency_penalty": 0.0}


def test_stop_seed_logit_bias_and_json_schema_map_to_openai_names():
    params = SamplingParams(stop=["\n\n", "User:"], seed=42, logit_bias={15043: -100.0, 7: 2.5}, json_schema=SCHEMA)
    fields = openai_fields(params, extensions=False)
    assert fields["stop"] == ["\n\n", "User:"] and fields["seed"] == 42
    assert fields["logit_bias"] == {"15043": -100.0, "7": 2.5}  # JSON object keys are strings
    assert fields["response_format"] == {"type": "json_schema",
                                         "json_schema": {"name": "response", "schema": SCHEMA, "strict": True}}


def test_extensions_add_llama_cpp_sampler_fields():
    params = SamplingParams(top_k=20, min_p=0.1, typical_p=0.9, repeat_penalty=1.2, repeat_last_n=128,
                            mirostat_mode=2, mirostat_tau=4.0, mirostat_eta=0.2, grammar='root ::= "yes"')
    fields = openai_fields(params, extensions=True)
    assert {k: fields[k] for k in ("top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "mirostat",
                                   "mirostat_tau", "mirostat_eta", "grammar")} == {
        "top_k": 20, "min_p": 0.1, "typical_p": 0.9, "repeat_penalty": 1.2, "repeat_last_n": 128,
        "mirostat": 2, "mirostat_tau": 4.0, "mirostat_eta": 0.2, "grammar": 'root ::= "yes"'}
    assert "grammar" not in openai_fields(SamplingParams(), extensions=True)


@pytest.mark.parametrize("change", [{"top_k": 5}, {"min_p": 0.2}, {"typical_p": 0.5}, {"repeat_penalty": 1.3},
                                    {"mirostat_mode": 1}, {"grammar": 'root ::= "a"'}])
def test_standard_only_providers_refuse_a_changed_extension_by_name(change):
    with pytest.raises(UnsupportedParameter) as info:
        openai_fields(SamplingParams(**change), extensions=False)
    name = next(iter(change))
    assert name in info.value.message and "standard OpenAI fields only" in info.value.message
    assert "Settings → Remote providers" in info.value.hint


def test_standard_only_providers_accept_the_off_values():
    # "Off" asks for nothing the endpoint lacks, so it is not refused.
    params = SamplingParams(top_k=0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, mirostat_tau=3.0)
    assert "top_k" not in openai_fields(params, extensions=False)


def test_several_refused_fields_are_all_named():
    with pytest.raises(UnsupportedParameter, match="parameters top_k, min_p"):
        openai_fields(SamplingParams(top_k=3, min_p=0.3), extensions=False)


# -- SSE ---------------------------------------------------------------------------------------------------
def _all(parser: SSEParser, *chunks: bytes) -> list[str]:
    out = [e.data for chunk in chunks for e in parser.feed(chunk)]
    return out + [e.data for e in parser.close()]


def test_data_lines_and_done():
    assert _all(SSEParser(), b'data: {"a": 1}\n\ndata: [DONE]\n\n') == ['{"a": 1}', "[DONE]"]


def test_multi_line_data_is_joined_with_newlines():
    assert _all(SSEParser(), b"data: line one\ndata:line two\n\n") == ["line one\nline two"]


def test_comments_event_names_and_ids():
    parser = SSEParser()
    events = parser.feed(b": keep-alive\n\nevent: error\nid: 7\ndata: boom\n\nretry: 100\n\n")
    assert [(e.event, e.id, e.data) for e in events] == [("error", "7", "boom")]


def test_line_ends_crlf_and_cr_even_split_across_chunks():
    parser = SSEParser()
    assert _all(parser, b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\r\n\r\n") == ["a", "b", "c"]


def test_utf8_split_between_chunks_and_a_bom():
    text = "data: caf\u00e9 \u4e16\u754c\n\n".encode()
    parser = SSEParser()
    chunks = [b"\xef\xbb\xbf" + text[:9], text[9:13], text[13:]]
    assert _all(parser, *chunks) == ["caf\u00e9 \u4e16\u754c"]


def test_byte_by_byte_feeding_gives_the_same_events():
    stream = b'data: {"x": 1}\n\n: ping\n\ndata: two\ndata: lines\n\ndata: [DONE]\n\n'
    parser = SSEParser()
    assert _all(parser, *(stream[i:i + 1] for i in range(len(stream)))) == ['{"x": 1}', "two\nlines", "[DONE]"]


def test_a_last_event_without_its_blank_line_is_kept_at_the_end():
    assert _all(SSEParser(), b"data: [DONE]\n") == ["[DONE]"]
    assert _all(SSEParser(), b"data: [DONE]") == ["[DONE]"]
    assert _all(SSEParser(), b"") == []
