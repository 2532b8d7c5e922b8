"""The training process: one fine-tuning run, reported as JSON-lines events.

``python -m desktop_llm.finetune RUN_DIR`` reads ``RUN_DIR/config.json`` (a ``TrainConfig``),
trains, and writes every event both to stdout (for the app that started it) and to
``RUN_DIR/events.jsonl`` (the run's history, so a restarted app can show its curves or reattach).

The loop is our own rather than transformers' Trainer: records are grouped by length (sorted
within buckets, the buckets shuffled each epoch) and padded only to the longest in their batch,
and the output layer runs only on the tokens that are trained (the assistant's replies), which
skips most of the vocabulary-sized logits. The data order is a function of (seed, epoch), so a
checkpoint needs only the step, epoch and position to resume exactly where it stopped.

Cancel: a line ``cancel`` on stdin, or SIGTERM / SIGINT. The current step finishes, a
checkpoint is written and a ``cancelled`` event sent; the exit code is 0. Running it again on
the same folder resumes from the newest checkpoint.

torch, transformers and peft are imported here; this module only runs in the training process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from desktop_llm.core.chat_template import render_chat
from desktop_llm.core.datasets import load_dataset, split
from desktop_llm.core.errors import DesktopLLMError, InvalidRequest, ModelLoadError
from desktop_llm.core.models import resolve_model
from desktop_llm.finetune import runs
from desktop_llm.finetune.config import TrainConfig, check_method
from desktop_llm.finetune.estimate import (
    ModelShape,
    epoch_batches,
    estimate_seconds,
    lr_at,
    memory_estimate,
    steps_of,
)
from desktop_llm.finetune.event_stream import claim_stdout
from desktop_llm.finetune.tokenize import (
    IGNORE,
    TokenizedExample,
    chat_template_of,
    special_tokens_of,
    tokenize_records,
)

STATE_FILE = runs.CHECKPOINT_STATE
RECENT_LOSSES = 20
# Settings that change what is trained or in which order; a checkpoint only resumes a run with the same.
_RESUME_KEYS = ("method", "lora_r", "lora_alpha", "lora_dropout", "target", "learning_rate", "warmup_ratio",
                "lr_schedule", "weight_decay", "epochs", "max_steps", "micro_batch", "grad_accum", "max_length",
                "length_policy", "validation_fraction", "train_on", "seed")


# A sample prompt: chat messages to render with the template, or raw text (text datasets).
Prompt = list[dict[str, str]] | str


class Cancelled(Exception):
    """The user asked to stop (not an error)."""


# -- events ----------------------------------------------------------------------------------------
class EventLog:
    """Writes each event as one JSON line to the protocol stream and to the run's events.jsonl."""

    def __init__(self, run_dir: Path, out: BinaryIO | None) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._file = None
        if run_dir.is_dir():
            self._file = (run_dir / runs.EVENTS_FILE).open("a", encoding="utf-8")

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        data = {"event": event, **fields, "time": round(time.time(), 3)}
        line = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str) + "\n"
        with self._lock:
            if self._file is not None:
                self._file.write(line)
                self._file.flush()
            if self._out is not None:
                try:
                    self._out.write(line.encode("utf-8"))
                    self._out.flush()
                except (BrokenPipeError, OSError, ValueError):
                    # The app went away: keep training; events.jsonl still has everything.
                    self._out = None
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _clean(value: float | None, digits: int = 5) -> float | None:
    """JSON has no NaN or infinity: a diverged loss is reported as null."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


# -- helpers ----------------------------------------------------------------------------------------
def pick_device(requested: str) -> torch.device:
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InvalidRequest("Fine-tune setting 'device' is cuda, but this machine has no usable CUDA GPU.",
                             "Use auto or cpu.")
    if requested == "mps" and not mps_ok:
        raise InvalidRequest("Fine-tune setting 'device' is mps, but Metal is not available here.",
                             "Use auto or cpu.")
    return torch.device(requested)


def pick_dtype(device: torch.device, method: str) -> torch.dtype:
    # CPU and Metal train in float32. On CUDA the frozen base may be half precision (peft keeps the
    # adapter in float32); a full fine-tune needs bfloat16 at least (float16 weights underflow).
    if device.type != "cuda":
        return torch.float32
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32 if method == "full" else torch.float16


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    from transformers import __version__ as tf_version

    major, minor = (int(x) for x in tf_version.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _Plan:
    """The shape of the run: batch sizes, steps, and the fingerprint a checkpoint must match to resume."""

    def __init__(self, config: TrainConfig, lengths: list[int], micro_batch: int, accum: int,
                 steps_per_epoch: int, total_steps: int, fingerprint: str) -> None:
        self.lengths = lengths
        self.micro_batch = micro_batch
        self.accum = accum
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self.warmup = math.ceil(config.warmup_ratio * total_steps)
        self.epoch_tokens = sum(lengths)
        self.fingerprint = fingerprint

    @classmethod
    def make(cls, config: TrainConfig, train: Sequence[TokenizedExample]) -> _Plan:
        lengths = [len(e) for e in train]
        micro_batch, accum, steps_per_epoch, total = steps_of(config, lengths)
        fingerprint = hashlib.sha256(json.dumps(
            [[e.line, len(e), e.trained_tokens] for e in train] + [{k: getattr(config, k) for k in _RESUME_KEYS}],
        ).encode()).hexdigest()[:16]
        return cls(config, lengths, micro_batch, accum, steps_per_epoch, total, fingerprint)


class _Progress:
    """Where the run is: optimizer steps done, and the epoch and micro-batch position in its data order."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.recent: deque[float] = deque(maxlen=RECENT_LOSSES)

    def advance(self, micro_batches: int, epoch_length: int, loss: float) -> None:
        self.step += 1
        self.position += micro_batches
        if self.position >= epoch_length:
            self.epoch, self.position = self.epoch + 1, 0
        self.recent.append(loss)

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "position": self.position,
                "recent_losses": list(self.recent)}

    def restore(self, saved: dict[str, Any]) -> None:
        self.step, self.epoch, self.position = int(saved["step"]), int(saved["epoch"]), int(saved["position"])
        self.recent.extend(float(x) for x in saved.get("recent_losses", []))


# -- the run ----------------------------------------------------------------------------------------
def load_base(base_model: str, stage: Callable[[str, float], None]) -> tuple[Any, Any, Path]:
    """(ModelRef, tokenizer, safetensors folder) of a base model; a GGUF base is converted once and cached.

    ``stage(what, fraction)`` reports progress (and may raise to cancel).
    """
    ref = resolve_model(base_model)
    if ref.error:
        raise ModelLoadError(ref.error)
    if ref.format == "gguf":
        from desktop_llm.engine.backends.torch import gguf_safetensors_copy

        folder = gguf_safetensors_copy(Path(ref.path), lambda what, fraction: stage(what, 0.05 + 0.6 * fraction))
    else:
        folder = Path(ref.path)
        if not any(folder.glob("*.safetensors")):
            raise ModelLoadError(f"{ref.name} has no *.safetensors weights to fine-tune.",
                                 "Use a safetensors model folder or a GGUF file.")
    stage("tokenizer", 0.7)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"Could not load the tokenizer of {ref.name}: {exc}.",
                             "The model folder may be incomplete; download it again.") from exc
    return ref, tokenizer, folder


class Trainer:
    def __init__(self, run_dir: Path, events: EventLog, cancel: threading.Event) -> None:
        self.run_dir = run_dir
        self.events = events
        self.cancel = cancel
        self.emit = events.emit
        self.config: TrainConfig | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = torch.device("cpu")
        self._fast_loss: tuple[Any, Any] | None = None  # (decoder, output layer) when verified
        self._session_start = time.perf_counter()
        self._seconds_before = 0.0  # training seconds of earlier sessions of this run (resumed)

    # -- loading -----------------------------------------------------------------------------
    def _stage(self, stage: str, fraction: float, detail: str = "") -> None:
        self.emit("stage", stage=stage, fraction=round(fraction, 3), **({"detail": detail} if detail else {}))

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled

    def _load_config(self) -> TrainConfig:
        path = self.run_dir / runs.CONFIG_FILE
        if not path.is_file():
            raise InvalidRequest(f"{self.run_dir} is not a fine-tune run: it has no {runs.CONFIG_FILE}.",
                                 "Create the run from the app or with `desktop-llm finetune`.")
        return TrainConfig.from_file(path, strict=False).validate()

    def _load_model(self, config: TrainConfig) -> tuple[Any, Any, Path]:
        def stage(what: str, fraction: float) -> None:
            self._stage("loading", fraction, what)
            self._check_cancel()

        return load_base(config.base_model, stage)

    def _build_model(self, config: TrainConfig, folder: Path, ref: Any, resume_from: Path | None) -> Any:
        from transformers import AutoModelForCausalLM

        self.device = pick_device(config.device)
        cuda = self.device.type == "cuda"
        check_method(config.method, ref.parameters, cuda, importlib.util.find_spec("bitsandbytes") is not None)
        dtype = pick_dtype(self.device, config.method)
        kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True, **_dtype_kwarg(dtype)}
        if config.method == "qlora":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype)
            kwargs["device_map"] = {"": self.device.index or 0}
        # A full fine-tune resumes from its checkpoint's weights; LoRA from the base plus the saved adapter.
        source = resume_from if (config.method == "full" and resume_from is not None) else folder
        self._stage("loading", 0.75, "weights")
        try:
            model = AutoModelForCausalLM.from_pretrained(str(source), **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, ImportError, TypeError) as exc:
            raise ModelLoadError(f"PyTorch could not load {ref.name}: {type(exc).__name__}: {exc}",
                                 "The files may be incomplete or from a newer transformers; download them again.",
                                 ) from exc
        if config.method != "qlora":
            model.to(self.device)
        model.config.use_cache = False  # a cache is useless in training and costs memory
        if config.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
        elif config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if config.method != "full":
                # Frozen embeddings give activations without grad; LoRA layers behind them still need it.
                model.enable_input_require_grads()
        if config.method in ("lora", "qlora"):
            from peft import LoraConfig, get_peft_model

            targets: str | list[str] = config.target if config.target == "all-linear" else [
                t.strip() for t in config.target.split(",") if t.strip()]
            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=targets, task_type="CAUSAL_LM", bias="none")
            try:
                model = get_peft_model(model, lora)
            except ValueError as exc:
                raise InvalidRequest(f"Fine-tune setting 'target' does not fit this model: {exc}",
                                     "Use all-linear, or module names of this model such as q_proj,v_proj.") from exc
        self._stage("loading", 1.0)
        return model

    def _setup_fast_loss(self) -> None:
        """Use decoder + output layer on trained positions only, if this model gives the same logits that way.

        Some architectures post-process logits (soft-capping, scaling); the check on a short input
        catches those, and they fall back to the model's own forward.
        """
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        try:
            decoder, head = base.get_decoder(), base.get_output_embeddings()
        except (AttributeError, NotImplementedError):
            return
        if decoder is None or head is None:
            return
        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=self.device) % int(head.weight.shape[0])
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                full = self.model(input_ids=ids, use_cache=False).logits.float()
                fast = head(decoder(input_ids=ids, use_cache=False).last_hidden_state).float()
        except Exception:  # noqa: BLE001 - any trouble: use the model's own forward
            return
        finally:
            self.model.train(was_training)
        scale = float(full.abs().max()) or 1.0
        if full.shape == fast.shape and float((full - fast).abs().max()) <= 1e-3 * scale:
            self._fast_loss = (decoder, head)

    # -- loss --------------------------------------------------------------------------------
    def _batch(self, examples: Sequence[TokenizedExample]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        longest = max(len(e) for e in examples)
        ids = torch.zeros((len(examples), longest), dtype=torch.long)
        labels = torch.full((len(examples), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e)
            ids[row, :n] = torch.tensor(e.input_ids)
            labels[row, :n] = torch.tensor(e.labels)
            mask[row, :n] = 1
        padded = bool((mask == 0).any())
        return (ids.to(self.device), mask.to(self.device) if padded else None, labels.to(self.device))

    def _loss_sum(self, ids: torch.Tensor, mask: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """Sum of the cross-entropy over the trained tokens (the caller divides by their count)."""
        targets = labels[:, 1:]
        keep = targets != IGNORE
        if self._fast_loss is not None:
            decoder, head = self._fast_loss
            hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            logits = head(hidden[:, :-1][keep])
        else:
            logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][keep]
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum")

    def evaluate(self, examples: Sequence[TokenizedExample], micro_batch: int) -> float | None:
        if not examples:
            return None
        order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
        total, count = 0.0, 0
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), micro_batch * 2):
                    if self.cancel.is_set():
                        return None
                    group = [examples[i] for i in order[start:start + micro_batch * 2]]
                    total += float(self._loss_sum(*self._batch(group)))
                    count += sum(e.trained_tokens for e in group)
        finally:
            self.model.train()
        return total / count if count else None

    # -- samples -----------------------------------------------------------------------------
    def _sample_prompts(self, config: TrainConfig, records: Sequence[Any]) -> list[tuple[str, Prompt]]:
        """(prompt shown to the user, what is rendered): chat messages, or raw text for text datasets."""
        if config.sample_prompts:
            return [(p, [{"role": "user", "content": p}]) for p in config.sample_prompts]
        out: list[tuple[str, Prompt]] = []
        for record in records:
            if len(out) == 3:
                break
            if record.messages is not None:
                first_user = next((i for i, m in enumerate(record.messages) if m["role"] == "user"), None)
                if first_user is not None and all(shown != record.messages[first_user]["content"] for shown, _ in out):
                    # Keep a leading system message: the model was trained with it.
                    turns = [dict(m) for m in record.messages[:first_user + 1] if m["role"] in ("system", "user")]
                    out.append((record.messages[first_user]["content"], turns))
            elif record.text:
                words = record.text.split()
                head = " ".join(words[:max(3, min(12, len(words) // 3))])
                out.append((head, head))
        return out

    def sample(self, prompts: Sequence[tuple[str, Prompt]], step: int,
               max_tokens: int, template: str | None) -> None:
        if not prompts:
            return
        eog: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config, self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            eog |= {value} if isinstance(value, int) else set(value or [])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eog or {0})
        self.model.eval()
        try:
            for shown, rendered in prompts:
                if self.cancel.is_set():
                    return
                if isinstance(rendered, str):
                    ids = self.tokenizer(rendered, add_special_tokens=True)["input_ids"]
                else:
                    text = render_chat(template, rendered, add_generation_prompt=True,
                                       special_tokens=special_tokens_of(self.tokenizer))
                    ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                inputs = torch.tensor([ids], device=self.device)
                with torch.no_grad():
                    out = self.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs),
                                              max_new_tokens=max_tokens, do_sample=False, use_cache=True,
                                              eos_token_id=sorted(eog) or None, pad_token_id=pad,
                                              temperature=None, top_p=None, top_k=None)
                reply = self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()
                self.emit("sample", step=step, prompt=shown, reply=reply)
        finally:
            self.model.train()

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
        root = self.run_dir / runs.CHECKPOINTS_DIR
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{state['step']:06d}"
        tmp = root / f".{final.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(str(tmp))  # peft: the adapter only; full: the whole model
        torch.save({**state, "optimizer": optimizer.state_dict(), "rng": _rng_state()}, tmp / STATE_FILE)
        (tmp / "state.json").write_text(json.dumps({k: v for k, v in state.items() if k != "recent_losses"},
                                                   indent=1, default=str))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        keep = self.config.keep_checkpoints if self.config else 2
        older = sorted((p for p in root.glob("step-*") if p != final), key=lambda p: p.name)
        for old in older[:max(0, len(older) - (keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
        self.emit("checkpoint", step=state["step"], path=str(final))
        return final

    # -- main --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._stage("loading", 0.0, "dataset")
        config = self.config = self._load_config()
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self._refuse_finished()
        data = load_dataset(config.dataset, config.field_mapping())
        self.emit("dataset", records=len(data.records), total=data.total, summary=data.summary(),
                  mapping=data.mapping.describe(), notes=list(data.notes),
                  problems=[_problem_dict(p) for p in data.problems])
        if not data.records:
            raise InvalidRequest(f"No record of {Path(config.dataset).name} can be used for training.",
                                 " ".join(p.message for p in data.problems[:3]))
        self._check_cancel()

        ref, self.tokenizer, folder = self._load_model(config)
        self._check_cancel()
        resume_from = runs.latest_checkpoint(self.run_dir)
        self.model = self._build_model(config, folder, ref, resume_from)
        self._check_cancel()

        self._stage("tokenizing", 0.0)
        template = chat_template_of(self.tokenizer)
        examples, problems = tokenize_records(data, self.tokenizer, template, config.max_length,
                                              config.length_policy, train_on=config.train_on)
        if problems:
            self.emit("problems", problems=[_problem_dict(p) for p in problems])
        by_line = {e.line: e for e in examples}
        train_records, val_records = split([r for r in data.records if r.line in by_line],
                                           config.validation_fraction, config.seed)
        train = [by_line[r.line] for r in train_records]
        val = [by_line[r.line] for r in val_records]
        if not train:
            raise InvalidRequest("No record is left to train on after the length limit.",
                                 f"Raise the maximum length (now {config.max_length} tokens) or choose to "
                                 "truncate long records.")
        self._stage("tokenizing", 1.0)
        self._check_cancel()

        plan = _Plan.make(config, train)
        saved = self._restore(resume_from, plan.fingerprint) if resume_from is not None else None
        self._setup_fast_loss()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        progress = _Progress()
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
            _set_rng_state(saved["rng"])
            progress.restore(saved)
            self._seconds_before = float(saved.get("seconds", 0.0))
            self.emit("resumed", step=progress.step, epoch=progress.epoch, checkpoint=str(resume_from))
        self._emit_plan(plan, train, val, trainable, progress.step if saved is not None else None)
        self._check_cancel()

        self._stage("training", 0.0)
        prompts = self._sample_prompts(config, val_records or train_records)
        if not self._train_loop(plan, train, val, optimizer, trainable, progress, prompts, template):
            return {"event": "cancelled"}

        val_loss = self.evaluate(val, plan.micro_batch) if val else None
        if val_loss is not None:
            self.emit("eval", step=progress.step, val_loss=_clean(val_loss))
        if config.sample_every:
            self.sample(prompts, progress.step, config.sample_max_tokens, template)
        self.cancel.clear()  # the training is done: a late cancel must not lose the result
        out = self._save_result(config, folder, progress.step)
        train_loss = sum(progress.recent) / len(progress.recent) if progress.recent else None
        seconds = self._seconds_before + time.perf_counter() - self._session_start
        return self.emit("done", adapter=str(out), steps=progress.step, train_loss=_clean(train_loss),
                         val_loss=_clean(val_loss), seconds=round(seconds, 1))

    def _restore(self, checkpoint: Path, fingerprint: str) -> dict[str, Any]:
        """Load a checkpoint's adapter and state; refuse one made with other settings or data."""
        saved = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") != fingerprint:
            raise InvalidRequest(
                f"The checkpoint in {checkpoint} belongs to other settings or another dataset, "
                "so this run cannot resume from it.",
                "Start a new run (or put the dataset file and settings back as they were).")
        if self.config is not None and self.config.method != "full":  # a full fine-tune loaded its weights
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            weights = load_file(str(checkpoint / "adapter_model.safetensors"), device=str(self.device))
            result = set_peft_model_state_dict(self.model, weights)
            if getattr(result, "unexpected_keys", None):
                raise InvalidRequest(f"The checkpoint {checkpoint.name} does not match this model's adapter.",
                                     "Start a new run.")
        return saved

    def _emit_plan(self, plan: _Plan, train: Sequence[TokenizedExample], val: Sequence[TokenizedExample],
                   trainable: Sequence[torch.nn.Parameter], resumed_from: int | None) -> None:
        assert self.config is not None
        n_params = sum(p.numel() for p in self.model.parameters())
        n_trainable = sum(p.numel() for p in trainable)
        run_tokens = int(plan.epoch_tokens * plan.total_steps / plan.steps_per_epoch)
        remaining = int(run_tokens * (plan.total_steps - (resumed_from or 0)) / plan.total_steps)
        self.emit("plan", examples=len(train), validation=len(val), steps=plan.total_steps,
                  epochs=self.config.epochs, steps_per_epoch=plan.steps_per_epoch, micro_batch=plan.micro_batch,
                  grad_accum=plan.accum, effective_batch=plan.micro_batch * plan.accum, warmup_steps=plan.warmup,
                  tokens=run_tokens, trained_tokens=sum(e.trained_tokens for e in train), parameters=n_params,
                  trainable_parameters=n_trainable, method=self.config.method, device=str(self.device),
                  dtype=str(next(self.model.parameters()).dtype).removeprefix("torch."),
                  estimate_seconds=round(self._estimate_seconds(n_params, n_trainable, remaining,
                                                                self.config.gradient_checkpointing)),
                  memory_estimate_bytes=self._memory_estimate(n_params, n_trainable, plan.micro_batch,
                                                              max(plan.lengths)),
                  loss_on_trained_positions_only=self._fast_loss is not None, resumed_from=resumed_from)

    def _train_loop(self, plan: _Plan, train: Sequence[TokenizedExample], val: Sequence[TokenizedExample],
                    optimizer: torch.optim.Optimizer, trainable: Sequence[torch.nn.Parameter], progress: _Progress,
                    prompts: Sequence[tuple[str, Prompt]], template: str | None) -> bool:
        """Train up to the plan's last step; False when cancelled (after writing a checkpoint)."""
        config = self.config
        assert config is not None
        self.model.train()
        recent_steps: deque[tuple[float, int]] = deque(maxlen=10)  # (seconds, tokens) for speed and ETA
        while progress.step < plan.total_steps:
            batches = epoch_batches(plan.lengths, plan.micro_batch, config.seed, progress.epoch)
            while progress.position < len(batches) and progress.step < plan.total_steps:
                started = time.perf_counter()
                group = [[train[i] for i in mb] for mb in batches[progress.position:progress.position + plan.accum]]
                n_trained = sum(e.trained_tokens for mb in group for e in mb)
                lr = lr_at(progress.step, plan.total_steps, plan.warmup, config.learning_rate, config.lr_schedule)
                for group_params in optimizer.param_groups:
                    group_params["lr"] = lr
                loss_total = 0.0
                for mb in group:
                    # Each micro-batch's share of the step's mean over all its trained tokens.
                    loss = self._loss_sum(*self._batch(mb)) / max(1, n_trained)
                    loss.backward()
                    loss_total += float(loss.detach())
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm or float("inf"))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                progress.advance(len(group), len(batches), loss_total)
                recent_steps.append((time.perf_counter() - started, sum(len(e) for mb in group for e in mb)))
                spent = sum(s for s, _ in recent_steps)
                self.emit("step", step=progress.step, total_steps=plan.total_steps,
                          epoch=round(progress.epoch + progress.position / len(batches), 4), loss=_clean(loss_total),
                          lr=_clean(lr, 8), grad_norm=_clean(float(grad_norm), 4),
                          tokens_per_second=round(sum(t for _, t in recent_steps) / spent, 1) if spent else None,
                          eta_seconds=round(spent / len(recent_steps) * (plan.total_steps - progress.step), 1))
                if progress.step == plan.total_steps:
                    return True
                state = {**progress.state(), "total_steps": plan.total_steps, "fingerprint": plan.fingerprint,
                         "scheduler": {"kind": config.lr_schedule, "warmup_steps": plan.warmup,
                                       "total_steps": plan.total_steps, "base_lr": config.learning_rate},
                         "seconds": self._seconds_before + time.perf_counter() - self._session_start}
                if config.eval_every and progress.step % config.eval_every == 0 and val:
                    val_loss = self.evaluate(val, plan.micro_batch)
                    if val_loss is not None:
                        self.emit("eval", step=progress.step, val_loss=_clean(val_loss))
                if config.sample_every and progress.step % config.sample_every == 0:
                    self.sample(prompts, progress.step, config.sample_max_tokens, template)
                if self.cancel.is_set():
                    path = self.save_checkpoint(optimizer, state)
                    self.emit("cancelled", step=progress.step, checkpoint=str(path))
                    return False
                if config.checkpoint_every and progress.step % config.checkpoint_every == 0:
                    self.save_checkpoint(optimizer, state)
        return True

    def _save_result(self, config: TrainConfig, folder: Path, steps: int) -> Path:
        self._stage("saving", 0.0)
        out = self.run_dir / (runs.ADAPTER_DIR if config.method != "full" else runs.MODEL_DIR)
        tmp = out.with_name(f".{out.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(str(tmp))
        # The tokenizer and chat template travel with the adapter, for merging and exporting it later.
        self.tokenizer.save_pretrained(str(tmp))
        (tmp / "desktop_llm_run.json").write_text(json.dumps(
            {"base_model": config.base_model, "base_folder": str(folder), "method": config.method,
             "steps": steps, "run": self.run_dir.name}, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        # The result supersedes the checkpoints (which can be large for a full fine-tune).
        shutil.rmtree(self.run_dir / runs.CHECKPOINTS_DIR, ignore_errors=True)
        self._stage("saving", 1.0)
        return out

    def _refuse_finished(self) -> None:
        done = next((e for e in reversed(runs.read_events(self.run_dir)) if e.get("event") == "done"), None)
        finished = done is not None and Path(str(done.get("adapter", ""))).is_dir()
        if finished and runs.latest_checkpoint(self.run_dir) is None:
            raise InvalidRequest(f"This run has already finished; its result is in {done['adapter']}.",
                                 "Start a new run to train again.")

    def _estimate_seconds(self, n_params: int, n_trainable: int, tokens: int, checkpointing: bool) -> float:
        return estimate_seconds(n_params, n_trainable, tokens, checkpointing, self.device.type,
                                torch.get_num_threads())

    def _memory_estimate(self, n_params: int, n_trainable: int, micro_batch: int, longest: int) -> int:
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        shape = ModelShape.from_config(cfg.to_dict(), n_params)
        return memory_estimate(shape, n_trainable, next(self.model.parameters()).element_size(), micro_batch,
                               longest, bool(self.config and self.config.gradient_checkpointing))


def _problem_dict(problem: Any) -> dict[str, Any]:
    return {"line": problem.line, "kind": problem.kind, "message": problem.message, "dropped": problem.dropped}


# -- process entry ----------------------------------------------------------------------------------
def _watch_stdin(cancel: threading.Event) -> None:
    # Raw reads of fd 0: a daemon thread blocked inside sys.stdin's buffered reader makes the
    # interpreter abort at exit ("could not acquire lock for <stdin>").
    pending = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except OSError:
            return
        if not chunk:
            # stdin closed: the app went away. Training goes on (events.jsonl keeps the record) so
            # a restarted app can reattach; SIGTERM still cancels.
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if any(line.strip().lower() in (b"cancel", b'{"op": "cancel"}', b'{"op":"cancel"}') for line in lines):
            cancel.set()


def _claim(run_dir: Path) -> None:
    """Refuse to train a run that another live process is training; record this process as its trainer."""
    other = runs.running_pid(run_dir)
    if other is not None and other != os.getpid():
        raise InvalidRequest(f"This run is already training (process {other}).",
                             "Wait for it to finish, or cancel it first.")
    import psutil

    info = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    (run_dir / runs.PROCESS_FILE).write_text(json.dumps(info))


def main(argv: Sequence[str] | None = None, out: BinaryIO | None = None,
         install_handlers: bool = True) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m desktop_llm.finetune RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0]).expanduser()
    if out is None:
        out = claim_stdout().stream  # anything a library prints goes to stderr (train.log)
    events = EventLog(run_dir, out)
    cancel = threading.Event()
    if install_handlers:
        threading.Thread(target=_watch_stdin, args=(cancel,), name="stdin", daemon=True).start()
        signal.signal(signal.SIGTERM, lambda *_: cancel.set())

        def on_ctrl_c(signum: int, frame: Any) -> None:
            if cancel.is_set():  # the second Ctrl+C in a terminal stops at once
                signal.default_int_handler(signum, frame)
            cancel.set()

        signal.signal(signal.SIGINT, on_ctrl_c)
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()  # progress bars would fill train.log with carriage returns
    trainer = Trainer(run_dir, events, cancel)
    claimed = False
    try:
        if not run_dir.is_dir():
            raise InvalidRequest(f"The run folder {run_dir} does not exist.", "Create the run first.")
        _claim(run_dir)
        claimed = True
        trainer.run()
        return 0
    except (Cancelled, KeyboardInterrupt):
        checkpoint = runs.latest_checkpoint(run_dir)
        step = int(checkpoint.name.split("-")[1]) if checkpoint else 0
        events.emit("cancelled", step=step, checkpoint=str(checkpoint) if checkpoint else None)
        return 0
    except DesktopLLMError as exc:
        events.emit("error", code=exc.code, message=exc.message, hint=exc.hint)
        return 1
    except (MemoryError, torch.OutOfMemoryError):
        traceback.print_exc(file=sys.stderr)
        events.emit("error", code="out_of_memory", message="Training ran out of memory.",
                    hint="Lower the maximum length or the micro-batch size, turn on gradient checkpointing, "
                    "or pick a smaller model. The last checkpoint is kept.")
        return 1
    except Exception as exc:  # noqa: BLE001 - any bug must end as an event, not a silent death
        traceback.print_exc(file=sys.stderr)
        events.emit("error", code="training_failed", message=f"Training failed: {type(exc).__name__}: {exc}",
                    hint=f"See {run_dir / runs.LOG_FILE} for details. The last checkpoint is kept: "
                    "starting the run again resumes from it.")
        return 1
    finally:
        if claimed:
            with contextlib.suppress(OSError):
                (run_dir / runs.PROCESS_FILE).unlink()
        events.close()

