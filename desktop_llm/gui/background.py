"""Disk work off the GUI thread: jobs run in order on one worker thread; results come back as signals."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal


class Background(QObject):
    """A serial job queue: jobs run in submission order (so a write never overtakes the one before)."""

    _done = Signal(object, object)  # callback, value (queued to the GUI thread)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="disk")
        self._done.connect(lambda callback, value: callback(value))
        self.on_error: Callable[[Exception], None] | None = None

    def run(self, job: Callable[[], Any], on_result: Callable[[Any], None] | None = None,
            on_error: Callable[[Exception], None] | None = None) -> None:
        """Run ``job`` on the disk thread; its result (or exception) comes back on the GUI thread.

        A failure goes to ``on_error`` if given, else to the queue's ``on_error``.
        """
        def work() -> None:
            try:
                value = job()
            except Exception as exc:  # noqa: BLE001 - reported to the user, never lost
                handler = on_error or self.on_error
                if handler is not None:
                    self._done.emit(handler, exc)
                return
            if on_result is not None:
                self._done.emit(on_result, value)

        self._pool.submit(work)

    def drain(self) -> None:
        """Wait until every job submitted so far has run (used when closing)."""
        self._pool.submit(lambda: None).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
