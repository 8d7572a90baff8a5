"""Device-map saves under faults: two saves racing, a read-only or full disk.

The engine runs for real (sandbox as twinzo, a private mosquitto). Racing saves
from one opened map must leave both edits in the file (each save is a diff),
valid YAML with its comments, and the running bridge on the map the file holds. A save that cannot
be written leaves the file and the running map as they were and says why.
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dtp_console.bridge.worker import Bridge
from dtp_console.config import load_config
from dtp_console.config.writer import ConfigWriteError, update_plant_field
from dtp_console.runtime import Engine
from tests.reliability.conftest import TOPIC, ati, publish, until
from tests.support.configs import OPERATOR_CONFIG
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

PLANT = "Old Plant"
CONFIG = OPERATOR_CONFIG + "    min_post_interval_ms: 0\n"
ORIGINAL = {"ati_amr_001": "tugger-05-old"}
MAP_A = {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"}
MAP_B = {"ati_amr_001": "tugger-05-old", "ati_amr_003": "tugger-07-old"}


@pytest.fixture
async def engine(mosquitto: MosquittoServer, tmp_path: Path) -> AsyncIterator[Engine]:
    path = tmp_path / "conf" / "console.yaml"
    path.parent.mkdir()
    path.write_text(CONFIG.format(port=mosquitto.port))
    engine = Engine(load_config(path), config_path=path)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 10)
    await until(lambda: engine.state.plants[PLANT].mqtt == "connected", what="MQTT connected")
    yield engine
    stop.set()
    await asyncio.wait_for(task, 20)


def _runs(bridge: Bridge, wanted: dict[str, str]) -> Callable[[], bool]:
    return lambda: bridge.device_map == wanted


def _file_map(path: Path) -> dict[str, str]:
    document = yaml.safe_load(path.read_text())  # valid YAML, or this raises
    [plant] = document["plants"]
    return dict(plant["device_map"])


async def test_racing_saves_keep_both_edits_in_file_and_bridge(engine: Engine) -> None:
    path = engine.config_path
    assert path is not None
    bridge = engine.bridges[PLANT]
    outcomes: list[str] = []
    for _round in range(8):
        await engine.save_device_map(PLANT, ORIGINAL)

        async def _save(mapping: dict[str, str]) -> str:
            try:
                # Both editors opened ORIGINAL: each saves only its own addition.
                # Each in its own thread and loop, as two processes would race on the file.
                await asyncio.to_thread(
                    asyncio.run, engine.save_device_map(PLANT, mapping, ORIGINAL)
                )
            except ConfigWriteError as exc:
                # The only acceptable refusal: it noticed the other save and says so.
                return f"refused: {exc}"
            return "saved"

        outcomes += await asyncio.gather(_save(MAP_A), _save(MAP_B))
        in_file = _file_map(path)
        assert in_file == {**MAP_A, **MAP_B}, in_file
        assert "# the first tugger" in path.read_text()
        assert load_config(path).plant(PLANT).device_map == in_file
        # The running bridge follows the file (at once, or by the reload within a tick).
        await until(_runs(bridge, in_file), timeout=3, what="bridge = file")
    assert "saved" in outcomes
    refusals = [o for o in outcomes if o != "saved"]
    assert all("changed while it was being edited" in o for o in refusals), refusals
    leftovers = [p.name for p in path.parent.iterdir() if p.name != path.name]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


async def test_writer_racing_itself_keeps_a_valid_file(tmp_path: Path) -> None:
    """Two threads hammering `update_plant_field`: never a torn or foreign file."""
    path = tmp_path / "console.yaml"
    path.write_text(CONFIG.format(port=1883))

    def _hammer(mapping: dict[str, str]) -> int:
        refused = 0
        for _ in range(40):
            try:
                update_plant_field(path, PLANT, "device_map", mapping)
            except ConfigWriteError:
                refused += 1
        return refused

    refused = await asyncio.gather(
        asyncio.to_thread(_hammer, MAP_A), asyncio.to_thread(_hammer, MAP_B)
    )
    assert _file_map(path) in (MAP_A, MAP_B)
    assert "# the first tugger" in path.read_text()
    assert sum(refused) < 80, "most saves went through"


async def test_concurrent_saves_never_lose_a_reported_success(tmp_path: Path) -> None:
    """Two saves of different fields at once: both land, or one is refused; never lost."""
    path = tmp_path / "console.yaml"
    lost = 0
    for _round in range(10):
        path.write_text(CONFIG.format(port=1883))
        barrier = threading.Barrier(2)

        def _save(field: str, value: Any, b: threading.Barrier = barrier) -> bool:
            b.wait()
            try:
                update_plant_field(path, PLANT, field, value)
            except ConfigWriteError:
                return False
            return True

        saved = await asyncio.gather(
            asyncio.to_thread(_save, "device_map", MAP_A),
            asyncio.to_thread(_save, "twinzo.sector_id", 9),
        )
        plant = yaml.safe_load(path.read_text())["plants"][0]
        if all(saved) and not (plant["device_map"] == MAP_A and plant["twinzo"]["sector_id"] == 9):
            lost += 1
    assert lost == 0, f"{lost}/10 rounds: both saves reported success, one change is gone"


def _fail(code: int) -> Any:
    def _raise(*_args: object, **_kwargs: object) -> Any:
        raise OSError(code, os.strerror(code))

    return _raise


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("mkstemp", errno.EROFS),  # read-only directory: the temporary file cannot be made
        ("fsync", errno.ENOSPC),  # disk full while flushing the new file
        ("replace", errno.EROFS),  # read-only at the rename
        ("replace", errno.ENOSPC),
    ],
)
async def test_unwritable_config_keeps_the_old_map_and_says_why(
    engine: Engine,
    mosquitto: MosquittoServer,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    code: int,
) -> None:
    path = engine.config_path
    assert path is not None
    before = path.read_text()
    bridge = engine.bridges[PLANT]
    target = {"mkstemp": tempfile, "fsync": os, "replace": os}[where]
    monkeypatch.setattr(target, where, _fail(code))
    with pytest.raises(ConfigWriteError) as raised:
        await engine.save_device_map(PLANT, MAP_A)
    monkeypatch.undo()
    message = str(raised.value)
    assert os.strerror(code) in message, message
    assert "the file is unchanged" in message
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temporary file left"
    assert bridge.device_map == ORIGINAL
    # The old map is the one in force: ati_amr_002 is still unknown, ati_amr_001 still goes.
    state = engine.state.plants[PLANT]
    await publish(
        mosquitto.port, [(TOPIC, ati("ati_amr_002", 1.0, 1.0)), (TOPIC, ati("ati_amr_001", 2, 2))]
    )
    await until(lambda: state.counters.received == 2 and state.counters.pending == 0)
    assert state.counters.outcomes["unknown_device"] == 1
    assert state.counters.outcomes["forwarded"] == 1
    assert bridge.device_map == ORIGINAL
