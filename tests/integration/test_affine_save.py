"""`Engine.save_affine` and `capture_point`: the calibration's one path into a running plant.

The same guarantees as a device-map save: validated first, written atomically
with the file's comments kept, applied to the running bridge, an `event_log`
entry and a log line; a refusal changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dtp_console.config import load_config
from dtp_console.config.model import Affine
from dtp_console.config.writer import ConfigWriteError
from dtp_console.events import LogLine
from dtp_console.runtime import Engine
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

PLANT = "Old Plant"
CONFIG = """\
# plant config kept by operators
twinzo: {{client: demo, password: change-me, api_key: change-me}}
sandbox: {{enabled: true}}
registry: {{enabled: false}}
stores: {{enabled: true, sqlite_path: {db}, blob_dir: {blobs}}}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map:
      ati_amr_001: tugger-05-old   # the first tugger
    affine:   # surveyed in March
      A: 1000
      D: -1000
    twinzo: {{sector_id: 2}}
"""
NEW = {"a": 999.7412345678, "b": 22.88, "c": 22.88, "d": -999.74, "tx": 95598.81234, "ty": 1.5}


class _Running:
    def __init__(self, engine: Engine, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.engine, self.stop, self.task = engine, stop, task

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


@pytest.fixture
async def running(mosquitto: MosquittoServer, tmp_path: Path) -> AsyncIterator[_Running]:
    path = tmp_path / "conf" / "console.yaml"
    path.parent.mkdir()
    path.write_text(
        CONFIG.format(port=mosquitto.port, db=tmp_path / "platform.db", blobs=tmp_path / "blobs")
    )
    engine = Engine(load_config(path), config_path=path, simulate=False)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 10)
    while engine.state.plants[PLANT].mqtt != "connected":
        await asyncio.sleep(0.02)
    rig = _Running(engine, stop, task)
    yield rig
    if not task.done():
        await rig.finish()


def _events(tmp_path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(tmp_path / "platform.db") as db:
        rows = db.execute("SELECT body FROM event_log WHERE source = 'affine'").fetchall()
    return [json.loads(row[0]) for row in rows]


async def test_save_writes_keeps_comments_applies_events_and_logs(
    running: _Running, tmp_path: Path
) -> None:
    engine = running.engine
    lines = engine.subscribe(maxsize=1000)
    assert engine.config_path is not None
    saved = await engine.save_affine(PLANT, NEW, reason="calibration (robust affine)")
    expected = Affine(a=999.741235, b=22.88, c=22.88, d=-999.74, tx=95598.812, ty=1.5)
    assert saved.written == engine.config_path
    assert saved.applied
    assert saved.values == expected.model_dump()  # rounded as the file keeps it
    assert engine.bridges[PLANT].affine == expected
    text = engine.config_path.read_text()
    assert "# plant config kept by operators" in text
    assert "# surveyed in March" in text
    assert "# the first tugger" in text
    assert "A: 999.741235" in text  # the file's spelling (upper case) is kept
    assert load_config(engine.config_path).plant(PLANT).affine == expected
    logged = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    assert any(
        line.startswith(f"INFO affine of {PLANT} set by calibration (robust affine): written to")
        for line in logged
    ), logged
    await running.finish()
    [event] = _events(tmp_path)
    assert event["plant"] == PLANT
    assert event["reason"] == "calibration (robust affine)"
    assert event["after"] == expected.model_dump()
    assert event["before"] == Affine(a=1000, d=-1000).model_dump()


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}, "singular"),
        ({"a": math.nan, "d": 1.0}, "valid affine"),
        ({"a": math.inf, "d": 1.0}, "valid affine"),
        ({"a": "1000", "d": "x"}, "must be numbers"),
        ({"a": 1.0, "d": 1.0, "zoom\x1b[31m": 2.0}, "not affine parameters"),
        ({"a": [1.0], "d": 1.0}, "must be numbers"),
    ],
)
async def test_an_invalid_affine_is_refused_and_nothing_changes(
    running: _Running, tmp_path: Path, values: dict[str, object], why: str
) -> None:
    engine = running.engine
    assert engine.config_path is not None
    before = engine.config_path.read_text()
    lines = engine.subscribe(maxsize=1000)
    with pytest.raises(ConfigWriteError, match=why):
        await engine.save_affine(PLANT, values, reason="test")  # type: ignore[arg-type]
    assert engine.config_path.read_text() == before
    assert engine.bridges[PLANT].affine == Affine(a=1000, d=-1000)
    assert not any(isinstance(e, LogLine) and "affine" in e.text for e in lines.drain())
    await running.finish()
    assert _events(tmp_path) == []


async def test_an_unwritable_file_keeps_the_running_affine(running: _Running) -> None:
    engine = running.engine
    assert engine.config_path is not None
    engine.config_path.write_text("plants: []\n")  # the plant is no longer in the file
    with pytest.raises(ConfigWriteError, match="no plant named"):
        await engine.save_affine(PLANT, NEW, reason="test")
    assert engine.bridges[PLANT].affine == Affine(a=1000, d=-1000)


async def test_without_a_file_the_affine_is_applied_not_stored(running: _Running) -> None:
    engine = running.engine
    engine.config_path = None
    saved = await engine.save_affine(PLANT, {"a": 2.0, "d": 2.0}, reason="test")
    assert saved.written is None
    assert saved.applied
    assert engine.bridges[PLANT].affine == Affine(a=2.0, d=2.0)


async def test_capture_needs_a_running_bridge_and_a_position(running: _Running) -> None:
    engine = running.engine
    with pytest.raises(ValueError, match="has no position yet"):
        engine.capture_point(PLANT, "ati_amr_001", 1.0, 2.0, "")
    with pytest.raises(ValueError, match="the bridge is not running"):
        engine.capture_point("No Such Plant", "ati_amr_001", 1.0, 2.0, "")
