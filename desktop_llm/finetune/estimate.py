"""The shape of a run before it starts: batches, steps, trainable weights, time and memory.

Torch-free, so the Fine-tune page can show the estimates while the user changes settings; the
training process uses the same functions (its ``plan`` event), so both say the same.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from desktop_llm.core.datasets import split
from desktop_llm.finetune.config import AUTO_BATCH_MAX, AUTO_BATCH_TOKENS, TrainConfig

# Records are shuffled, then sorted by length inside buckets of this many micro-batches: batches
# hold records of similar length (little padding) while the order stays random enough.
BUCKET_BATCHES = 16
# Rough training speed before the first steps measure it: floating-point operations a second.
CPU_FLOPS_PER_THREAD = 40e9
GPU_FLOPS = 20e12


def epoch_batches(lengths: Sequence[int], micro_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The micro-batches (lists of example indexes) of one epoch; the same for the same (seed, epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    chunk = micro_batch * BUCKET_BATCHES
    for start in range(0, len(order), chunk):
        bucket = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(bucket[j:j + micro_batch] for j in range(0, len(bucket), micro_batch))
    rng.shuffle(batches)
    return batches


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine or linear decay."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return base
    progress = (step - warmup) / (total - warmup)
    if schedule == "linear":
        return base * (1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def auto_micro_batch(lengths: Sequence[int]) -> int:
    ordered = sorted(lengths)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] if ordered else 1
    return max(1, min(AUTO_BATCH_MAX, AUTO_BATCH_TOKENS // max(1, p90)))


def steps_of(config: TrainConfig, lengths: Sequence[int]) -> tuple[int, int, int, int]:
    """(micro_batch, accumulation, steps per epoch, total steps) for training records of these lengths."""
    micro_batch = config.micro_batch or auto_micro_batch(lengths)
    accum = config.accumulation(micro_batch)
    steps_per_epoch = max(1, math.ceil(len(epoch_batches(lengths, micro_batch, config.seed, 0)) / accum))
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    return micro_batch, accum, steps_per_epoch, total


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need of a model (from its config.json and weight count)."""

    parameters: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int

    @classmethod
    def from_config(cls, config: dict[str, Any], parameters: int) -> ModelShape:
        cfg = config.get("text_config") or config
        hidden = int(cfg.get("hidden_size") or 0)
        heads = int(cfg.get("num_attention_heads") or 1)
        return cls(parameters=parameters, hidden=hidden, layers=int(cfg.get("num_hidden_layers") or 0),
                   intermediate=int(cfg.get("intermediate_size") or 4 * hidden),
                   heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads),
                   vocab=int(cfg.get("vocab_size") or 0),
                   head_dim=int(cfg.get("head_dim") or (hidden // heads if heads else 0)))

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def lora_parameters(shape: ModelShape, r: int, target: str = "all-linear") -> int:
    """Weights a LoRA adapter of rank ``r`` trains: r × (inputs + outputs) for each adapted linear layer.

    For llama-shaped models (attention q/k/v/o, MLP gate/up/down); ``target`` names a subset.
    """
    h, kv = shape.hidden, shape.kv_heads * shape.head_dim
    q = shape.heads * shape.head_dim
    layers = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, shape.intermediate), "up_proj": (h, shape.intermediate),
              "down_proj": (shape.intermediate, h)}
    names = list(layers) if target == "all-linear" else [t.strip() for t in target.split(",") if t.strip()]
    return shape.layers * sum(r * sum(layers[n]) for n in names if n in layers)


def estimate_seconds(parameters: int, trainable: int, tokens: int, checkpointing: bool,
                     device: str, threads: int) -> float:
    # Forward 2N, backward 2N for activations (+2N for weights when all are trained), +2N to recompute.
    per_token = (4 + (2 if trainable > parameters // 2 else 0) + (2 if checkpointing else 0)) * parameters
    flops = GPU_FLOPS if device != "cpu" else CPU_FLOPS_PER_THREAD * max(1, threads)
    return tokens * per_token / flops


def memory_estimate(shape: ModelShape, trainable: int, weight_bytes: int, micro_batch: int, longest: int,
                    checkpointing: bool) -> int:
    """Peak bytes of training: weights, gradients and Adam moments of what trains, activations, logits."""
    weights = shape.parameters * weight_bytes
    optimizer = trainable * (4 + 8)  # gradients and two Adam moments, float32
    tokens = micro_batch * longest
    # Activations kept for the backward pass: per layer about 16 values a hidden unit without
    # checkpointing (attention and MLP intermediates), 1 with it (the layer input).
    per_layer = 1 if checkpointing else 16
    activations = tokens * shape.hidden * shape.layers * per_layer * 4 + tokens * shape.hidden * 16 * 4
    logits = tokens * shape.vocab * 4 * 2
    return int(weights + optimizer + activations + logits)


@dataclass(frozen=True)
class RunEstimate:
    examples: int
    validation: int
    micro_batch: int
    accumulation: int
    steps: int
    tokens: int  # tokens the run processes (all epochs)
    trainable: int
    seconds: float
    memory_bytes: int


def estimate_run(config: TrainConfig, lengths: Sequence[int], shape: ModelShape, *, device: str = "cpu",
                 threads: int = 1, weight_bytes: int = 4) -> RunEstimate:
    """The run ``config`` would make of records with these token ``lengths`` (before the length limit)."""
    kept = [min(n, config.max_length) for n in lengths
            if n <= config.max_length or config.length_policy == "truncate"]
    train_lengths, val_lengths = split(kept, config.validation_fraction, config.seed)  # type: ignore[arg-type]
    n_val = len(val_lengths)
    train: list[int] = list(train_lengths) or [1]  # type: ignore[arg-type]
    micro_batch, accum, steps_per_epoch, total = steps_of(config, train)
    tokens = int(sum(train) * total / steps_per_epoch)
    trainable = shape.parameters if config.method == "full" else lora_parameters(shape, config.lora_r, config.target)
    return RunEstimate(
        examples=len(kept) - n_val, validation=n_val, micro_batch=micro_batch, accumulation=accum, steps=total,
        tokens=tokens, trainable=trainable,
        seconds=estimate_seconds(shape.parameters, trainable, tokens, config.gradient_checkpointing, device, threads),
        memory_bytes=memory_estimate(shape, trainable, weight_bytes, micro_batch, max(train),
                                     config.gradient_checkpointing))
