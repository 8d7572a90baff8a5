"""The operator log file (one writer, one format) and the one library-log setup."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dtp_console.config.model import LoggingConfig
from dtp_console.events import Bus, LogLine
from dtp_console.headless import HeadlessRenderer
from dtp_console.oplog import OpLogFile, configure_library_logging, format_line
from dtp_console.state import EngineState

#: 2026-01-01T00:00:00.250Z
TS = 1_767_225_600.25
#: `<ISO timestamp> <LEVEL> <plant> <text>`, the plant `-`, a word or JSON-quoted.
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"
LINE = re.compile(rf'^({STAMP}) (OK|FAIL|WARN|INFO) (-|"(?:[^"\\]|\\.)*"|\S+) (.*)$')
HOSTILE = "evil\x1b[2J\x1b]0;pwned\x07\nOK forged [red]x[/red][link=http://x]y[/] \x9b2J \u202e"


def test_a_line_is_timestamp_level_plant_text() -> None:
    assert format_line(LogLine(level="WARN", text="broker gone", plant="west", ts=TS)) == (
        "2026-01-01T00:00:00.250+00:00 WARN west broker gone"
    )
    assert format_line(LogLine(level="INFO", text="twin x deleted", ts=TS)) == (
        "2026-01-01T00:00:00.250+00:00 INFO - twin x deleted"
    )
    # A plant name with a space stays one field.
    assert format_line(LogLine(level="OK", text="posted", plant="Old Plant", ts=TS)) == (
        '2026-01-01T00:00:00.250+00:00 OK "Old Plant" posted'
    )


def test_a_hostile_line_is_written_as_text_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "console.log"
    log = OpLogFile(path)
    log.write([LogLine(level="FAIL", text=HOSTILE, plant="p\nq\x1b[31m", ts=TS)])
    log.close()
    log.write([LogLine(level="OK", text="after close", ts=TS)])  # ignored, not a crash
    written = path.read_text(encoding="utf-8")
    assert written.count("\n") == 1
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", written)
    match = LINE.match(written.rstrip("\n"))
    assert match is not None, written
    assert match.group(2, 3) == ("FAIL", "p\\nq\\x1b[31m")
    assert match.group(4) == (
        "evil\\x1b[2J\\x1b]0;pwned\\x07\\nOK forged [red]x[/red][link=http://x]y[/] \\x9b2J \\u202e"
    )


def test_headless_writes_log_lines_to_the_configured_file(tmp_path: Path) -> None:
    config = LoggingConfig.model_validate({"file": str(tmp_path / "logs" / "console.log")})
    assert config.file is not None
    bus, out = Bus(), io.StringIO()
    renderer = HeadlessRenderer(bus, EngineState(), out=out, log_file=config.file)
    bus.publish(LogLine(level="WARN", text=HOSTILE, plant="Old Plant", ts=TS))
    bus.publish(LogLine(level="OK", text="posted 10", ts=TS))
    renderer.drain()
    renderer.print_stats()
    renderer.close()
    lines = config.file.read_text(encoding="utf-8").splitlines()
    assert [format_line(LogLine(level="OK", text="posted 10", ts=TS))] == lines[1:]
    match = LINE.match(lines[0])
    assert match is not None and match.group(2, 3) == ("WARN", '"Old Plant"')
    # stdout keeps its `LEVEL text` shape.
    assert out.getvalue().splitlines()[1] == "OK posted 10"


def test_the_library_log_file_comes_from_config() -> None:
    assert LoggingConfig().library_file == Path("var/dtp-console.log")
    assert LoggingConfig().file is None
    assert LoggingConfig.model_validate({"library_file": "/x/y.log"}).library_file == Path(
        "/x/y.log"
    )


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger's handlers and levels, restored after the test."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("amqtt").level)
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("amqtt").setLevel(saved[2])
    logging.captureWarnings(False)


def test_library_records_go_to_the_file_escaped(
    tmp_path: Path, root_logging: logging.Logger
) -> None:
    path = tmp_path / "var" / "lib.log"
    configure_library_logging(path)
    assert [type(h) for h in root_logging.handlers] == [logging.FileHandler]
    assert logging.getLogger("amqtt").level == logging.CRITICAL
    logging.getLogger("dtp.test").warning("broker said %s", "no\n\x1b[2Jway")
    logging.getLogger("dtp.test").info("below the level")
    for handler in root_logging.handlers:
        handler.flush()
    written = path.read_text(encoding="utf-8")
    assert written.count("\n") == 1
    assert re.match(
        rf"^{STAMP} WARNING dtp.test: broker said no\\n\\x1b\[2Jway$",
        written.rstrip("\n"),
    ), written


def test_headless_library_records_go_to_stderr(root_logging: logging.Logger) -> None:
    configure_library_logging(None)
    (handler,) = root_logging.handlers
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr
