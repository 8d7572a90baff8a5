"""The zero-setup demo end to end: embedded brokers + simulator + bridges + sandbox."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from dtp_console.config import load_config
from dtp_console.runtime import Engine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_demo_forwards_every_mapped_robot_into_its_sector_and_bounds(
    tmp_path: Path,
) -> None:
    config = load_config(ROOT / "config" / "console.yaml", environ={})
    stores = config.stores.model_copy(
        update={"sqlite_path": tmp_path / "platform.sqlite3", "blob_dir": tmp_path / "blobs"}
    )
    registry = config.registry.model_copy(
        update={"twins_root": ROOT / "twins", "sqlite_path": tmp_path / "registry.sqlite3"}
    )
    plants = []
    for plant in config.plants:
        assert plant.simulator is not None
        sim = plant.simulator.model_copy(update={"rate_hz": 5.0, "fault_rate": 0.0})
        plants.append(plant.model_copy(update={"simulator": sim, "min_post_interval_ms": 0}))
    api = config.api.model_copy(update={"listen": "127.0.0.1:0"})  # never the fixed 8470
    config = config.model_copy(
        update={"plants": plants, "stores": stores, "registry": registry, "api": api}
    )
    engine = Engine(config)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 10)
    mapped = {login for p in config.plants for login in p.device_map.values()}
    sandbox = engine.sandbox
    assert sandbox is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and set(sandbox.latest()) != mapped:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 20)

    latest = sandbox.latest()
    assert set(latest) == mapped
    for plant in config.plants:
        assert plant.bounds is not None
        logins = set(plant.device_map.values())
        for location in sandbox.locations():
            if location.login not in logins:
                continue
            assert location.sector_id == plant.twinzo.sector_id
            # The simulator drives robots inside the floor in twinzo mm and publishes
            # them through the inverse affine; the bridge's forward affine must land
            # them back inside (a wrong transform is metres-to-kilometres off).
            assert location.x is not None and location.y is not None
            assert plant.bounds.contains(location.x, location.y), (plant.name, location)
        state = engine.state.plants[plant.name]
        assert state.unknown, f"{plant.name}: the unmapped robot shows up as unknown"
        assert not set(state.unknown) & set(plant.device_map)
        counters = state.counters
        assert counters.pending == 0
        assert counters.received == sum(counters.outcomes.values())
        assert counters.outcomes["unknown_device"] >= 1
    assert engine.state.platform_topics["dtp/sensors/room1/temp"] >= 1
    # The generators' messages reached the embedded observation/event store, the
    # registry's twins and the device maps reached the embedded graph.
    with sqlite3.connect(tmp_path / "platform.sqlite3") as db:
        assert db.execute("select count(*) from observation").fetchone()[0] >= 1
        assert db.execute("select count(*) from graph_device").fetchone()[0] == len(mapped)
        assert db.execute("select count(*) from graph_twin").fetchone()[0] >= 5
    archived = sorted((tmp_path / "blobs" / "twins").rglob("*.yaml"))
    assert len({p.parent.name for p in archived}) >= 5  # one folder per registered twin
