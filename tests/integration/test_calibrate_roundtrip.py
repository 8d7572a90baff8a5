"""Calibration round trip: `calibrate --write` on a running console moves its robots to truth."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import orjson
import pytest

from dtp_console.bridge.geometry import apply_affine
from dtp_console.cli import main
from dtp_console.config import load_config
from dtp_console.config.model import Affine
from dtp_console.runtime import Engine
from tests.support.mosquitto import MosquittoServer
from tests.unit.test_calibrate_fit import TRUE, synthetic_points

pytestmark = pytest.mark.integration

CONFIG = """\
# round-trip test config
twinzo: {{client: demo, password: change-me, api_key: change-me, flush_interval_ms: 20}}
sandbox: {{enabled: true}}
registry: {{enabled: false}}
stores: {{enabled: false}}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map: {{ati_amr_001: tugger-05-old}}
    twinzo: {{sector_id: 2}}
    bounds: {{x_min: 0, x_max: 265000, y_min: 46000, y_max: 218000}}
    min_post_interval_ms: 0
    affine: {{A: 1, B: 0, C: 0, D: 1, TX: 0, TY: 0}}  # uncalibrated
"""


async def _post_pose(port: int, x: float, y: float) -> None:
    body = {"sherpa_name": "ati_amr_001", "mode": "fleet", "pose": [x, y, 0.0]}
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish("ati_fm/sherpa/status", orjson.dumps(body), qos=1)


async def _until_x_changes(engine: Engine, previous: float | None) -> tuple[float, float]:
    deadline = time.monotonic() + 10
    assert engine.sandbox is not None
    while time.monotonic() < deadline:
        latest = engine.sandbox.latest().get("tugger-05-old")
        if (
            latest is not None
            and latest.x is not None
            and latest.y is not None
            and latest.x != previous
        ):
            return latest.x, latest.y
        await asyncio.sleep(0.02)
    raise AssertionError("no new position reached the sandbox")


async def test_write_then_running_bridge_places_robot_where_twinzo_expects(
    mosquitto: MosquittoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config_path = tmp_path / "console.yaml"
    config_path.write_text(CONFIG.format(port=mosquitto.port))
    points, _ = synthetic_points()
    rows = ["name,vendor_x,vendor_y,twinzo_x,twinzo_y"] + [
        f"{p.name},{p.vendor_x!r},{p.vendor_y!r},{p.twinzo_x!r},{p.twinzo_y!r}" for p in points
    ]
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")

    engine = Engine(load_config(config_path), config_path=config_path)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        await asyncio.wait_for(engine.ready.wait(), 10)
        while engine.state.plants["Old Plant"].mqtt != "connected":
            await asyncio.sleep(0.02)
        vendor = (52.0, -61.5)  # metres, somewhere on the floor
        await _post_pose(mosquitto.port, *vendor)
        before = await _until_x_changes(engine, None)
        assert before == pytest.approx(vendor)  # identity: metres posted as millimetres

        code = await asyncio.to_thread(
            main,
            ["calibrate", "-c", str(config_path), "--plant", "Old Plant", "points.csv", "--write"],
        )
        assert code == 0
        deadline = time.monotonic() + 5  # the console polls the file once a second
        while engine.bridges["Old Plant"].affine.a == 1.0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await _post_pose(mosquitto.port, vendor[0], vendor[1] + 0.001)
        after = await _until_x_changes(engine, before[0])
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    truth = apply_affine(Affine(**TRUE.as_dict()), vendor[0], vendor[1] + 0.001)
    assert after[0] == pytest.approx(truth[0], abs=150)
    assert after[1] == pytest.approx(truth[1], abs=150)
    assert "# round-trip test config" in config_path.read_text()  # comments survive
