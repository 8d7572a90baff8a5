"""Where log lines go: the operator log file (`logging.file`) and library log records.

Both renderers, the Textual UI and `--no-ui`, write the operator log file
through one `OpLogFile`, so the file reads the same whichever ran:

    2026-12-07T14:06:10.123+00:00 WARN "Old Plant" Unknown ATI device: x (add to device map)
    2026-12-07T14:06:11.002+00:00 INFO - twin lift-1: active (registered)

ISO timestamp (UTC, milliseconds; the time of the event, not of the write),
level, plant (`-` for none; JSON-quoted when it holds a space) and text, one
line per log line. Outside text stays text: control characters are escaped
visibly (`safe_text`), so a newline cannot forge a line and an escape sequence
cannot reach a terminal that `cat`s the file; markup (`[red]`) is written as
the characters it is.

Library log records (Python `logging`: aiomqtt, aiohttp, our own `logger`s)
are set up once by `configure_library_logging`: to a file while the UI owns
the terminal, to stderr headless. No Textual here: the engine side owns this.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from dtp_console.events import LogLine
from dtp_console.textsafe import safe_text

__all__ = ["OpLogFile", "configure_library_logging", "format_line"]


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _plant_field(plant: str | None) -> str:
    """The plant as one field: `-` for none, JSON-quoted when it holds a space or a quote."""
    if not plant:
        return "-"
    plant = safe_text(plant, 200)
    if plant == "-" or any(c.isspace() or c == '"' for c in plant):
        return json.dumps(plant, ensure_ascii=False)
    return plant


def format_line(line: LogLine) -> str:
    """`<ISO timestamp> <LEVEL> <plant> <text>`: one line of the operator log file."""
    # LogLine escapes its text when made; escaping again is a no-op for safe text
    # and keeps this the one place that decides what reaches the file.
    return f"{_stamp(line.ts)} {line.level} {_plant_field(line.plant)} {safe_text(line.text, None)}"


class OpLogFile:
    """The operator log file, opened once in append mode (its folder made if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = path.open("a", encoding="utf-8")

    def write(self, lines: Iterable[LogLine]) -> None:
        """Append `lines` and flush once (a renderer calls this once per batch)."""
        if self._file is None:
            return
        text = "".join(format_line(line) + "\n" for line in lines)
        if text:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        """Close the file; later writes are ignored (a renderer closing at shutdown)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class _SafeFormatter(logging.Formatter):
    """`<ISO timestamp> <LEVEL> <logger>: <message>`, the message escaped like log lines.

    A library's message often quotes outside text (a broker's reason, a server's
    body); tracebacks stay as they are (they are ours, and read best multi-line).
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802, ARG002
        return _stamp(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        record.message = safe_text(record.message, None)
        return super().formatMessage(record)


def configure_library_logging(path: Path | None) -> None:
    """Send library log records (WARNING and up) to `path`, or to stderr when None.

    Under the UI nothing may write to the terminal, so the UI passes
    `logging.library_file`; headless, stderr is where a service's journal reads them.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # amqtt's own records are reported by us instead; transitions is chatty at WARNING.
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    logging.getLogger("transitions").setLevel(logging.ERROR)
