"""Qt handles on the fine-tune processes: a preview or export job, and a watcher of a run's history.

Training is shown from the run's ``events.jsonl`` (read every half second), not from the process's
pipe: the same view then follows a run this window started, and one still training after the app
was closed and opened again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from desktop_llm.finetune import runs
from desktop_llm.finetune.client import FinetuneProcess

WATCH_INTERVAL_MS = 500


class ProcessJob(QObject):
    """One preview or export process; ``event`` delivers its events on the GUI thread."""

    event = Signal(dict)

    def __init__(self, proc: FinetuneProcess, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.proc = proc
        # Emitted from the reader thread: Qt queues it to this object's (the GUI) thread.
        proc.on_event = self.event.emit

    def start(self) -> ProcessJob:
        self.proc.start()
        return self

    @property
    def running(self) -> bool:
        return self.proc.running and self.proc.final is None

    def stop(self) -> None:
        self.proc.kill()


class RunWatcher(QObject):
    """Reads the events a run appends to its history and emits the new ones, oldest first."""

    event = Signal(dict)
    ended = Signal(dict)  # the final event (done, cancelled, error)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_dir: Path | None = None
        self._offset = 0
        self._pending = b""
        self.final: dict[str, Any] | None = None
        self.proc: FinetuneProcess | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(WATCH_INTERVAL_MS)
        self._timer.timeout.connect(self.poll)

    def watch(self, run_dir: Path, proc: FinetuneProcess | None = None) -> None:
        """Replay the run's history so far, then follow it while it runs.

        ``proc``: the process this window started for it (it records even a silent death, so the
        watcher waits for a final event); None for a run followed from an earlier session.
        """
        self.run_dir, self._offset, self._pending, self.final = Path(run_dir), 0, b"", None
        self.proc = proc
        self.poll()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def poll(self) -> None:
        if self.run_dir is None:
            return
        try:
            with (self.run_dir / runs.EVENTS_FILE).open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            chunk = b""
        self._offset += len(chunk)
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") in runs.FINAL_EVENTS:
                self.final = event
            self.event.emit(event)
            if event.get("event") in runs.FINAL_EVENTS:
                self.ended.emit(event)
        if self.final is not None:
            self._timer.stop()
        elif self.proc is None and runs.running_pid(self.run_dir) is None:
            # Followed from an earlier session and its process is gone without a last word: nothing more comes.
            self._timer.stop()
