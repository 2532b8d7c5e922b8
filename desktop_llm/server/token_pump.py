"""A streamed reply's events on their way from the engine to one HTTP client.

On a 2-core machine every extra thread wake-up per token takes time from the engine's threads.
So once the stream's headers are out, the engine client's event thread writes each token chunk
to the socket itself, as long as the socket takes it at once (a non-blocking send). When it does
not (a slow client, a full buffer), the chunk and everything after it wait in order in a queue
for the request's own thread, which writes blocking, so a slow client never holds up the engine
events of others.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)  # not on Windows: there, every chunk takes the queue


def sse_frame(payload: str) -> bytes:
    """One server-sent event as one HTTP chunk."""
    event = f"data: {payload}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


class TokenPump:
    def __init__(self, sock: socket.socket, token_json: Callable[[dict[str, Any]], str]) -> None:
        self.sock = sock
        self.token_json = token_json
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.pieces: list[str] = []  # the reply text so far, in order
        self.gone = False  # the client closed the connection
        self.streaming = False  # set once the response headers are out: only then may tokens go direct
        self._lock = threading.Lock()
        self._direct = False

    def on_event(self, event: dict[str, Any]) -> None:
        """Called on the engine client's event thread for every event of the stream."""
        with self._lock:
            if not (self._direct and event.get("event") == "token"):
                self.events.put(event)
                return
            data = sse_frame(self.token_json(event))
            try:
                sent = self.sock.send(data, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.gone = True  # the request's thread notices and cancels the stream
                self._direct = False
                return
            self.pieces.append(event["text"])
            if sent < len(data):
                self._direct = False
                self.events.put({"event": "_rest", "data": data[sent:]})

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event for the request's thread; when none is waiting, let the event thread write
        the following tokens itself until one has to wait."""
        with self._lock:
            if self.streaming and self.events.empty() and _DONTWAIT is not None and not self.gone:
                self._direct = True
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def hold(self) -> None:
        """Stop direct writes (before the request's thread writes something of its own)."""
        with self._lock:
            self._direct = False
