"""Fine-tuning throughput: the app's LoRA trainer against a plain transformers ``Trainer`` + peft set-up.

Both train a LoRA adapter on the bundled SmolLM2-135M-Instruct (the app's safetensors copy of the GGUF,
float32 on CPU, as the app trains there) for the same number of optimizer steps, with the same LoRA
settings, micro-batch, gradient accumulation, learning-rate schedule and gradient checkpointing, on the
same seeded synthetic chat dataset (records of widely varying length, long-tailed as real chat data is).
Both train on identical token ids and labels: the reference tokenizes with the app's own
``tokenize_records`` (loss on the assistant's replies only). What differs is the training loop: the app
groups records of similar length into micro-batches and computes the output layer on trained positions
only; the reference samples records at random and pads each batch to its longest record
(``DataCollatorForSeq2Seq``, ``train_sampling_strategy="random"``, i.e. no ``group_by_length``).
By default the dataset has exactly the records of one run (steps x micro-batch x grad-accum), so each
run trains on every record once: both variants process the same tokens and meet the same longest record.

Runs alternate (app, reference, app, reference ...), each in its own fresh process:
- tokens/s = real (non-padding) tokens of the micro-batches trained in the N steps / training seconds
  (from the start of training to the end of the last optimizer step; process start, model loading and
  tokenizing are left out). App: its ``stage: training`` event to its last ``step`` event, tokens from
  the app's own batch order (``trainer.epoch_batches``); reference: ``on_train_begin`` to the last
  ``on_step_end``, tokens counted from the attention masks of the batches it trained on.
- peak memory = the process's peak RSS (VmHWM in /proc/PID/status, polled the same way for both).
- cores: run / others = CPU the run's process used during training, and what other programs on the
  machine used meanwhile (from /proc/stat): a busy machine slows a run, and this shows which.
Target (issue): the app reaches at least 1.2x the reference's tokens/s, with peak memory no higher.
A measurement, not a test: it exits 0 whether the target is met or not.

    .venv/bin/python bench/finetune_throughput.py [--pairs 3] [--steps 4] [--records 0] [--max-length 512]
        [--micro-batch 4] [--grad-accum 2] [--threads N] [--home DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # import desktop_llm from the repo

from desktop_llm.core.paths import HOME_ENV  # noqa: E402
from desktop_llm.finetune.client import FinetuneProcess  # noqa: E402
from desktop_llm.finetune.config import TrainConfig  # noqa: E402
from desktop_llm.finetune.runs import create_run  # noqa: E402

BASE_MODEL = "bundled:SmolLM2-135M-Instruct"
RESULT_MARK = "BENCH_RESULT "  # a child's result line on stdout: this, then one JSON object
POLL_SECONDS = 0.1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
EVENT_TIMEOUT = 900.0

_WORD_TEXT = (
    "the model data train token layer batch learn answer question simple example water light house river "
    "city garden music paper window energy system market number people history story morning evening "
    "mountain forest ocean island bridge road station letter picture colour small large quick slow warm cold "
    "bright dark early late happy careful strong gentle open close build write read explain describe compare "
    "measure change follow remember improve prepare travel cook plant grow carry share listen speak think "
    "because although however therefore while after before during between around through under over "
    "first second third final important useful common different similar possible likely clear short long "
    "weather kitchen library computer program function value result method reason problem solution idea"
)
WORDS = _WORD_TEXT.split()


# -- the dataset ------------------------------------------------------------------------------------
def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[:1].upper() + text[1:] + "."


def _paragraph(rng: random.Random, words: int) -> str:
    parts, left = [], words
    while left > 0:
        n = min(left, rng.randint(6, 18))
        parts.append(_sentence(rng, n))
        left -= n
    return " ".join(parts)


def make_dataset(path: Path, records: int, seed: int) -> Path:
    """A seeded chat JSONL: short questions, replies with a long-tailed length (lognormal, a few words to ~300)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(records):
            question = _paragraph(rng, rng.randint(4, 30)).rstrip(".") + "?"
            reply_words = int(min(300, max(3, rng.lognormvariate(math.log(55), 0.85))))
            record = {"messages": [{"role": "user", "content": question},
                                   {"role": "assistant", "content": _paragraph(rng, reply_words)}]}
            fh.write(json.dumps(record) + "\n")
    return path


# -- memory ---------------------------------------------------------------------------------------------
def _vm_hwm(pid: int) -> int | None:
    """Peak resident set size of a live process in bytes (None once it has gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, all its threads."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15 of stat)


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (busy time of every core, from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    guest = sum(fields[8:10])  # counted in user and nice already
    return (sum(fields) - idle - guest) / CLOCK_TICKS


class ProcessWatch:
    """Polls a process until it exits: its peak RSS (VmHWM, the last and largest value read), its CPU
    time and the machine's, so the CPU other programs took during the training window shows."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.cpu: list[tuple[float, float, float]] = []  # (time.time(), its CPU seconds, the machine's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"watch-{pid}", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            value, cpu, machine = _vm_hwm(self.pid), _cpu_seconds(self.pid), _system_busy_seconds()
            if value is None or cpu is None:
                return
            self.peak = max(self.peak, value)
            if machine is not None:
                self.cpu.append((time.time(), cpu, machine))
            self._stop.wait(POLL_SECONDS)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def cores(self, start: float, end: float) -> tuple[float, float] | None:
        """(cores the process used, cores all other programs used) from ``start`` to ``end`` (wall clock)."""
        inside = [sample for sample in self.cpu if start <= sample[0] <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return None
        (t0, own0, all0), (t1, own1, all1) = inside[0], inside[-1]
        own = (own1 - own0) / (t1 - t0)
        return own, max(0.0, (all1 - all0) / (t1 - t0) - own)


# -- children ---------------------------------------------------------------------------------------------
def child_env(home: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env[HOME_ENV] = str(home)
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # the app's training process sets it itself (finetune/__main__.py)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_child(mode: str, spec: dict[str, Any], env: dict[str, str],
              log: Path) -> tuple[dict[str, Any], ProcessWatch]:
    """Run this script with a hidden ``mode`` flag; (its result, what was seen of the process)."""
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), mode, json.dumps(spec)],
                                stdout=subprocess.PIPE, stderr=err, env=env)
        watch = ProcessWatch(proc.pid)
        out, _ = proc.communicate()
        watch.stop()
    lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed (exit code {proc.returncode}); see {log}:\n" + _tail(log))
    return json.loads(lines[-1][len(RESULT_MARK):]), watch


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _emit_result(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def prepare_child(spec: dict[str, Any]) -> int:
    """Convert the GGUF once, tokenize the dataset as the app does, and count the tokens of the app's N steps."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as tf_logging

    from desktop_llm.core.datasets import load_dataset
    from desktop_llm.core.models import resolve_model
    from desktop_llm.engine.backends.torch import gguf_safetensors_copy
    from desktop_llm.finetune.tokenize import chat_template_of, tokenize_records
    from desktop_llm.finetune.trainer import epoch_batches

    tf_logging.disable_progress_bar()
    ref = resolve_model(spec["base_model"])
    if ref.error:
        raise SystemExit(ref.error)
    folder = gguf_safetensors_copy(Path(ref.path))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    data = load_dataset(spec["dataset"])
    examples, _ = tokenize_records(data, tokenizer, chat_template_of(tokenizer), spec["max_length"], "drop",
                                   train_on="assistant")
    # The app's order (trainer._train_loop with validation_fraction 0: the examples in file order).
    lengths = [len(e) for e in examples]
    mb, accum, steps, seed = spec["micro_batch"], spec["grad_accum"], spec["steps"], spec["seed"]
    tokens = padded = done = epoch = 0
    while done < steps:
        batches = epoch_batches(lengths, mb, seed, epoch)
        for start in range(0, len(batches), accum):
            for batch in batches[start:start + accum]:
                tokens += sum(lengths[i] for i in batch)
                padded += max(lengths[i] for i in batch) * len(batch)
            done += 1
            if done == steps:
                break
        epoch += 1
    _emit_result({"folder": str(folder), "examples": len(examples), "lengths": lengths,
                  "trained_tokens": sum(e.trained_tokens for e in examples), "app_tokens": tokens,
                  "app_padded_tokens": padded, "app_epochs": epoch})
    return 0


def reference_child(spec: dict[str, Any]) -> int:
    """transformers Trainer + peft on the app's tokenization; prints tokens, padded tokens and seconds."""
    import resource

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as tf_logging

    from desktop_llm.core.datasets import load_dataset
    from desktop_llm.finetune.tokenize import chat_template_of, tokenize_records

    tf_logging.disable_progress_bar()
    folder = spec["folder"]
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.padding_side = "right"
    data = load_dataset(spec["dataset"])
    examples, _ = tokenize_records(data, tokenizer, chat_template_of(tokenizer), spec["max_length"], "drop",
                                   train_on="assistant")
    train_set = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e)} for e in examples]

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                 dtype=torch.float32)  # the app's CPU dtype (trainer.pick_dtype)
    model.config.use_cache = False
    model.enable_input_require_grads()  # frozen embeddings + checkpointing: LoRA layers still need the grad
    model = get_peft_model(model, LoraConfig(r=spec["lora_r"], lora_alpha=spec["lora_alpha"],
                                             lora_dropout=spec["lora_dropout"], target_modules="all-linear",
                                             task_type="CAUSAL_LM", bias="none"))

    pad = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    batches: list[tuple[int, int]] = []  # (real tokens, padded tokens) of each collated micro-batch, in order

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = pad(features)
        batches.append((int(batch["attention_mask"].sum()), int(batch["attention_mask"].numel())))
        return batch

    clock: list[float] = []  # wall-clock times (as the app's events): training begins, then each step's end

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.append(time.time())

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.append(time.time())

    steps = spec["steps"]
    args = TrainingArguments(
        output_dir=spec["output"], per_device_train_batch_size=spec["micro_batch"],
        gradient_accumulation_steps=spec["grad_accum"], max_steps=steps, learning_rate=spec["learning_rate"],
        lr_scheduler_type="cosine", warmup_steps=math.ceil(spec["warmup_ratio"] * steps),  # as the app rounds it
        weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",  # torch.optim.AdamW, as the app uses
        activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy="random",  # no group_by_length
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", use_cpu=True, seed=spec["seed"])
    trainer = Trainer(model=model, args=args, data_collator=collate, train_dataset=train_set,
                      callbacks=[Clock()])
    trainer.train()
    used = batches[:steps * spec["grad_accum"]]  # a look-ahead batch the loader fetched is not trained on
    base = model.get_base_model()
    _emit_result({
        "tokens": sum(t for t, _ in used), "padded_tokens": sum(p for _, p in used),
        "tokens_seen": int(trainer.state.num_input_tokens_seen), "begin": clock[0], "end": clock[-1],
        "step_seconds": [round(b - a, 2) for a, b in zip(clock, clock[1:], strict=False)],
        "steps": trainer.state.global_step, "examples": len(examples), "threads": torch.get_num_threads(),
        "checkpointing": bool(base.is_activation_checkpointing),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})
    return 0


# -- the two variants ----------------------------------------------------------------------------------
def run_app(config: TrainConfig, env: dict[str, str], prepared: dict[str, Any]) -> dict[str, Any]:
    run_dir = create_run(config, name="bench")
    proc = FinetuneProcess(run_dir, env=env).start()
    assert proc.pid is not None
    watch = ProcessWatch(proc.pid)
    started = last_step = None
    step_times: list[float] = []
    plan: dict[str, Any] = {}
    final: dict[str, Any] = {}
    try:
        for event in proc.events(timeout=EVENT_TIMEOUT):
            kind = event.get("event")
            if kind == "plan":
                plan = event
            elif kind == "stage" and event.get("stage") == "training" and started is None:
                started = float(event["time"])
            elif kind == "step":
                last_step = event
                step_times.append(float(event["time"]))
            elif kind in ("done", "cancelled", "error"):
                final = event
        proc.wait(timeout=120)
    finally:
        watch.stop()
        proc.close()
    if final.get("event") != "done" or started is None or last_step is None:
        raise SystemExit(f"the app's training failed: {final.get('message', final)}\n" + _tail(run_dir / "train.log"))
    for key, want in (("steps", config.max_steps), ("micro_batch", config.micro_batch),
                      ("grad_accum", config.grad_accum), ("examples", prepared["examples"])):
        if plan.get(key) != want:
            raise SystemExit(f"the app's plan has {key}={plan.get(key)!r}, the bench expected {want!r}")
    if last_step.get("step") != config.max_steps:
        raise SystemExit(f"the app's last step is {last_step.get('step')}, not {config.max_steps}")
    end = float(last_step["time"])
    clock = [started, *step_times]
    return {"tokens": prepared["app_tokens"], "padded_tokens": prepared["app_padded_tokens"],
            "seconds": end - started, "peak": watch.peak, "cores": watch.cores(started, end),
            "step_seconds": [round(b - a, 2) for a, b in zip(clock, clock[1:], strict=False)],
            "plan_tokens": plan.get("tokens"), "dtype": plan.get("dtype"),
            "fast_loss": plan.get("loss_on_trained_positions_only")}


def run_reference(spec: dict[str, Any], env: dict[str, str], log: Path) -> dict[str, Any]:
    result, watch = run_child("--reference-child", spec, env, log)
    if result["examples"] != spec["examples"]:
        raise SystemExit(f"the reference has {result['examples']} examples, the app {spec['examples']}")
    if result["steps"] != spec["steps"]:
        raise SystemExit(f"the reference trained {result['steps']} steps, not {spec['steps']}")
    return {**result, "seconds": result["end"] - result["begin"], "peak": watch.peak,
            "cores": watch.cores(result["begin"], result["end"])}


# -- main ---------------------------------------------------------------------------------------------------
def _mib(n: float) -> float:
    return n / (1 << 20)


HEADER = (f"{'run':18} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'peak RSS MiB':>13} {'padding':>8} "
          f"{'cores: run / others':>20}")


def _row(label: str, tokens: float, seconds: float, tps: float, peak: float, padded: float,
         cores: Sequence[float] | None) -> str:
    pad = f"{100 * (1 - tokens / padded):.1f} %"
    used = f"{cores[0]:.2f} / {cores[1]:.2f}" if cores else "-"
    return f"{label:18} {tokens:7.0f} {seconds:8.1f} {tps:9.1f} {_mib(peak):13.0f} {pad:>8} {used:>20}"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] in ("--prepare-child", "--reference-child"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP
        spec = json.loads(sys.argv[2])
        return prepare_child(spec) if sys.argv[1] == "--prepare-child" else reference_child(spec)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="runs of each variant (alternating)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run")
    parser.add_argument("--records", type=int, default=0,
                        help="records in the synthetic dataset (0: steps x micro-batch x grad-accum, so that each "
                        "run trains on every record once, the same records for both)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for both (0: torch's default, the same for both)")
    parser.add_argument("--home", type=Path, help="app data folder to use (default: a fresh temporary one); "
                        "reusing one skips the GGUF conversion")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, logs, dataset)")
    args = parser.parse_args()

    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)
    work = Path(tempfile.mkdtemp(prefix="desktop_llm_bench_ft_"))
    home = (args.home or work / "home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ[HOME_ENV] = str(home)  # create_run writes the run folders there, not into the user's data
    env = child_env(home, args.threads)
    log = work / "children.log"
    try:
        per_step = args.micro_batch * args.grad_accum
        dataset = make_dataset(work / "chat.jsonl", args.records or args.steps * per_step, args.seed)
        common = {"dataset": str(dataset), "max_length": args.max_length, "micro_batch": args.micro_batch,
                  "grad_accum": args.grad_accum, "steps": args.steps, "seed": args.seed}
        started = time.perf_counter()
        prepared, _ = run_child("--prepare-child", {**common, "base_model": BASE_MODEL}, env, log)
        lengths = sorted(prepared["lengths"])
        print(f"model: {BASE_MODEL} (safetensors copy in {prepared['folder']}), float32 on CPU; "
              f"prepared in {time.perf_counter() - started:.0f} s")
        print(f"data: {prepared['examples']} records (seed {args.seed}), tokens min {lengths[0]}, "
              f"median {lengths[len(lengths) // 2]}, p90 {lengths[int(len(lengths) * 0.9)]}, max {lengths[-1]}, "
              f"mean {statistics.fmean(lengths):.0f}; max_length {args.max_length}")
        print(f"training: {args.steps} optimizer steps x micro_batch {args.micro_batch} x grad_accum "
              f"{args.grad_accum} ({per_step * args.steps} records a run), LoRA r {args.lora_r} alpha "
              f"{args.lora_alpha} all-linear, lr {args.learning_rate:g} cosine, warmup {args.warmup_ratio:g}, "
              f"gradient checkpointing, OMP_NUM_THREADS {args.threads or 'default'}, OMP_WAIT_POLICY PASSIVE")
        if per_step * args.steps > prepared["examples"]:
            print("note: the runs go past one epoch; raise --records for a cleaner comparison")

        config = TrainConfig(
            base_model=BASE_MODEL, dataset=str(dataset), method="lora", lora_r=args.lora_r,
            lora_alpha=args.lora_alpha, lora_dropout=0.0, target="all-linear", learning_rate=args.learning_rate,
            warmup_ratio=args.warmup_ratio, lr_schedule="cosine", epochs=100, max_steps=args.steps,
            micro_batch=args.micro_batch, grad_accum=args.grad_accum, max_length=args.max_length,
            length_policy="drop", validation_fraction=0.0, train_on="assistant", eval_every=0, sample_every=0,
            checkpoint_every=0, seed=args.seed, device="cpu", gradient_checkpointing=True)
        ref_spec = {**common, "folder": prepared["folder"], "lora_r": args.lora_r, "lora_alpha": args.lora_alpha,
                    "lora_dropout": 0.0, "learning_rate": args.learning_rate, "warmup_ratio": args.warmup_ratio,
                    "output": str(work / "reference-out"), "examples": prepared["examples"]}

        results: dict[str, list[dict[str, Any]]] = {"app": [], "reference": []}
        print(f"\n{HEADER}", flush=True)
        for i in range(args.pairs):
            for variant in ("app", "reference"):
                r = run_app(config, env, prepared) if variant == "app" else run_reference(ref_spec, env, log)
                results[variant].append(r)
                print(_row(f"{i + 1} {variant}", r["tokens"], r["seconds"], r["tokens"] / r["seconds"], r["peak"],
                           r["padded_tokens"], r["cores"]), flush=True)
        (work / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        if args.keep:
            print(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    medians: dict[str, dict[str, float]] = {}
    print()
    for name, rs in results.items():
        m = medians[name] = {
            "tokens": statistics.median(r["tokens"] for r in rs),
            "seconds": statistics.median(r["seconds"] for r in rs),
            "tps": statistics.median(r["tokens"] / r["seconds"] for r in rs),
            "peak": statistics.median(r["peak"] for r in rs),
            "padded": statistics.median(r["padded_tokens"] for r in rs)}
        cores = [r["cores"] for r in rs if r["cores"]]
        print(_row(f"median {name}", m["tokens"], m["seconds"], m["tps"], m["peak"], m["padded"],
                   [statistics.median(c[k] for c in cores) for k in (0, 1)] if cores else None))
    speed = medians["app"]["tps"] / medians["reference"]["tps"]
    memory = medians["app"]["peak"] / medians["reference"]["peak"]
    print(f"\nratio app / reference: tokens/s {speed:.2f}x, peak memory {memory:.2f}x")
    met = speed >= 1.2 and memory <= 1.0
    print(f"target (>= 1.2x tokens/s, peak memory no higher): {'met' if met else 'not met'}")

    ref0, app0 = results["reference"][0], results["app"][0]
    notes = [f"reference: {ref0['threads']} torch threads, {ref0['dtype']}, gradient checkpointing "
             f"{'on' if ref0['checkpointing'] else 'OFF'}; app: {app0['dtype']}, output layer on trained positions "
             f"only: {app0['fast_loss']}"]
    for name, rs in results.items():
        notes.append(f"{name} seconds per step: " + "; ".join(" ".join(f"{x:.1f}" for x in r["step_seconds"])
                                                          for r in rs))
    if any(r["tokens_seen"] != r["tokens"] for r in results["reference"]):
        notes.append("reference: Trainer's num_input_tokens_seen differs from the bench's count "
                     f"({[r['tokens_seen'] for r in results['reference']]})")
    others = [r["cores"][1] for rs in results.values() for r in rs if r["cores"]]
    if others and max(others) > 0.25:
        notes.append(f"other programs used up to {max(others):.2f} of the machine's {os.cpu_count()} cores during "
                     "some runs (column 'others'): those runs are slowed by them; the alternation spreads this "
                     "over both variants, but the figures are noisier than on an idle machine")
    missed = [r for r in results["reference"] if r["maxrss"] > r["peak"] * 1.02]
    if missed:
        notes.append("reference: the polled peak RSS is below the child's own ru_maxrss in "
                     f"{len(missed)} run(s) (memory grew between polls)")
    print("\n".join(f"note: {n}" for n in notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
