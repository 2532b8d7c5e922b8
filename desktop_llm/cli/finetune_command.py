"""``desktop-llm finetune``: train a LoRA adapter in the terminal, with the same runs as the Fine-tune page.

The training runs in its own process (``desktop_llm.finetune.client``); this command prints its
plan, a progress line and the samples on stderr, and the run folder and adapter path on stdout.
Ctrl+C stops after the current step with a checkpoint; ``--resume RUN_ID`` continues from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from desktop_llm.cli.common import print_table
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.models import resolve_model
from desktop_llm.core.units import format_bytes, format_duration
from desktop_llm.finetune.client import FinetuneProcess, export_process
from desktop_llm.finetune.config import DEFAULT_PRESET, TrainConfig, preset_config
from desktop_llm.finetune.runs import create_run, list_runs, read_config, run_path

MAX_PROBLEMS_SHOWN = 20
_STAGE_TEXT = {"loading": "Loading the dataset and the model …", "tokenizing": "Tokenizing …",
               "training": "Training …", "saving": "Saving the adapter …"}


def run(args: argparse.Namespace) -> int:
    if args.list:
        return run_list(args)
    if args.export:
        return run_export(args)
    if args.format:
        raise InvalidRequest("--format goes with --export RUN_ID.", "Example: desktop-llm finetune --export "
                             "RUN_ID --format gguf-q8_0")
    if args.resume:
        ignored = [flag for flag, value in (("--base", args.base), ("--data", args.data), ("--preset", args.preset),
                                            ("--config", args.config), ("--epochs", args.epochs), ("--lr", args.lr),
                                            ("--max-steps", args.max_steps)) if value is not None]
        if ignored:
            raise InvalidRequest(f"--resume continues a run with its own settings; it cannot take {ignored[0]}.",
                                 "Start a new run to train with other settings.")
        run_dir = run_path(args.resume)
        read_config(run_dir)  # a clear error for a broken config before a process starts
    else:
        run_dir = create_run(build_config(args))
    return train(run_dir, as_json=args.json)


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The preset, then the --config file, then the flags, each over the one before."""
    from_file: dict[str, Any] = {}
    if args.config:
        try:
            from_file = json.loads(Path(args.config).expanduser().read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidRequest(f"Cannot read {args.config}: {exc.strerror or exc}.") from exc
        except ValueError as exc:
            raise InvalidRequest(f"{args.config} is not valid JSON ({exc}).") from exc
        if not isinstance(from_file, dict):
            raise InvalidRequest(f"{args.config} must hold a JSON object of fine-tune settings.")
        from_file.pop("output", None)  # the new run gets its own folder
    data = args.data or from_file.pop("dataset", None)
    if not data:
        raise InvalidRequest("Which dataset should the model learn from?",
                             "Name it with --data FILE (JSONL with chat messages, or JSON / CSV).")
    base_spec = args.base or from_file.pop("base_model", None)
    from_file.pop("dataset", None)
    from_file.pop("base_model", None)
    ref = resolve_model(base_spec)
    if ref.error:
        raise InvalidRequest(f"{ref.name} cannot be fine-tuned: {ref.error}")
    # Listed models keep their id (it survives moves of the HF cache); other paths stay paths.
    base = ref.path if ref.id.startswith("file:") else ref.id
    config = preset_config(args.preset or DEFAULT_PRESET, base, str(Path(data).expanduser().resolve()))
    config = config.with_updates(**from_file)
    flags = {"epochs": args.epochs, "learning_rate": args.lr, "max_steps": args.max_steps}
    config = config.with_updates(**{k: v for k, v in flags.items() if v is not None})
    return config.validate()


class _Printer:
    """Turns events into lines for a person: progress redrawn in place on a terminal, one line a step otherwise."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.err = sys.stderr
        self.tty = self.err.isatty()
        self._open_line = False
        self._stage = ""

    def line(self, text: str) -> None:
        if self._open_line:
            self.err.write("\n")
            self._open_line = False
        print(text, file=self.err, flush=True)

    def progress(self, text: str) -> None:
        if self.tty:
            self.err.write("\r" + text.ljust(100))
            self.err.flush()
            self._open_line = True
        else:
            self.line(text)

    def problems(self, problems: list[dict[str, Any]]) -> None:
        for p in problems[:MAX_PROBLEMS_SHOWN]:
            mark = "left out" if p.get("dropped") else "kept"
            self.line(f"  {p.get('message')} [{mark}]")
        if len(problems) > MAX_PROBLEMS_SHOWN:
            self.line(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more problems.")

    def show(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "stage":
            if e.get("stage") != self._stage:
                self._stage = str(e.get("stage"))
                self.line(_STAGE_TEXT.get(self._stage, self._stage))
        elif kind == "dataset":
            self.line(f"Dataset: {e.get('summary')}. {e.get('mapping')}.")
            for note in e.get("notes") or []:
                self.line(f"  {note}")
            self.problems(e.get("problems") or [])
        elif kind == "problems":
            self.line("While tokenizing:")
            self.problems(e.get("problems") or [])
        elif kind == "resumed":
            self.line(f"Resuming from step {e.get('step')} (checkpoint {e.get('checkpoint')}).")
        elif kind == "plan":
            epochs = f"{e['epochs']} epoch{'s' if e['epochs'] != 1 else ''}"
            self.line(f"Plan: {e['examples']} training records, {e['validation']} for validation; {e['steps']} steps "
                      f"({epochs}, batch {e['micro_batch']} × {e['grad_accum']}), {e['tokens']:,} tokens; "
                      f"{e['trainable_parameters']:,} weights trained on {e['device']}.")
            self.line(f"Estimate: about {format_duration(e.get('estimate_seconds'))}, "
                      f"memory about {format_bytes(e.get('memory_estimate_bytes'))}.")
        elif kind == "step":
            loss = e.get("loss")
            speed = e.get("tokens_per_second")
            self.progress(f"step {e['step']}/{e['total_steps']}  loss {loss if loss is None else f'{loss:.4f}'}  "
                          f"{'' if speed is None else f'{speed:.0f} tok/s  '}"
                          f"ETA {format_duration(e.get('eta_seconds')) or '?'}")
        elif kind == "eval":
            self.line(f"step {e['step']}: validation loss {e.get('val_loss')}")
        elif kind == "sample":
            self.line(f"sample at step {e['step']}: {e.get('prompt')!r}\n  → {e.get('reply')!r}")
        elif kind == "checkpoint":
            self.line(f"Checkpoint at step {e['step']}.")


def train(run_dir: Path, as_json: bool = False) -> int:
    printer = _Printer(run_dir)
    proc = FinetuneProcess(run_dir).start()
    if not as_json:
        printer.line(f"Run {run_dir.name} in {run_dir}")
    killed = False
    while True:
        try:
            event = proc.next_event(timeout=0.5)
        except TimeoutError:
            continue
        except KeyboardInterrupt:
            if not proc.cancel_requested:
                proc.cancel()
                printer.line("Stopping after the current step and saving a checkpoint … "
                             "(Ctrl+C again stops at once, losing the steps since the last checkpoint)")
            else:
                killed = True
                proc.kill()
            continue
        if as_json:
            print(json.dumps(event, ensure_ascii=False), flush=True)
        else:
            printer.show(event)
        kind = event.get("event")
        if kind in ("done", "cancelled", "error"):
            break
    proc.wait(timeout=30)
    resume = f"desktop-llm finetune --resume {run_dir.name}"
    if kind == "done":
        if not as_json:
            printer.line(f"Finished: {event['steps']} steps in {format_duration(event.get('seconds'))}, "
                         f"train loss {event.get('train_loss')}, validation loss {event.get('val_loss')}.")
            print(f"Run folder: {run_dir}")
            print(f"Adapter: {event['adapter']}")
        return 0
    if kind == "cancelled" or killed:
        if not as_json:
            where = event.get("checkpoint")
            printer.line(f"Stopped at step {event.get('step', '?')}; checkpoint kept in {where}." if where and
                         not killed else "Stopped; the last checkpoint (if any) is kept.")
            printer.line(f"Resume with: {resume}")
            print(f"Run folder: {run_dir}")
        return 130
    if as_json:
        return 1
    raise FinetuneProcess.error_of(event)


def run_list(args: argparse.Namespace) -> int:
    found = list_runs()
    if args.json:
        print(json.dumps([r.to_dict() for r in found], indent=1))
        return 0
    if not found:
        print("No fine-tune runs yet. Start one with: desktop-llm finetune --base MODEL --data FILE")
        return 0
    rows = [("ID", "STATE", "STEP", "LOSS", "VAL LOSS", "BASE MODEL")]
    for r in found:
        rows.append((r.id, r.state, f"{r.last_step}/{r.total_steps or '?'}",
                     "" if r.train_loss is None else f"{r.train_loss:.4f}",
                     "" if r.val_loss is None else f"{r.val_loss:.4f}", r.base_model))
    print_table(rows)
    return 0


def run_export(args: argparse.Namespace) -> int:
    run_dir = run_path(args.export)
    formats = list(dict.fromkeys(args.format or ["gguf-q8_0"]))
    proc = export_process(run_dir, formats).start()
    printer = _Printer(run_dir)
    shown: dict[str, int] = {}
    for event in proc.events():
        if args.json:
            print(json.dumps(event, ensure_ascii=False), flush=True)
            continue
        kind = event.get("event")
        if kind == "stage":
            percent = int(100 * float(event.get("fraction") or 0))
            if shown.get(event.get("format", "")) != percent:
                shown[event.get("format", "")] = percent
                printer.progress(f"{event.get('format')}: {percent} %")
        elif kind == "exported":
            printer.line(f"{event['format']}: {event['path']} (in the model library as {event['name']})")
    final = proc.wait(timeout=60)
    if final.get("event") != "done":
        if args.json:
            return 1
        raise FinetuneProcess.error_of(final)
    if not args.json:
        for path in final.get("exports", {}).values():
            print(path)
    return 0
