"""Log and terminal injection: vendor ids and topics reach stdout, the log file and sniff as text.

A real `dtp-console run --no-ui` (and `sniff`) over a private mosquitto, fed ids
and topics that carry newlines, ESC/OSC sequences, C1 controls, bidi overrides
and Rich markup. Nothing the vendor sends may become a control byte on the
operator's terminal or a line of its own in the log.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import orjson
import pytest

from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

CONFIG = """
twinzo: {{client: demo, password: change-me, api_key: change-me}}
sandbox: {{enabled: true}}
registry: {{enabled: false}}
stores: {{enabled: false}}
logging:
  log_every_n: 1
  stats_interval_s: 0.5
  file: {log}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map: {{ati_amr_001: tugger-05-old}}
    twinzo: {{sector_id: 2}}
    min_post_interval_ms: 0
  - name: HiTech Plant
    format: hitech
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map: {{hitech-amr-001: tugger-03}}
    twinzo: {{sector_id: 1}}
    min_post_interval_ms: 0
"""

# The first five distinct unknown ids of a plant get a line each (the rest fold):
# these five are the attacks, and they come first.
HOSTILE_IDS = [
    "evil-1\n OK forged (ATI:x) -> Old Plant: (0, 0)",
    "evil-2\x1b[2J\x1b]0;pwned\x07",
    "evil-3[red]x[/red][link=http://x]y[/]",
    "evil-4\x9b2J",
    "evil-5\u202edecaf\u202c",
]
# Mosquitto refuses control characters in topic names (MQTT says SHOULD NOT);
# other brokers may not, and bidi overrides and markup pass everywhere (no `/` in
# the markup: it would split the topic level).
HOSTILE_TOPIC = "hitech/amr/t[link=mailto:x]y[blink]z\u202e\u2066/position"

# Every C0 control but the line's own newline, DEL, C1, and Unicode format and
# separator characters that can disguise text (bidi overrides and isolates).
RAW_CONTROL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in RAW_CONTROL.findall(text)})


def _forged(lines: list[str]) -> list[str]:
    """Lines that start with what only an id could have written."""
    return [line for line in lines if re.match(r"(\S+ )?\s*OK forged", line)]


_FILE_LINE = re.compile(r'\S+ (OK|FAIL|WARN|INFO) (?:-|"(?:[^"\\]|\\.)*"|[^\s"]+) (.*)')


def _level_and_text(line: str) -> str:
    """A `logging.file` line as stdout shows it (`LEVEL text`); the format is checked too."""
    match = _FILE_LINE.fullmatch(line)
    assert match is not None, f"not a log file line: {line!r}"
    return f"{match.group(1)} {match.group(2)}"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """An anonymous mosquitto on a free 127.0.0.1 port."""
    with MosquittoServer(tmp_path / "mosquitto") as server:
        yield server


async def _wait_line(proc: asyncio.subprocess.Process, needle: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not raw:
            break
        seen.append(raw.decode("utf-8", "replace").rstrip("\n"))
        if needle in seen[-1]:
            return
    raise AssertionError(f"{needle!r} not printed; got {seen}")


async def test_headless_stdout_and_log_file_show_hostile_ids_as_text(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "console.log"
    config = tmp_path / "console.yaml"
    config.write_text(CONFIG.format(port=mosquitto.port, log=log))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dtp_console", "-c", str(config), "run", "--no-ui", "--for", "4s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    while sum("MQTT connected" in line for line in seen) < 2:
        await _wait_line(proc, "MQTT connected", seen)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        for vendor_id in HOSTILE_IDS + [f"flood-{n:02d}" for n in range(30)]:
            payload = {"sherpa_name": vendor_id, "mode": "fleet", "pose": [1.0, 2.0, 0.0]}
            await client.publish("ati_fm/sherpa/status", orjson.dumps(payload), qos=1)
        await client.publish(HOSTILE_TOPIC, b"not json", qos=1)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    stdout = "\n".join(seen) + "\n" + out.decode("utf-8", "replace")
    # The file's lines are `<timestamp> <LEVEL> <plant> <text>`; compared as stdout's `LEVEL text`.
    raw_log = log.read_text("utf-8")
    assert _raw_controls(raw_log) == [], "logging.file"
    logged = "\n".join(_level_and_text(line) for line in raw_log.splitlines())
    for name, text in (("stdout", stdout), ("logging.file", logged)):
        assert _raw_controls(text) == [], name
        assert _forged(text.splitlines()) == [], name
        # Shown, escaped visibly and literally (markup is not interpreted anywhere).
        assert (
            "WARN Unknown ATI device: evil-1\\n OK forged (ATI:x) -> Old Plant: (0, 0)"
            " (add to device map)"
        ) in text, name
        assert "evil-2\\x1b[2J\\x1b]0;pwned\\x07 (add to device map)" in text, name
        assert "evil-3[red]x[/red][link=http://x]y[/] (add to device map)" in text, name
        assert "evil-4\\x9b2J (add" in text, name
        assert "evil-5\\u202edecaf\\u202c (add" in text, name
        assert "from hitech/amr/t[link=mailto:x]y[blink]z\\u202e\\u2066/position" in text, name
        # 35 distinct unknown ids: five lines, then the rest folded into one, which
        # only the flush at shutdown prints (the window is 10 s, the run 4 s).
        assert sum("WARN Unknown ATI device:" in line for line in text.splitlines()) == 5, name
        assert (
            "WARN … and 30 more unknown ATI devices in the last 10s"
            " (flood-00, flood-01, flood-02, …)"
        ) in text, name
    assert "STATS Old Plant: mqtt connected | rx 35 fwd 0 coal 0 unk 35" in stdout


async def test_sniff_shows_hostile_topics_and_ids_as_text(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(CONFIG.format(port=mosquitto.port, log=tmp_path / "unused.log"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dtp_console", "-c", str(config),
        "sniff", "--plant", "HiTech Plant", "--limit", "2", "--for", "20s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert b"sniffing HiTech Plant" in first
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        forged = {"device_id": "r1\nOK forged\x1b[2J\x9b\u202e", "position": {"x": 1, "y": 2}}
        await client.publish("hitech/amr/r1/position", orjson.dumps(forged), qos=1)
        await client.publish(HOSTILE_TOPIC, b"{\n\x1b[31mnot json", qos=1)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    text = out.decode("utf-8", "replace")
    assert _raw_controls(text) == []
    assert _forged(text.splitlines()) == []
    assert "=> r1\\nOK forged\\x1b[2J\\x9b\\u202e -> UNKNOWN at (1, 2) mm" in text
    assert "hitech/amr/t[link=mailto:x]y[blink]z\\u202e\\u2066/position  {\\n\\x1b[31m" in text
    assert "2 messages" in text
