"""Qt handles on the fine-tune processes: a preview or export job, and a watcher of a run's history.

Training is shown from the run's ``events.jsonl`` (read every half second), not from the process's
pipe: the same view then follows a run this window started, and one still training after the app
was closed and opened again.
"""

from __future__ import annotations

import json
from pathlib import Path

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

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_dir: Path | None = None
        self._offset = 0
        self._pending = b""
        self.proc: FinetuneProcess | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(WATCH_INTERVAL_MS)
        self._timer.timeout.connect(self.poll)

    def watch(self, run_dir: Path, proc: FinetuneProcess | None = None) -> None:
        """Replay the run's history so far, then follow it while it runs.

        ``proc``: the process this window started for it (it records even a silent death, so the
        watcher follows it until it ends); None for a run followed from an earlier session.
        """
        # The whole history is replayed: a resumed run's holds the earlier session's "cancelled" too, so
        # following stops when the process ends, not at a final event.
        self.run_dir, self._offset, self._pending = Path(run_dir), 0, b""
        self.proc = proc
        self.poll()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def poll(self) -> None:
        if self.run_dir is None:
            return
        # Asked before reading: whatever a process wrote before it ended is in the file by then.
        # Our own process: its client sets ``finished`` after recording even a silent death. A run followed
        # from an earlier session: its process is gone.
        gone = self.proc.finished.is_set() if self.proc is not None else runs.running_pid(self.run_dir) is None
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
            self.event.emit(event)
        if gone:
            self._timer.stop()
