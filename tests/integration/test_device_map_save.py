"""Saving a device map from the console: atomic, comment-preserving, live, and safe on failure."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dtp_console.config import load_config
from dtp_console.config.writer import ConfigWriteError, DeviceMapConflictError
from dtp_console.events import LogLine
from dtp_console.runtime import Engine
from tests.support.configs import OPERATOR_CONFIG
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

CONFIG = OPERATOR_CONFIG


@pytest.fixture
async def engine(mosquitto: MosquittoServer, tmp_path: Path) -> AsyncIterator[Engine]:
    path = tmp_path / "conf" / "console.yaml"
    path.parent.mkdir()
    path.write_text(CONFIG.format(port=mosquitto.port))
    engine = Engine(load_config(path), config_path=path)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 10)
    # Stopping while aiomqtt is still connecting waits out its connect thread.
    while engine.state.plants["Old Plant"].mqtt != "connected":
        await asyncio.sleep(0.02)
    yield engine
    stop.set()
    await asyncio.wait_for(task, 20)


async def test_save_persists_applies_live_and_logs(engine: Engine) -> None:
    lines = engine.bus.subscribe()
    assert engine.config_path is not None
    new_map = {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"}
    await engine.save_device_map("Old Plant", new_map)
    assert engine.bridges["Old Plant"].device_map == new_map
    text = engine.config_path.read_text()
    assert "# plant config kept by operators" in text
    assert "# the first tugger" in text
    assert load_config(engine.config_path).plant("Old Plant").device_map == new_map
    logged = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    assert "INFO device map of Old Plant saved: 2 devices (+1 -0 ~0)" in logged


async def test_invalid_map_is_refused_and_nothing_changes(engine: Engine) -> None:
    assert engine.config_path is not None
    before = engine.config_path.read_text()
    with pytest.raises(ValueError, match="login may use letters"):
        await engine.save_device_map("Old Plant", {"ati_amr_001": "tugger 05"})
    assert engine.config_path.read_text() == before
    assert engine.bridges["Old Plant"].device_map == {"ati_amr_001": "tugger-05-old"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_read_only_directory_keeps_the_old_map(engine: Engine) -> None:  # pragma: no cover
    assert engine.config_path is not None
    engine.config_path.parent.chmod(0o500)
    try:
        with pytest.raises(ConfigWriteError):
            await engine.save_device_map("Old Plant", {"ati_amr_009": "tugger-09"})
    finally:
        engine.config_path.parent.chmod(0o700)
    assert engine.bridges["Old Plant"].device_map == {"ati_amr_001": "tugger-05-old"}


async def test_failed_write_keeps_the_old_map(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert engine.config_path is not None
    before = engine.config_path.read_text()

    def _disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(ConfigWriteError, match="No space left"):
        await engine.save_device_map("Old Plant", {"ati_amr_009": "tugger-09"})
    monkeypatch.undo()
    assert engine.config_path.read_text() == before
    assert engine.bridges["Old Plant"].device_map == {"ati_amr_001": "tugger-05-old"}


async def test_a_mapping_added_to_the_file_meanwhile_survives_in_file_and_bridge(
    engine: Engine,
) -> None:
    assert engine.config_path is not None
    opened = dict(engine.bridges["Old Plant"].device_map)  # what the editor opened with
    anchor = "      ati_amr_001: tugger-05-old   # the first tugger\n"
    text = engine.config_path.read_text()
    engine.config_path.write_text(text.replace(anchor, anchor + "      ati_amr_007: tugger-07\n"))
    engine.reload()  # what the housekeeping task does within a second
    assert engine.bridges["Old Plant"].device_map["ati_amr_007"] == "tugger-07"
    saved = await engine.save_device_map(
        "Old Plant", {**opened, "ati_amr_002": "tugger-06-old"}, base=opened
    )
    expected = {
        "ati_amr_001": "tugger-05-old",
        "ati_amr_007": "tugger-07",
        "ati_amr_002": "tugger-06-old",
    }
    assert saved == expected
    assert engine.bridges["Old Plant"].device_map == expected
    assert load_config(engine.config_path).plant("Old Plant").device_map == expected


async def test_a_conflicting_save_changes_neither_file_nor_bridge(engine: Engine) -> None:
    assert engine.config_path is not None
    opened = dict(engine.bridges["Old Plant"].device_map)
    engine.config_path.write_text(
        engine.config_path.read_text().replace("tugger-05-old", "tugger-99")
    )
    engine.reload()
    changed = engine.config_path.read_text()
    with pytest.raises(DeviceMapConflictError, match="the file changed since you opened it"):
        await engine.save_device_map("Old Plant", {"ati_amr_001": "tugger-11"}, base=opened)
    assert engine.config_path.read_text() == changed
    assert engine.bridges["Old Plant"].device_map == {"ati_amr_001": "tugger-99"}
