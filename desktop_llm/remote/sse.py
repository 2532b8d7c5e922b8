"""A Server-Sent Events parser (the HTML living standard's rules), fed raw bytes as they arrive.

OpenAI-compatible servers stream replies as SSE: ``data: {json}`` blocks separated by a blank
line, ending with ``data: [DONE]``. Parsing by the standard rather than "split on newlines"
matters because servers differ: some send ``\\r\\n``, some send ``: keep-alive`` comments while
the model thinks, and a payload may span several ``data:`` lines.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Feed bytes with ``feed``; it returns the events completed by them, in order."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._first_line = True
        self._pending_cr = False  # a chunk ended in "\r": a following "\n" belongs to the same line end

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            line, sep, rest = self._next_line(self._buffer)
            if not sep:
                break
            self._buffer = rest
            if sep == b"\r" and not rest:
                self._pending_cr = True
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    @staticmethod
    def _next_line(buf: bytes) -> tuple[bytes, bytes, bytes]:
        """Split off the first line; a line ends with CRLF, LF or CR. ``sep`` is b"" when none is complete."""
        lf, cr = buf.find(b"\n"), buf.find(b"\r")
        if cr == -1 or (lf != -1 and lf < cr):
            return (buf[:lf], b"\n", buf[lf + 1:]) if lf != -1 else (buf, b"", b"")
        if buf[cr + 1:cr + 2] == b"\n":
            return buf[:cr], b"\r\n", buf[cr + 2:]
        return buf[:cr], b"\r", buf[cr + 1:]

    def _line(self, raw: bytes) -> SSEEvent | None:
        # Split at a byte boundary is safe: a UTF-8 multi-byte character never contains CR or LF.
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored, as the standard says.
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent(data="\n".join(data), event=event or "message", id=self._last_id)

    def close(self) -> list[SSEEvent]:
        """At the end of the stream, the event still open, if any.

        The standard drops an event not closed by a blank line; some servers close the connection
        right after ``data: [DONE]`` and one newline, so it is kept here rather than reported as a
        reply cut short.
        """
        events: list[SSEEvent] = []
        if self._buffer:
            event = self._line(self._buffer)
            self._buffer = b""
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events
