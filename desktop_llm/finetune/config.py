"""What one fine-tuning run does: ``TrainConfig``, its presets, checks and JSON form.

App side: imported by the GUI and the CLI, so nothing here imports torch, transformers or peft.
Checks that need them (is CUDA there, how big is the model) happen in the training process.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from desktop_llm.core.datasets import FieldMapping
from desktop_llm.core.errors import InvalidRequest

METHODS = ("lora", "full", "qlora")
LENGTH_POLICIES = ("drop", "truncate")
TRAIN_ON = ("assistant", "all")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCHEDULES = ("cosine", "linear", "constant")
# A full fine-tune keeps weights, gradients and two Adam moments in memory: ~16 bytes a weight.
FULL_MAX_PARAMETERS = 1_000_000_000
EFFECTIVE_BATCH = 8
# micro_batch 0: pick it from the data's lengths, at about this many tokens per micro-batch.
AUTO_BATCH_TOKENS = 2048
AUTO_BATCH_MAX = 8


@dataclass
class TrainConfig:
    base_model: str  # a ModelRef id or a path (GGUF file or Hugging Face folder)
    dataset: str  # path of the dataset file (see desktop_llm.core.datasets)
    # How the dataset's fields map to chat turns (core.datasets.FieldMapping as JSON); None: detected.
    mapping: dict[str, Any] | None = None
    output: str = ""  # the run folder (set by runs.create_run)
    method: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target: str = "all-linear"  # peft target_modules: "all-linear" or comma-separated module names
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.1
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: int = 2
    max_steps: int = 0  # 0: no limit; else stop after this many optimizer steps
    micro_batch: int = 4  # 0: chosen from the records' lengths
    grad_accum: int = 0  # 0: so that micro_batch * grad_accum is about EFFECTIVE_BATCH
    max_length: int = 1024
    length_policy: str = "drop"
    validation_fraction: float = 0.1
    train_on: str = "assistant"
    eval_every: int = 50  # steps; 0: only at the end
    sample_every: int = 50  # steps; 0: never
    sample_max_tokens: int = 48
    checkpoint_every: int = 100  # steps; 0: only when cancelled
    keep_checkpoints: int = 2
    sample_prompts: list[str] = field(default_factory=list)  # empty: first user messages of 3 validation records
    seed: int = 42
    device: str = "auto"
    gradient_checkpointing: bool = True

    # -- derived values ----------------------------------------------------------------------
    def accumulation(self, micro_batch: int | None = None) -> int:
        """Micro-batches per optimizer step."""
        if self.grad_accum > 0:
            return self.grad_accum
        mb = micro_batch or self.micro_batch or 1
        return max(1, round(EFFECTIVE_BATCH / mb))

    def field_mapping(self) -> FieldMapping | None:
        """``mapping`` as the dataset reader's ``FieldMapping``."""
        if self.mapping is None:
            return None
        m = self.mapping
        hint = 'Example: {"shape": "alpaca", "fields": {"instruction": "question", "output": "answer"}}.'
        if not isinstance(m, dict) or not isinstance(m.get("shape"), str):
            raise InvalidRequest("Fine-tune setting 'mapping' must be an object with a 'shape'.", hint)
        extra = sorted(set(m) - {"shape", "fields", "roles", "system_prompt"})
        if extra:
            raise InvalidRequest(f"Fine-tune setting 'mapping' has an unknown part {extra[0]!r}.",
                                 "It takes: shape, fields, roles, system_prompt.")
        for part in ("fields", "roles"):
            value = m.get(part) or {}
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in value.items()):
                raise InvalidRequest(f"Fine-tune setting 'mapping' needs '{part}' to map names to names.", hint)
        system = m.get("system_prompt")
        if system is not None and not isinstance(system, str):
            raise InvalidRequest("Fine-tune setting 'mapping' needs 'system_prompt' to be text.")
        return FieldMapping(m["shape"], dict(m.get("fields") or {}), dict(m.get("roles") or {}), system)

    def with_updates(self, **changes: Any) -> TrainConfig:
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise InvalidRequest(f"Unknown fine-tune setting {unknown[0]!r}.",
                                 f"Known settings: {', '.join(f.name for f in fields(self))}.")
        return replace(self, **changes)

    # -- checks ------------------------------------------------------------------------------
    def validate(self, check_files: bool = True) -> TrainConfig:
        """Raise ``InvalidRequest`` naming the first bad field; return self so calls chain."""

        def bad(name: str, why: str, hint: str = "") -> InvalidRequest:
            return InvalidRequest(f"Fine-tune setting '{name}' {why}.", hint)

        def number(name: str, low: float, high: float, integer: bool = False) -> None:
            value = getattr(self, name)
            ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
                raise bad(name, f"must be {'a whole number' if integer else 'a number'}, not {value!r}")
            if not low <= value <= high:
                raise bad(name, f"must be between {low:g} and {high:g}, not {value!r}")

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise bad(name, f"must be one of {', '.join(allowed)}, not {value!r}")

        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise bad("base_model", "is empty", "Pick the model to fine-tune.")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise bad("dataset", "is empty", "Pick a dataset file (JSONL with chat messages or text).")
        if check_files and not Path(self.dataset).expanduser().is_file():
            raise bad("dataset", f"names a file that does not exist: {self.dataset}",
                      "Check the path, or pick the dataset file again.")
        if self.mapping is not None:
            self.field_mapping()  # raises, naming the field, when the mapping is malformed
        choice("method", METHODS)
        if self.method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
            raise bad("method", "is qlora, which needs an NVIDIA GPU (CUDA) and the bitsandbytes package",
                      "Use lora: on this machine it trains the same adapter, with the base model unquantized.")
        number("lora_r", 1, 1024, integer=True)
        number("lora_alpha", 1, 4096)
        number("lora_dropout", 0.0, 0.9)
        if not isinstance(self.target, str) or not self.target.strip():
            raise bad("target", "is empty", "Use all-linear, or module names such as q_proj,v_proj.")
        number("learning_rate", 1e-8, 1.0)
        number("warmup_ratio", 0.0, 0.5)
        choice("lr_schedule", SCHEDULES)
        number("weight_decay", 0.0, 1.0)
        number("max_grad_norm", 0.0, 1e6)
        number("epochs", 1, 100, integer=True)
        number("max_steps", 0, 10_000_000, integer=True)
        number("micro_batch", 0, 1024, integer=True)
        number("grad_accum", 0, 1024, integer=True)
        number("max_length", 16, 1_048_576, integer=True)
        choice("length_policy", LENGTH_POLICIES)
        number("validation_fraction", 0.0, 0.5)
        choice("train_on", TRAIN_ON)
        for name in ("eval_every", "sample_every", "checkpoint_every"):
            number(name, 0, 10_000_000, integer=True)
        number("sample_max_tokens", 1, 4096, integer=True)
        number("keep_checkpoints", 1, 100, integer=True)
        if not isinstance(self.sample_prompts, list) or not all(isinstance(p, str) for p in self.sample_prompts):
            raise bad("sample_prompts", "must be a list of texts")
        number("seed", 0, 2**32 - 1, integer=True)
        choice("device", DEVICES)
        if not isinstance(self.gradient_checkpointing, bool):
            raise bad("gradient_checkpointing", f"must be true or false, not {self.gradient_checkpointing!r}")
        return self

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> TrainConfig:
        """Build from JSON data. ``strict``: an unknown key is an error (a typo in a user's file);
        otherwise it is dropped (a run folder written by a newer version of the app)."""
        if not isinstance(data, dict):
            raise InvalidRequest("A fine-tune config must be a JSON object.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown and strict:
            raise InvalidRequest(f"Unknown fine-tune setting {unknown[0]!r}.",
                                 f"Known settings: {', '.join(sorted(known))}.")
        for required in ("base_model", "dataset"):
            if required not in data:
                raise InvalidRequest(f"The fine-tune config has no '{required}'.")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, strict: bool = True) -> TrainConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidRequest(f"The fine-tune config is not valid JSON ({exc}).") from exc
        return cls.from_dict(data, strict)

    @classmethod
    def from_file(cls, path: str | Path, strict: bool = True) -> TrainConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidRequest(f"Cannot read the fine-tune config {path}: {exc.strerror or exc}.",
                                 "Check the file exists and is readable.") from exc
        return cls.from_json(text, strict)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: dict[str, Any]

    def apply(self, config: TrainConfig) -> TrainConfig:
        return config.with_updates(**self.values)


PRESETS: dict[str, Preset] = {
    "Quick test": Preset(
        "Quick test", "A few minutes: checks the data and the set-up, does not learn much.",
        {"epochs": 1, "max_steps": 30, "lora_r": 8, "lora_alpha": 16, "max_length": 512,
         "eval_every": 10, "sample_every": 15, "checkpoint_every": 0, "sample_max_tokens": 32}),
    "Balanced": Preset(
        "Balanced", "The usual choice: LoRA r 16 on all linear layers, 2 epochs.",
        {"epochs": 2, "max_steps": 0, "lora_r": 16, "lora_alpha": 32, "learning_rate": 2e-4,
         "max_length": 1024, "eval_every": 50, "sample_every": 50, "checkpoint_every": 100}),
    "Thorough": Preset(
        "Thorough", "Slower: a larger adapter, 3 epochs, a gentler learning rate, longer records.",
        {"epochs": 3, "max_steps": 0, "lora_r": 32, "lora_alpha": 64, "learning_rate": 1e-4,
         "max_length": 2048, "eval_every": 100, "sample_every": 100, "checkpoint_every": 200}),
}
DEFAULT_PRESET = "Balanced"


def preset_config(name: str, base_model: str, dataset: str, **changes: Any) -> TrainConfig:
    """A config from a named preset, with ``changes`` on top."""
    preset = PRESETS.get(name)
    if preset is None:
        raise InvalidRequest(f"There is no fine-tune preset {name!r}.", f"Presets: {', '.join(PRESETS)}.")
    return preset.apply(TrainConfig(base_model=base_model, dataset=dataset)).with_updates(**changes)


def check_method(method: str, parameters: int | None, cuda: bool, bitsandbytes: bool) -> None:
    """Refuse a method this model or machine cannot run, saying why (called by the training process)."""
    if method == "full" and parameters is not None and parameters > FULL_MAX_PARAMETERS:
        raise InvalidRequest(
            f"A full fine-tune of a model with {parameters / 1e9:.1f} billion weights needs far more memory "
            "than a LoRA adapter (about 16 bytes a weight).",
            "Use method lora; full fine-tuning is offered for models under 1 billion weights.")
    if method == "qlora" and not (cuda and bitsandbytes):
        missing = "an NVIDIA GPU (CUDA)" if not cuda else "the bitsandbytes package"
        raise InvalidRequest(f"QLoRA needs {missing}, which this machine does not have.",
                             "Use method lora: it trains the same kind of adapter on an unquantized model.")
