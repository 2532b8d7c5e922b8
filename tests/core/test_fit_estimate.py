from __future__ import annotations

import pytest

from desktop_llm.core.fit_estimate import (
    FitEstimate,
    MachineMemory,
    ModelShape,
    estimate_fit,
    kv_cache_bytes,
    memory_from_device_report,
    recommend,
    shape_from_config,
    shape_from_gguf,
)
from desktop_llm.core.gguf_header import read_gguf_metadata
from desktop_llm.core.quantization import group_quants
from desktop_llm.core.repo_files import RepoFile

GB = 1_000_000_000

# meta-llama/Llama-3.1-8B-Instruct config.json (the keys that matter, values as published).
LLAMA_31_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
    "rope_theta": 500000.0, "torch_dtype": "bfloat16", "vocab_size": 128256,
}
# mistralai/Mistral-Small-3.1-24B-Instruct-2503: a vision model, the language model in text_config, and an
# explicit head_dim (128, not 5120 / 32).
MISTRAL_SMALL_31_CONFIG = {
    "architectures": ["Mistral3ForConditionalGeneration"], "model_type": "mistral3", "image_token_index": 10,
    "text_config": {"head_dim": 128, "hidden_size": 5120, "max_position_embeddings": 131072, "model_type": "mistral",
                    "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8},
    "vision_config": {"hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24, "head_dim": 64},
}
LLAMA_8B = ModelShape(n_layers=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim=128, context_length=131072)

# bartowski/Meta-Llama-3.1-8B-Instruct-GGUF, sizes as the Hub lists them.
LISTING = [
    RepoFile("Meta-Llama-3.1-8B-Instruct-f32.gguf", 32_130_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q8_0.gguf", 8_540_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q6_K.gguf", 6_600_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q5_K_M.gguf", 5_730_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4_920_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-Q3_K_M.gguf", 4_020_000_000),
    RepoFile("Meta-Llama-3.1-8B-Instruct-IQ2_M.gguf", 2_950_000_000),
]

NO_GPU = MachineMemory(ram_total=32 * GB, ram_available=21_300_000_000)
BIG_GPU = MachineMemory(ram_total=64 * GB, ram_available=50 * GB, vram_total=24 * GB, vram_free=23_500_000_000,
                        gpu_name="NVIDIA GeForce RTX 4090")
SMALL_GPU = MachineMemory(ram_total=32 * GB, ram_available=21_300_000_000, vram_total=8 * GB, vram_free=6 * GB,
                          gpu_name="NVIDIA GeForce RTX 3060 Laptop GPU")
LOW_RAM = MachineMemory(ram_total=8 * GB, ram_available=3 * GB)


def test_shape_of_the_bundled_model(bundled_ref):
    shape = shape_from_gguf(read_gguf_metadata(bundled_ref.path))
    assert shape == ModelShape(n_layers=30, n_embd=576, n_head=9, n_head_kv=3, head_dim=64, context_length=8192)
    # K and V x 30 layers x 8192 tokens x 3 KV heads x 64 values x 2 bytes (f16).
    assert kv_cache_bytes(shape, 8192) == 2 * 30 * 8192 * 3 * 64 * 2 == 188_743_680
    assert kv_cache_bytes(shape, 2048, bytes_per_value=1) == 30 * 2048 * 3 * 64 * 2


def test_shape_from_gguf_needs_the_keys():
    assert shape_from_gguf({"general.architecture": "llama", "llama.block_count": 30}) is None
    assert shape_from_gguf({}) is None
    # head_count_kv absent: every head has its own K and V; key_length given: used as the head size.
    meta = {"general.architecture": "gemma2", "gemma2.block_count": 26, "gemma2.embedding_length": 2304,
            "gemma2.attention.head_count": 8, "gemma2.attention.key_length": 256}
    assert shape_from_gguf(meta) == ModelShape(26, 2304, 8, 8, 256, None)


def test_shape_from_transformers_config():
    shape = shape_from_config(LLAMA_31_8B_CONFIG)
    assert shape == LLAMA_8B
    # 2 x 32 layers x 8192 tokens x 8 KV heads x 128 x 2 bytes = exactly 1 GiB.
    assert kv_cache_bytes(shape, 8192) == 1024**3
    nested = shape_from_config(MISTRAL_SMALL_31_CONFIG)
    assert nested == ModelShape(n_layers=40, n_embd=5120, n_head=32, n_head_kv=8, head_dim=128,
                                context_length=131072)
    gpt2 = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024}
    assert shape_from_config(gpt2) == ModelShape(12, 768, 12, 12, 64, 1024)
    assert shape_from_config({"model_type": "llama", "hidden_size": 4096}) is None


def test_cpu_only_machine():
    fit = estimate_fit(4_920_000_000, LLAMA_8B, 8192, NO_GPU)
    assert fit.verdict == "cpu" and fit.gpu_layers == 0 and fit.total_layers == 32
    assert fit.kv_bytes == 1024**3
    # Default overhead: 0.3 GB + 5 % of the weights.
    assert fit.need_bytes == 4_920_000_000 + 1024**3 + 300_000_000 + 246_000_000
    assert fit.summary == "CPU only: needs 6.5 GB of 21.3 GB available RAM"
    assert fit.headroom == pytest.approx(1 - fit.need_bytes / 21_300_000_000)


def test_big_gpu_takes_every_layer():
    fit = estimate_fit(8_540_000_000, LLAMA_8B, 8192, BIG_GPU)
    assert fit.verdict == "gpu" and fit.gpu_layers == 32
    assert fit.summary == "Fits on the GPU: all 32 layers, 10.3 GB of 23.5 GB free VRAM"
    assert 0.5 < fit.headroom < 0.6


def test_small_gpu_takes_some_layers():
    fit = estimate_fit(4_920_000_000, LLAMA_8B, 8192, SMALL_GPU)
    # 90 % of 6 GB, minus 0.546 GB of buffers, over (4.92 GB + 1 GiB) / 32 per layer = 25.9 layers.
    assert fit.verdict == "partial" and fit.gpu_layers == 25
    assert fit.summary.startswith("Partly on the GPU: 25 of 32 layers")
    assert "of 6.0 GB free VRAM" in fit.summary and "in RAM" in fit.summary
    bigger = estimate_fit(8_540_000_000, LLAMA_8B, 8192, SMALL_GPU)
    assert bigger.verdict == "partial" and 0 < bigger.gpu_layers < fit.gpu_layers


def test_too_little_memory():
    fit = estimate_fit(4_920_000_000, LLAMA_8B, 8192, LOW_RAM)
    assert fit.verdict == "no" and fit.gpu_layers == 0 and fit.headroom < 0
    assert fit.summary.startswith("Will not fit: needs 6.5 GB, 3.0 GB of RAM available")
    assert "smaller quantization" in fit.summary
    # Too big even for GPU and RAM together.
    huge = estimate_fit(32_130_000_000, LLAMA_8B, 8192, SMALL_GPU)
    assert huge.verdict == "no"
    assert "needs 35.1 GB, 21.3 GB of RAM available and 6.0 GB of free VRAM" in huge.summary


def test_ninety_percent_of_ram_counts_as_fitting():
    ram = MachineMemory(ram_total=16 * GB, ram_available=10 * GB)
    assert estimate_fit(8_000_000_000, None, 4096, ram, overhead_bytes=1 * GB).verdict == "cpu"  # 9.0 GB
    assert estimate_fit(8_100_000_000, None, 4096, ram, overhead_bytes=1 * GB).verdict == "no"  # 9.1 GB


def test_unknown_shape_says_so():
    fit = estimate_fit(4_920_000_000, None, 8192, NO_GPU)
    assert fit.kv_bytes is None and fit.total_layers is None
    assert fit.summary == "CPU only: needs 5.5 GB of 21.3 GB available RAM (context memory unknown)"


def _estimates(machine: MachineMemory, n_ctx: int = 8192):
    choices = group_quants(LISTING)
    return choices, [estimate_fit(c.size, LLAMA_8B, n_ctx, machine) for c in choices]


def test_recommends_a_quality_quant_over_q8_and_f32_when_all_fit():
    choices, estimates = _estimates(BIG_GPU)
    assert {e.verdict for e in estimates[:-1]} == {"gpu"}
    assert choices[recommend(choices, estimates)].name == "Q6_K"
    # Without a GPU every bit costs speed: the usual Q4_K_M balance.
    choices, estimates = _estimates(NO_GPU)
    assert choices[recommend(choices, estimates)].name == "Q4_K_M"


def test_recommends_a_usable_quality_partly_on_the_gpu_over_a_tiny_quant_all_on_it():
    choices, estimates = _estimates(SMALL_GPU)
    by_name = {c.name: e for c, e in zip(choices, estimates, strict=True)}
    assert by_name["IQ2_M"].verdict == "gpu"  # only the 2-bit file fits the 6 GB GPU completely
    best = recommend(choices, estimates)
    # Below 4 bits answers get much worse: a 4-6 bit file partly offloaded is the better advice.
    assert estimates[best].verdict == "partial"
    assert 4.0 <= choices[best].bits_per_weight <= 6.6


def test_recommends_all_on_the_gpu_among_good_quants_when_one_fits():
    choices, estimates = _estimates(BIG_GPU)
    best = recommend(choices, estimates)
    assert estimates[best].verdict == "gpu"


def test_recommends_the_small_quant_when_only_it_fits():
    five_gb = MachineMemory(ram_total=8 * GB, ram_available=5 * GB)
    choices, estimates = _estimates(five_gb)
    assert [e.verdict for e in estimates].count("cpu") == 1
    assert choices[recommend(choices, estimates)].name == "IQ2_M"


def test_recommends_smallest_when_all_fitting_are_large():
    files = [RepoFile("m-F16.gguf", 2 * GB), RepoFile("m-Q8_0.gguf", 1 * GB)]
    choices = group_quants(files)
    estimates = [estimate_fit(c.size, None, 4096, BIG_GPU) for c in choices]
    assert choices[recommend(choices, estimates)].name == "Q8_0"


def test_recommend_skips_incomplete_and_returns_none_when_nothing_fits():
    choices, estimates = _estimates(LOW_RAM)
    assert recommend(choices, estimates) is None
    files = [RepoFile("Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", 2 * GB), RepoFile("m-Q2_K.gguf", 3 * GB)]
    choices = group_quants(files)
    assert choices[0].name == "Q4_K_M" and not choices[0].complete
    estimates = [estimate_fit(c.size, LLAMA_8B, 4096, BIG_GPU) for c in choices]
    assert choices[recommend(choices, estimates)].name == "Q2_K"
    assert recommend([], []) is None
    assert recommend(choices[:1], [FitEstimate("no", 0, None, 1, None, 1, "", -1.0)]) is None


def test_memory_from_engine_device_report():
    report = {"ram_total": 32 * GB, "ram_available": 20 * GB,
              "llamacpp": {"available": True, "gpu_offload": True, "devices": ["gpu", "cpu"]},
              "torch": {"available": True, "cuda_gpus": [
                  {"index": 0, "name": "NVIDIA GeForce RTX 3060", "vram_total": 12 * GB, "vram_free": 11 * GB}]}}
    assert memory_from_device_report(report) == MachineMemory(32 * GB, 20 * GB, 12 * GB, 11 * GB,
                                                              "NVIDIA GeForce RTX 3060")
    cpu_build = {**report, "llamacpp": {"available": True, "gpu_offload": False, "devices": ["cpu"]}}
    assert memory_from_device_report(cpu_build).vram_total is None
    mac = {"ram_total": 36 * GB, "ram_available": 20 * GB,
           "llamacpp": {"available": True, "gpu_offload": True, "devices": ["metal", "cpu"]},
           "torch": {"available": False}}
    metal = memory_from_device_report(mac)
    assert metal.vram_total == 24 * GB and metal.vram_free == 20 * GB and "Metal" in metal.gpu_name
