"""The Qt-free handle on one training process, shared by the GUI, the CLI and the tests.

``FinetuneProcess(run_dir).start()`` runs ``python -m desktop_llm.finetune RUN_DIR`` and reads
its JSON-lines events on a thread: each goes to ``on_event`` (called on that thread) and to the
``events()`` iterator. The process's stderr goes to ``RUN_DIR/train.log``. It never leaves the
caller waiting on a dead process: when the process ends without a final event (killed, crashed,
out of memory), an ``error`` event says how it ended and what it last logged, and the run's
history records it too.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from desktop_llm.core.errors import DesktopLLMError, EngineCrashed, InvalidRequest, error_from_code
from desktop_llm.finetune import exports, runs

EventCallback = Callable[[dict[str, Any]], None]
FINAL_EVENTS = runs.FINAL_EVENTS


class FinetuneProcess:
    """The training process of a run by default; ``preview_process`` and ``export_process`` make the others."""

    def __init__(self, run_dir: str | Path, on_event: EventCallback | None = None, python: str | None = None,
                 env: dict[str, str] | None = None, *, module: str = "desktop_llm.finetune",
                 args: Sequence[str] = (), log_name: str = runs.LOG_FILE, history: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.on_event = on_event
        self._python = python or sys.executable
        self._env = env
        self._module = module
        self._args = list(args)
        self._log_name = log_name
        self._history = history  # record a death without a final event in the run's events.jsonl
        self._proc: subprocess.Popen[bytes] | None = None
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self.final: dict[str, Any] | None = None
        self.finished = threading.Event()
        self.cancel_requested = False
        self._final_taken = False  # events() has yielded the final event: a second pass ends at once

    # -- process -------------------------------------------------------------------------------
    def start(self) -> FinetuneProcess:
        if self._proc is not None:
            raise RuntimeError("this training process was already started")
        if not (self.run_dir / runs.CONFIG_FILE).is_file():
            raise InvalidRequest(f"{self.run_dir} is not a fine-tune run (it has no {runs.CONFIG_FILE}).",
                                 "Create the run first (desktop-llm finetune, or the Fine-tune page).")
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        log = (self.run_dir / self._log_name).open("ab")
        try:
            self._proc = subprocess.Popen(
                [self._python, "-m", self._module, str(self.run_dir), *self._args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                start_new_session=True,  # Ctrl+C in a terminal goes to the app, which cancels politely
            )
        finally:
            log.close()  # the child has its own copy
        threading.Thread(target=self._read_events, args=(self._proc,), name="finetune-events", daemon=True).start()
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _deliver(self, event: dict[str, Any]) -> None:
        if self.finished.is_set():
            return
        if event.get("event") in FINAL_EVENTS:
            self.final = event
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the event stream
                import traceback

                traceback.print_exc()
        self._queue.put(event)

    def _read_events(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours (the process sends only JSON lines; stray output goes to the log)
            if isinstance(event, dict) and "event" in event:
                self._deliver(event)
        code = proc.wait()
        if self.final is None:
            event = {"event": "error", "code": EngineCrashed.code, "message": self._death_message(code),
                     "hint": self._death_hint(code), "exit_code": code}
            if self._history:
                runs.append_event(self.run_dir, event)  # the process could not record its own end
            self._deliver(event)
        self.finished.set()

    def _last_log_line(self) -> str:
        try:
            with (self.run_dir / self._log_name).open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 8192))
                lines = fh.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")[:300]

    def _death_message(self, code: int) -> str:
        if code < 0:
            try:
                how = f"it was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"it was killed by signal {-code}"
        else:
            how = f"it exited with code {code} without saying why"
        last = self._last_log_line()
        return f"The training process stopped unexpectedly: {how}." + (f" Last log line: {last}" if last else "")

    def _death_hint(self, code: int) -> str:
        hint = "Start the run again to resume it from its last checkpoint." if self._history else "Try again."
        if code == -signal.SIGKILL:
            hint = "If the machine ran out of memory, lower the maximum length or the batch size. " + hint
        return f"{hint} Details are in {self.run_dir / self._log_name}."

    # -- control -------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the process to stop after its current step; it writes a checkpoint and sends ``cancelled``."""
        self.cancel_requested = True
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return
        try:
            with self._write_lock:
                proc.stdin.write(b"cancel\n")
                proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it is gone already; the reader reports how it ended

    def terminate(self) -> None:
        """SIGTERM: the same polite stop as ``cancel`` (for a process whose stdin is not ours)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def kill(self) -> None:
        """Stop at once (no checkpoint is written; the last one stays)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    # -- results -------------------------------------------------------------------------------
    def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next event; ``TimeoutError`` if none comes in ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event from the training process in {timeout} s") from None

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Every event as it comes, the final one (done, cancelled or error) last.

        ``timeout``: seconds to wait for each next event before ``TimeoutError``.
        """
        while not self._final_taken:
            event = self.next_event(timeout)
            yield event
            if event.get("event") in FINAL_EVENTS:
                self._final_taken = True

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The final event, once the process has ended; ``TimeoutError`` if it takes longer than ``timeout``."""
        if self._proc is None:
            raise RuntimeError("the training process was not started")
        if not self.finished.wait(timeout):
            raise TimeoutError(f"the training process did not finish in {timeout} s")
        assert self.final is not None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return self.final

    @staticmethod
    def error_of(event: dict[str, Any]) -> DesktopLLMError:
        """The error an ``error`` event describes, as the app's error type."""
        return error_from_code(str(event.get("code", "training_failed")), str(event.get("message", "Training failed.")),
                               str(event.get("hint", "")))

    def close(self) -> None:
        """Release the pipes (the process keeps running if it still does)."""
        if self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def __enter__(self) -> FinetuneProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *_exc: object) -> None:
        self.close()


PREVIEW_LOG = "preview.log"


def preview_process(folder: str | Path, on_event: EventCallback | None = None) -> FinetuneProcess:
    """How the base model's tokenizer sees the dataset of the draft config in ``folder`` (not started yet)."""
    return FinetuneProcess(folder, on_event, module="desktop_llm.finetune.preview", log_name=PREVIEW_LOG,
                           history=False)


def export_process(run_dir: str | Path, formats: Sequence[str],
                   on_event: EventCallback | None = None) -> FinetuneProcess:
    """The process writing a finished run's exports (``finetune.exports.FORMATS``; not started yet)."""
    return FinetuneProcess(run_dir, on_event, module="desktop_llm.finetune.export", args=formats,
                           log_name=exports.LOG_FILE, history=False)
