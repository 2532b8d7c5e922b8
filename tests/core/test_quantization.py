from __future__ import annotations

import pytest

from desktop_llm.core.quantization import QuantChoice, bits_per_weight, group_quants, quant_name, split_part
from desktop_llm.core.repo_files import RepoFile

GB = 1_000_000_000

# bartowski/Meta-Llama-3.1-8B-Instruct-GGUF (a subset, sizes as the Hub lists them).
BARTOWSKI = [
    RepoFile(".gitattributes", 2_000),
    RepoFile("README.md", 12_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct.imatrix", 4_988_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-f32.gguf", 32_130_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q8_0.gguf", 8_540_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q6_K.gguf", 6_600_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q5_K_M.gguf", 5_730_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4_920_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q3_K_M.gguf", 4_020_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q2_K.gguf", 3_180_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-IQ2_M.gguf", 2_950_000_000),
]

# unsloth style: dynamic "UD" quants, splits in folders, a vision projector and an imatrix GGUF.
UNSLOTH = [
    RepoFile("config.json", 1_000),
    RepoFile("mmproj-F16.gguf", 851_000_000),
    RepoFile("imatrix_unsloth.gguf", 9_000_000),
    RepoFile("gemma-3-27b-it-UD-Q4_K_XL.gguf", 16_800_000_000),
    RepoFile("gemma-3-27b-it-Q4_K_M.gguf", 16_500_000_000),
    RepoFile("BF16/gemma-3-27b-it-BF16-00002-of-00002.gguf", 4_100_000_000),
    RepoFile("BF16/gemma-3-27b-it-BF16-00001-of-00002.gguf", 49_900_000_000),
    # One part of three is missing from this listing.
    RepoFile("Q8_0/gemma-3-27b-it-Q8_0-00001-of-00003.gguf", 10_000_000_000),
    RepoFile("Q8_0/gemma-3-27b-it-Q8_0-00003-of-00003.gguf", 8_700_000_000),
]


@pytest.mark.parametrize(("path", "expected"), [
    ("llama-2-7b-chat.Q4_K_M.gguf", "Q4_K_M"),  # TheBloke
    ("llama-2-7b-chat.q4_k_m.gguf", "Q4_K_M"),
    ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"),  # bartowski
    ("Meta-Llama-3.1-8B-Instruct-IQ2_XXS.gguf", "IQ2_XXS"),
    ("Meta-Llama-3.1-8B-Instruct-IQ4_NL.gguf", "IQ4_NL"),
    ("Meta-Llama-3.1-8B-Instruct-Q4_0_4_4.gguf", "Q4_0_4_4"),
    ("Meta-Llama-3.1-8B-Instruct-Q6_K_L.gguf", "Q6_K_L"),
    ("Meta-Llama-3.1-8B-Instruct-f32.gguf", "F32"),
    ("Q4_K_M/model-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"),
    ("Q4_K_M/Qwen3-235B-A22B-00001-of-00003.gguf", "Q4_K_M"),  # only the folder names it
    ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "Q4_K_XL"),  # unsloth dynamic
    ("model-f16.gguf", "F16"),
    ("model_bf16.gguf", "BF16"),
    ("gpt-oss-20b-mxfp4.gguf", "MXFP4"),
    ("ggml-model-tq1_0.gguf", "TQ1_0"),
    ("Qwen2.5-0.5B-Instruct-Q8_0.gguf", "Q8_0"),
    ("Phi-3-mini-4k-instruct-q4.gguf", "Q4"),
    ("Qwen2.5-7B-Instruct.gguf", None),  # "Qwen2" is not a quantization
    ("model-00001-of-00002.gguf", None),  # nor is a split number
    ("README.md", None),
])
def test_quant_name(path, expected):
    assert quant_name(path) == expected


def test_split_part():
    assert split_part("Q4_K_M/x-00001-of-00002.gguf") == ("Q4_K_M/x.gguf", 1, 2)
    assert split_part("gemma-3-27b-it-Q8_0-00003-of-00003.gguf") == ("gemma-3-27b-it-Q8_0.gguf", 3, 3)
    assert split_part("model-Q4_K_M.gguf") is None
    assert split_part("x-00004-of-00003.gguf") is None  # not a real part number


def test_bits_per_weight_follow_llama_cpp():
    assert bits_per_weight("Q4_K_M") == pytest.approx(4.89)
    assert bits_per_weight("q8_0") == pytest.approx(8.5)
    assert bits_per_weight("F16") == bits_per_weight("BF16") == 16
    assert bits_per_weight("F32") == 32
    assert bits_per_weight("Q2_K") < bits_per_weight("Q3_K_M") < bits_per_weight("Q4_K_M") < bits_per_weight("Q5_K_M")
    assert bits_per_weight("IQ2_XXS") < bits_per_weight("IQ3_XXS") < bits_per_weight("IQ4_XS") < bits_per_weight("Q6_K")
    assert bits_per_weight("Q4_K_XL") > bits_per_weight("Q4_K_M")
    assert bits_per_weight("NOT_A_QUANT") is None


def test_groups_bartowski_listing():
    choices = group_quants(BARTOWSKI)
    # Only models to chat with, smallest first; the .imatrix and README are not choices.
    assert [c.name for c in choices] == ["IQ2_M", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F32"]
    q4 = choices[3]
    assert q4.files == (RepoFile("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4_920_000_000),)
    assert q4.size == 4_920_000_000 and not q4.split and q4.complete and q4.missing == ()
    assert q4.description == "balanced, recommended for most"
    by_name = {c.name: c.description for c in choices}
    assert by_name["IQ2_M"] == "smallest, much lower quality"
    assert by_name["Q3_K_M"] == "small, lower quality"
    assert by_name["Q6_K"] == "high quality"
    assert by_name["Q8_0"] == "near-lossless"
    assert by_name["F32"] == "full precision (large)"


def test_groups_unsloth_splits_and_skips_helpers():
    choices = {c.name: c for c in group_quants(UNSLOTH)}
    assert set(choices) == {"Q4_K_M", "Q4_K_XL", "BF16", "Q8_0"}  # no mmproj, no imatrix

    bf16 = choices["BF16"]
    assert bf16.split and bf16.complete
    assert [f.name for f in bf16.files] == ["gemma-3-27b-it-BF16-00001-of-00002.gguf",
                                            "gemma-3-27b-it-BF16-00002-of-00002.gguf"]
    assert bf16.size == 54_000_000_000

    q8 = choices["Q8_0"]
    assert q8.split and not q8.complete and q8.missing == (2,)
    assert [f.name for f in q8.files] == ["gemma-3-27b-it-Q8_0-00001-of-00003.gguf",
                                          "gemma-3-27b-it-Q8_0-00003-of-00003.gguf"]
    assert list(choices) == ["Q4_K_M", "Q4_K_XL", "Q8_0", "BF16"]  # by size


def test_same_quant_in_two_files_is_two_named_choices():
    files = [RepoFile("a-Q4_K_M.gguf", 10), RepoFile("b-Q4_K_M.gguf", 20),
             RepoFile("Llama-3-8B-Q5_K_M.gguf", 30), RepoFile("Llama-3-8B-Instruct-Q5_K_M.gguf", 31)]
    assert [c.name for c in group_quants(files)] == [
        "Q4_K_M (a)", "Q4_K_M (b)", "Q5_K_M (Llama-3-8B)", "Q5_K_M (Llama-3-8B-Instruct)"]


def test_unknown_names_and_sizes():
    files = [RepoFile("custom-model.gguf"), RepoFile("small-Q4_0.gguf", 100)]
    choices = group_quants(files)
    assert [c.name for c in choices] == ["Q4_0", "custom-model"]  # unknown size sorts last
    unknown = choices[1]
    assert unknown.bits_per_weight is None and unknown.size == 0 and not unknown.size_known
    assert unknown.description == "unknown quantization"
    assert isinstance(unknown, QuantChoice)
