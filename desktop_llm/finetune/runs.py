"""Fine-tune run folders (app side): create a run, list the runs, read a run's history.

One folder per run under ``app_home()/finetune/runs``::

    config.json       the TrainConfig
    events.jsonl      every event the training process sent (the run's history and curves)
    train.log         the training process's stderr
    process.json      pid of the process training it now (removed when it ends)
    checkpoints/      step-NNNNNN/ folders while training (removed when it finishes)
    adapter/          the LoRA adapter when it finished (model/ for a full fine-tune)

No torch here: the GUI and CLI import this module.
"""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from desktop_llm.core.atomic_file import write_text_atomic
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.paths import app_home
from desktop_llm.finetune.config import TrainConfig

CONFIG_FILE = "config.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"
PROCESS_FILE = "process.json"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
CHECKPOINT_STATE = "trainer_state.pt"  # written last in a checkpoint: a folder without it is unfinished
FINAL_EVENTS = ("done", "cancelled", "error")
_ID_TIME = "%Y%m%d-%H%M%S"


@dataclass
class RunSummary:
    id: str
    path: str
    created: datetime | None
    base_model: str
    dataset: str
    method: str
    state: str  # created, running, finished, cancelled, failed
    last_step: int
    total_steps: int | None
    train_loss: float | None  # loss of the last step
    val_loss: float | None  # the last evaluation
    adapter: str | None  # the result folder, once finished
    error: str | None  # the failure message, when failed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created"] = self.created.isoformat() if self.created else None
        return data


def runs_dir() -> Path:
    path = app_home() / "finetune" / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")


def create_run(config: TrainConfig, name: str | None = None) -> Path:
    """A new run folder with ``config.json`` (``output`` set to the folder); the id is time + a slug."""
    config.validate()
    base = Path(config.base_model.removeprefix("bundled:")).stem if config.base_model else "model"
    slug = _slug(name or f"{base}-{Path(config.dataset).stem}") or "run"
    stamp = datetime.now().strftime(_ID_TIME)
    root = runs_dir()
    for n in range(1, 1000):
        run_id = f"{stamp}-{slug}" if n == 1 else f"{stamp}-{slug}-{n}"
        folder = root / run_id
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        config = config.with_updates(output=str(folder))
        write_text_atomic(folder / CONFIG_FILE, config.to_json())
        return folder
    raise InvalidRequest("Could not create a run folder: too many runs started this second.", "Try again.")


def run_path(run_id: str) -> Path:
    """The folder of a run given its id (or its folder path)."""
    candidate = Path(run_id).expanduser()
    folder = candidate if candidate.is_absolute() or os.sep in run_id else runs_dir() / run_id
    if not (folder / CONFIG_FILE).is_file():
        raise InvalidRequest(f"There is no fine-tune run {run_id!r}.",
                             "See the runs with `desktop-llm finetune --list`.")
    return folder


def read_config(run_dir: Path) -> TrainConfig:
    return TrainConfig.from_file(run_dir / CONFIG_FILE, strict=False)


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Every event of the run, oldest first; a torn last line (the process was killed) is skipped."""
    try:
        text = (Path(run_dir) / EVENTS_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def append_event(run_dir: Path, event: dict[str, Any]) -> None:
    """Add an event to the history (the client records a process death the process could not)."""
    try:
        with (Path(run_dir) / EVENTS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
    except OSError:
        pass


def running_pid(run_dir: Path) -> int | None:
    """The pid of the live process training this run, or None."""
    try:
        info = json.loads((Path(run_dir) / PROCESS_FILE).read_text())
        pid, started = int(info["pid"]), float(info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    import psutil

    try:
        proc = psutil.Process(pid)
        # A reused pid belongs to a process started at another time.
        alive = abs(proc.create_time() - started) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return None
    return pid if alive else None


def cancel_run(run_dir: Path) -> bool:
    """Ask the process training this run to stop at the end of its step (it checkpoints); False if none runs."""
    pid = running_pid(run_dir)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    return True


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    steps = [p for p in folder.glob("step-*") if (p / CHECKPOINT_STATE).is_file()]
    return max(steps, key=lambda p: p.name, default=None)


def run_state(run_dir: Path, events: list[dict[str, Any]] | None = None) -> str:
    events = read_events(run_dir) if events is None else events
    last = events[-1].get("event") if events else None
    # A final last event decides even while the process is still exiting (it said its last word).
    if last not in FINAL_EVENTS and running_pid(run_dir) is not None:
        return "running"
    final = next((e["event"] for e in reversed(events) if e.get("event") in FINAL_EVENTS), None)
    if final is None:
        # Started and gone without a word (killed with the app, power cut): it failed, but resumes.
        return "failed" if events else "created"
    return {"done": "finished", "cancelled": "cancelled", "error": "failed"}[final]


def _created(run_dir: Path) -> datetime | None:
    try:
        return datetime.strptime("-".join(run_dir.name.split("-")[:2]), _ID_TIME)
    except ValueError:
        try:
            return datetime.fromtimestamp((run_dir / CONFIG_FILE).stat().st_mtime)
        except OSError:
            return None


def run_summary(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    try:
        config: TrainConfig | None = read_config(run_dir)
    except InvalidRequest:
        config = None
    events = read_events(run_dir)
    state = run_state(run_dir, events)
    last_step, total, train_loss, val_loss, adapter, error = 0, None, None, None, None, None
    for e in events:
        kind = e.get("event")
        if kind == "step":
            last_step, total, train_loss = e.get("step", last_step), e.get("total_steps", total), e.get("loss")
        elif kind == "plan":
            total = e.get("steps", total)
        elif kind == "eval":
            val_loss = e.get("val_loss")
        elif kind == "done":
            adapter = e.get("adapter")
        elif kind == "error":
            error = e.get("message")
    if state != "failed":
        error = None
    return RunSummary(id=run_dir.name, path=str(run_dir), created=_created(run_dir),
                      base_model=config.base_model if config else "?", dataset=config.dataset if config else "?",
                      method=config.method if config else "?", state=state, last_step=last_step,
                      total_steps=total, train_loss=train_loss, val_loss=val_loss,
                      adapter=adapter if adapter and Path(adapter).is_dir() else None, error=error)


def list_runs() -> list[RunSummary]:
    """Every run, newest first."""
    folders = [p for p in runs_dir().iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()]
    return [run_summary(p) for p in sorted(folders, key=lambda p: p.name, reverse=True)]
