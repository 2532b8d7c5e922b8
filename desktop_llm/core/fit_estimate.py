"""Will a model fit on this machine? A quick estimate from file size, model shape and free memory.

The estimate is deliberately simple and a little cautious: weights take their file size, the KV cache
(the context memory) takes K and V in f16 for every layer, and compute buffers take a fixed overhead.
It answers the question a user asks before a download, not the exact byte count llama.cpp will use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from desktop_llm.core.quantization import QuantChoice

# Default overhead (compute buffers, scratch, runtime): a fixed part plus a share of the weights.
# llama.cpp's compute buffers are a few hundred MB for small models and grow with model width.
OVERHEAD_FIXED = 300_000_000  # 0.3 GB
OVERHEAD_FRACTION = 0.05  # 5 % of the weights
VRAM_USABLE = 0.90  # keep ~10 % of free VRAM for the driver, the desktop and fragmentation
RAM_USABLE = 0.90  # a model needing up to 90 % of available RAM counts as fitting
QUALITY_CAP_BPW = 6.6
# Off the GPU, speed is memory bandwidth over file size: Q4_K_M-class files are the usual balance there.
QUALITY_CAP_BPW_CPU = 5.0
QUALITY_FLOOR_BPW = 4.0  # Q4_0/IQ4_XS and up: below this, answers get noticeably worse
ALL_LAYERS = -1  # gpu_layers when every layer goes to the GPU but the layer count is unknown (llama.cpp's "all")

_TIERS = {"gpu": 0, "partial": 1, "cpu": 2}


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a transformer that decide its context memory."""

    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int  # key/value head size (n_embd // n_head when not given)
    context_length: int | None  # the model's trained maximum


def _int(value: Any) -> int | None:
    """A positive int from a metadata value. Per-layer lists (some GGUFs) give their rounded-up mean,
    so layers without attention (0 heads) are counted as taking no context memory."""
    if isinstance(value, bool):
        return None
    if isinstance(value, list):
        nums = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return math.ceil(sum(nums) / len(nums)) if nums and len(nums) == len(value) else None
    if type(value) is not int and not isinstance(value, float):
        return None  # strings, and the GGUF reader's ArraySummary (a long array's length, not a value)
    return int(value) if value > 0 else None


def _shape(n_layers: Any, n_embd: Any, n_head: Any, n_head_kv: Any, head_dim: Any, ctx: Any) -> ModelShape | None:
    layers, embd, heads = _int(n_layers), _int(n_embd), _int(n_head)
    if layers is None or embd is None or heads is None:
        return None
    kv_heads = heads if n_head_kv is None else _int(n_head_kv)
    if kv_heads is None:
        if n_head_kv in (0, [0]):
            kv_heads = 0  # no attention at all (pure recurrent models): no KV cache
        else:
            return None
    return ModelShape(n_layers=layers, n_embd=embd, n_head=heads, n_head_kv=kv_heads,
                      head_dim=_int(head_dim) or embd // heads, context_length=_int(ctx))


def shape_from_gguf(meta: dict[str, Any]) -> ModelShape | None:
    """The shape from ``read_gguf_metadata`` output ("{arch}.block_count"...); None when keys are missing."""
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        return None

    def key(name: str) -> Any:
        return meta.get(f"{arch}.{name}")

    return _shape(key("block_count"), key("embedding_length"), key("attention.head_count"),
                  key("attention.head_count_kv"), key("attention.key_length"), key("context_length"))


def _first(config: dict[str, Any], *names: str) -> Any:
    return next((config[n] for n in names if config.get(n) is not None), None)


def shape_from_config(config: dict[str, Any]) -> ModelShape | None:
    """The shape from a transformers config.json; multimodal configs keep the language model in text_config."""
    text = config.get("text_config")
    if isinstance(text, dict):
        config = {**config, **text}
    return _shape(
        _first(config, "num_hidden_layers", "n_layer", "num_layers"),
        _first(config, "hidden_size", "n_embd", "d_model"),
        _first(config, "num_attention_heads", "n_head"),
        _first(config, "num_key_value_heads", "num_kv_heads", "multi_query_group_num"),
        _first(config, "head_dim"),
        _first(config, "max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
    )


def kv_cache_bytes(shape: ModelShape, n_ctx: int, bytes_per_value: int = 2) -> int:
    """Bytes of the KV cache: K and V, per layer, per token, per KV head (f16 by default)."""
    return 2 * shape.n_layers * max(n_ctx, 0) * shape.n_head_kv * shape.head_dim * bytes_per_value


@dataclass(frozen=True)
class MachineMemory:
    ram_total: int
    ram_available: int
    vram_total: int | None = None  # None: no GPU offload possible
    vram_free: int | None = None
    gpu_name: str | None = None


def memory_from_device_report(report: dict[str, Any]) -> MachineMemory:
    """MachineMemory from the engine's device report (``engine.devices.device_report()`` as a dict).

    VRAM counts when llama.cpp can offload (or is absent, so torch would run the model) and torch
    saw CUDA GPUs; several GPUs add up, as llama.cpp splits layers across them. Apple's unified memory
    is shared with the system: Metal gets about two thirds of it by default.
    """
    ram_total = int(report.get("ram_total") or 0)
    ram_available = int(report.get("ram_available") or 0)
    llama = report.get("llamacpp") or {}
    torch = report.get("torch") or {}
    offload = llama.get("gpu_offload") if llama.get("available") else None
    gpus = [g for g in torch.get("cuda_gpus") or [] if g.get("vram_total")]
    if gpus and offload is not False:
        names = [str(g.get("name") or "GPU") for g in gpus]
        name = names[0] if len(set(names)) == 1 else ", ".join(names)
        if len(gpus) > 1 and len(set(names)) == 1:
            name = f"{len(gpus)} × {name}"
        return MachineMemory(ram_total, ram_available, vram_total=sum(int(g["vram_total"]) for g in gpus),
                             vram_free=sum(int(g.get("vram_free") or g["vram_total"]) for g in gpus), gpu_name=name)
    if offload and "metal" in (llama.get("devices") or []):
        metal = ram_total * 2 // 3
        return MachineMemory(ram_total, ram_available, vram_total=metal, vram_free=min(metal, ram_available),
                             gpu_name="Apple GPU (Metal)")
    return MachineMemory(ram_total, ram_available)


@dataclass(frozen=True)
class FitEstimate:
    verdict: str  # "gpu", "partial", "cpu" or "no"
    gpu_layers: int  # layers to offload: all for "gpu" (ALL_LAYERS if the count is unknown), 0 for "cpu"/"no"
    total_layers: int | None
    weights_bytes: int
    kv_bytes: int | None  # None when the shape is unknown
    need_bytes: int  # weights + kv + overhead
    summary: str  # one line for the user, sizes in GB
    headroom: float  # fraction of the relevant memory left free after loading (negative: short by that much)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def default_overhead(weights_bytes: int) -> int:
    """Compute buffers and runtime: 0.3 GB plus 5 % of the weights."""
    return OVERHEAD_FIXED + int(OVERHEAD_FRACTION * weights_bytes)


def estimate_fit(weights_bytes: int, shape: ModelShape | None, n_ctx: int, memory: MachineMemory,
                 overhead_bytes: int | None = None) -> FitEstimate:
    """Where a model of this size and shape would run with an n_ctx context: all on GPU, split, CPU, or nowhere."""
    kv = kv_cache_bytes(shape, n_ctx) if shape is not None else None
    overhead = default_overhead(weights_bytes) if overhead_bytes is None else overhead_bytes
    need = weights_bytes + (kv or 0) + overhead
    n_layers = shape.n_layers if shape is not None else None
    unknown = " (context memory unknown)" if kv is None else ""
    ram = max(memory.ram_available, 1)
    ram_usable = RAM_USABLE * memory.ram_available

    def result(verdict: str, gpu_layers: int, summary: str, headroom: float, advice: str = "") -> FitEstimate:
        return FitEstimate(verdict, gpu_layers, n_layers, weights_bytes, kv, need, summary + unknown + advice, headroom)

    vram = memory.vram_free if memory.vram_free is not None else memory.vram_total
    gpu_note = ""
    if vram is not None and vram > 0:
        vram_usable = VRAM_USABLE * vram
        if need <= vram_usable:
            layers = f"all {n_layers} layers" if n_layers else "all layers"
            return result("gpu", n_layers or ALL_LAYERS,
                          f"Fits on the GPU: {layers}, {_gb(need)} of {_gb(vram)} free VRAM", 1 - need / vram)
        if n_layers:
            # Layers are taken as equal: each carries its share of the weights and of the KV cache.
            # The compute buffers stay on the GPU, whatever the number of layers there.
            per_layer = (weights_bytes + (kv or 0)) / n_layers
            on_gpu = int((vram_usable - overhead) // per_layer) if per_layer > 0 else 0
            on_gpu = max(0, min(on_gpu, n_layers - 1))
            in_ram = (n_layers - on_gpu) * per_layer
            if on_gpu > 0 and in_ram <= ram_usable:
                in_vram = overhead + on_gpu * per_layer
                headroom = min(1 - in_vram / vram, 1 - in_ram / ram)
                return result("partial", on_gpu,
                              f"Partly on the GPU: {on_gpu} of {n_layers} layers ({_gb(in_vram)} of {_gb(vram)} "
                              f"free VRAM); the rest ({_gb(in_ram)}) in RAM", headroom)
        gpu_note = f" and {_gb(vram)} of free VRAM"

    headroom = 1 - need / ram
    if need <= ram_usable:
        prefix = "CPU only" if not gpu_note else "CPU only (too big for the GPU)"
        return result("cpu", 0, f"{prefix}: needs {_gb(need)} of {_gb(memory.ram_available)} available RAM", headroom)
    return result("no", 0, f"Will not fit: needs {_gb(need)}, {_gb(memory.ram_available)} of RAM available"
                  f"{gpu_note}", headroom, advice="; pick a smaller quantization or a shorter context")


def recommend(choices: Sequence[QuantChoice], estimates: Sequence[FitEstimate]) -> int | None:
    """Index of the quantization to suggest, or None if nothing fits.

    Below about 4 bits per weight quality drops fast, so a usable quality comes first: among the choices
    of at least QUALITY_FLOOR_BPW that fit, the best place it can run wins (all on GPU, then partly, then
    CPU), and there the highest quality up to Q6_K (<= 6.6 bits; more buys little) on a GPU, up to Q4_K_M-class
    (<= 5 bits) otherwise, where every extra bit costs speed. Only when nothing that
    good fits do smaller quantizations compete, by the same rule. Incomplete split sets and files of
    unknown size (whose fit cannot be judged) are never suggested.
    """
    if len(choices) != len(estimates):
        raise ValueError("recommend() needs one estimate per choice")
    fitting = [i for i, (c, e) in enumerate(zip(choices, estimates, strict=True))
               if e.verdict in _TIERS and c.complete and c.files and c.size_known]
    if not fitting:
        return None
    good = [i for i in fitting if (choices[i].bits_per_weight or 0) >= QUALITY_FLOOR_BPW]
    pool = good or fitting
    best_tier = min(_TIERS[estimates[i].verdict] for i in pool)
    tier = [i for i in pool if _TIERS[estimates[i].verdict] == best_tier]
    cap = QUALITY_CAP_BPW if best_tier == _TIERS["gpu"] else QUALITY_CAP_BPW_CPU
    capped = [i for i in tier if (b := choices[i].bits_per_weight) is not None and b <= cap]
    if capped:
        # Highest quality; on a tie (two files of one quantization), the smaller one.
        return max(capped, key=lambda i: (choices[i].bits_per_weight, -choices[i].size, -i))
    return min(tier, key=lambda i: (choices[i].size, i))
