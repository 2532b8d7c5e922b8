from __future__ import annotations

import pytest

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.sampling import SamplingParams


def test_round_trip_through_json_dict():
    params = SamplingParams(temperature=0.2, logit_bias={5: -100.0}, stop=["\n\n"], seed=7,
                            json_schema={"type": "object"})
    again = SamplingParams.from_dict(params.to_dict())
    assert again == params
    assert again.changed_from_default() == {"temperature", "logit_bias", "stop", "seed", "json_schema"}


@pytest.mark.parametrize(("field", "value", "words"), [
    ("temperature", -1, "temperature"), ("top_p", 1.5, "top_p"), ("min_p", 2, "min_p"),
    ("mirostat_mode", 3, "mirostat_mode"), ("max_tokens", 0, "max_tokens"), ("seed", -5, "seed"),
    ("stop", [""], "stop"),
])
def test_out_of_range_values_are_named(field, value, words):
    with pytest.raises(InvalidRequest, match=words):
        SamplingParams.from_dict({field: value})


def test_unknown_names_and_bad_bias_are_rejected():
    with pytest.raises(InvalidRequest, match="topp"):
        SamplingParams.from_dict({"topp": 0.5})
    with pytest.raises(InvalidRequest, match="logit_bias"):
        SamplingParams.from_dict({"logit_bias": {"abc": 1}})
    with pytest.raises(InvalidRequest, match="not both"):
        SamplingParams.from_dict({"grammar": "root ::= \"a\"", "json_schema": {"type": "string"}})
