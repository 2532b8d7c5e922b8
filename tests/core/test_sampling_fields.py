"""The sampling fields' ranges and the Playground's branch tree: what a user typing values or branching meets."""

from __future__ import annotations

import pytest

from desktop_llm.core.branch_tree import BranchTree, TokenInfo
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.sampling_fields import FIELDS, check_values, parse_logit_bias, unsupported_reason


def test_every_sampling_parameter_has_a_field_with_an_explanation():
    names = {f.name for f in FIELDS}
    assert names == set(SamplingParams().to_dict())
    assert all(len(f.help) > 20 for f in FIELDS)


@pytest.mark.parametrize(("values", "words"), [
    ({"temperature": 7.5}, ["Temperature", "7.5", "0 to 5"]),
    ({"top_p": 0}, ["Top-p", "0.01 to 1"]),
    ({"top_k": 3.5}, ["Top-k", "whole number"]),
    ({"seed": -3}, ["Seed", "0 to"]),
    ({"min_p": "high"}, ["Min-p", "must be a number"]),
])
def test_out_of_range_values_are_refused_naming_the_field_and_range(values, words):
    with pytest.raises(InvalidRequest) as caught:
        check_values(values)
    assert all(w in caught.value.message for w in words), caught.value.message


def test_values_in_range_become_sampling_params():
    params = check_values({"temperature": 0.2, "top_k": 5, "seed": None, "stop": ["\n"]})
    assert (params.temperature, params.top_k, params.seed, params.stop) == (0.2, 5, None, ["\n"])


def test_logit_bias_lines_parse_and_a_bad_line_is_named():
    assert parse_logit_bias("198: -100\n\n 42 : 2.5") == {198: -100.0, 42: 2.5}
    with pytest.raises(InvalidRequest, match="line 2"):
        parse_logit_bias("1: 1\nfoo")
    with pytest.raises(InvalidRequest, match="outside -100 to 100"):
        parse_logit_bias("1: 500")


def test_torch_backend_fields_are_marked_with_the_reason():
    assert unsupported_reason("mirostat_mode", "torch") and unsupported_reason("json_schema", "torch")
    assert unsupported_reason("mirostat_mode", "llamacpp") is None
    assert unsupported_reason("temperature", "torch") is None


def tok(i: int, text: str) -> TokenInfo:
    return TokenInfo(i, text, -0.5)


def test_a_branch_keeps_its_parents_tokens_up_to_the_fork_then_its_own():
    tree = BranchTree()
    root = tree.new_root("Run 1")
    root.tokens = [tok(1, " red"), tok(2, ","), tok(3, " green")]
    child = tree.branch_from(root.id, 1, {"token_id": 9, "text": " and"})
    child.tokens = [TokenInfo(9, " and", -2.0, forced=True), tok(4, " blue")]
    assert tree.text(child.id) == " red and blue"
    assert tree.continuation(root.id, 1, 9) == [1, 9]
    assert tree.children(root.id) == [child] and "','" in child.label and "' and'" in child.label
    grandchild = tree.branch_from(child.id, 2, {"token_id": 7, "text": " yellow"})
    assert tree.continuation(child.id, 2, 7) == [1, 9, 7] and grandchild.parent == child.id
    with pytest.raises(IndexError):
        tree.branch_from(root.id, 3, {"token_id": 1, "text": "x"})
