"""A bounded, incremental parser of a `text/event-stream` (server-sent events).

The attached console reads a stream a remote service writes: a hostile or broken
service must not be able to grow the client's memory. Every line is capped at
`max_line` bytes and every event's data at `max_event` bytes; crossing either
raises `SseError` (the caller drops the connection and reconnects) instead of
buffering on. Bytes are decoded as UTF-8 with replacement, as the SSE standard
says, so binary noise becomes text the JSON decoder then refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseError", "SseEvent", "SseParser"]

#: Default cap of one line (a snapshot of a large plant is one `data:` line).
MAX_LINE = 8 * 1024 * 1024
#: Default cap of one event's data (all its `data:` lines together).
MAX_EVENT = 16 * 1024 * 1024
#: Characters of an event name or id kept (longer ones are protocol violations).
_MAX_NAME = 200


class SseError(ValueError):
    """The stream broke the protocol or a bound (too long a line or event)."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event."""

    event: str
    """The `event:` field (`message` when the server named none)."""
    data: str
    """Its `data:` lines joined with `\\n`."""
    id: str | None
    """The last event id seen on the stream so far (per the standard), or None."""


class SseParser:
    """Feed it bytes as they arrive; it returns the events they complete."""

    def __init__(self, *, max_line: int = MAX_LINE, max_event: int = MAX_EVENT) -> None:
        self._max_line = max_line
        self._max_event = max_event
        self._buffer = bytearray()
        self._skip_lf = False
        """The last chunk ended with CR: a LF starting the next one belongs to it."""
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self.last_id: str | None = None
        """The stream's last event id (`id:` fields persist across events)."""
        self.comments = 0
        """Comment lines (`: hb`) seen: the server's heartbeats."""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse `chunk`; the events it completes. `SseError` when a bound is crossed."""
        out: list[SseEvent] = []
        start = 0
        if self._skip_lf and chunk[:1] == b"\n":
            start = 1
        self._skip_lf = False
        size = len(chunk)
        while start < size:
            cut = _line_end(chunk, start)
            if cut < 0:
                if len(self._buffer) + size - start > self._max_line:
                    raise SseError(f"a line longer than {self._max_line} bytes")
                self._buffer += chunk[start:]
                break
            if len(self._buffer) + cut - start > self._max_line:
                raise SseError(f"a line longer than {self._max_line} bytes")
            if self._buffer:
                self._buffer += chunk[start:cut]
                line = bytes(self._buffer)
                self._buffer.clear()
            else:
                line = chunk[start:cut]
            if chunk[cut] == 0x0D:  # CR, maybe CR LF
                if cut + 1 < size:
                    start = cut + 2 if chunk[cut + 1] == 0x0A else cut + 1
                else:
                    self._skip_lf = True
                    start = size
            else:
                start = cut + 1
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_event:
                raise SseError(f"an event larger than {self._max_event} bytes")
            self._data.append(value)
        elif name == "event":
            if len(value) > _MAX_NAME:
                raise SseError(f"an event name longer than {_MAX_NAME} characters")
            self._event = value
        elif name == "id":
            if len(value) > _MAX_NAME:
                raise SseError(f"an event id longer than {_MAX_NAME} characters")
            if "\x00" not in value:  # the standard ignores an id with NUL
                self.last_id = value
        # `retry` and unknown fields are ignored: the client keeps its own backoff.
        return None

    def _dispatch(self) -> SseEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data, self._data_size = "", [], 0
        if not data:
            return None  # the standard dispatches nothing without data
        return SseEvent(event, "\n".join(data), self.last_id)


def _line_end(chunk: bytes, start: int) -> int:
    """Index of the first CR or LF at or after `start`, or -1."""
    lf = chunk.find(b"\n", start)
    cr = chunk.find(b"\r", start, lf if lf >= 0 else len(chunk))
    return cr if cr >= 0 else lf
