"""VDA 5050 robots on a real mosquitto: presence from `connection` (the retained last
will included), and the demo's VDA plant end to end."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest

from dtp_console.bridge.worker import Bridge
from dtp_console.config import load_config
from dtp_console.config.model import ConsoleConfig, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.runtime import Engine
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.integration.conftest import SANDBOX_CREDENTIALS
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROBOT = "acme/AGV-7"

#: A robot in its own process: last will `CONNECTIONBROKEN` (retained), then `ONLINE`
#: (retained) and positions until it is killed. paho is the client robots use in the field.
ROBOT_SCRIPT = r"""
import json, sys, time
import paho.mqtt.client as mqtt

port = int(sys.argv[1])
base = "uagv/v2/acme/AGV-7/"
def header(n):
    return {"headerId": n, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "version": "2.1.0", "manufacturer": "acme", "serialNumber": "AGV-7"}
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="acme-AGV-7")
will = {**header(0), "connectionState": "CONNECTIONBROKEN"}
client.will_set(base + "connection", json.dumps(will), qos=1, retain=True)
client.connect("127.0.0.1", port, keepalive=60)
client.loop_start()
client.publish(base + "connection", json.dumps({**header(0), "connectionState": "ONLINE"}),
               qos=1, retain=True).wait_for_publish(5)
n = 0
while True:
    body = {**header(n), "agvPosition": {"x": 1.0 + n / 100, "y": 2.0, "theta": 0.0,
            "mapId": "hall-1", "positionInitialized": True, "localizationScore": 0.9}}
    client.publish(base + "visualization", json.dumps(body), qos=1).wait_for_publish(5)
    if n == 2:
        print("ready", flush=True)
    n += 1
    time.sleep(0.05)
"""


def _config(port: int) -> tuple[PlantConfig, TwinzoConfig]:
    config = ConsoleConfig.model_validate(
        {
            "twinzo": {**SANDBOX_CREDENTIALS, "flush_interval_ms": 20},
            "plants": [
                {
                    "name": "VDA Plant",
                    "format": "vda5050",
                    "broker": {"host": "127.0.0.1", "port": port, "reconnect_initial_s": 0.1},
                    "device_map": {ROBOT: "agv-07"},
                    "twinzo": {"sector_id": 5},
                    "affine": {"A": 1000, "D": 1000},
                    "min_post_interval_ms": 0,
                }
            ],
        }
    )
    return config.plants[0], config.twinzo


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class _Bridges:
    def __init__(self, sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
        self._sandbox, self._http = sandbox, http
        self.running: list[tuple[Bridge, asyncio.Event, asyncio.Task[None]]] = []

    def start(self, plant: PlantConfig, twinzo: TwinzoConfig) -> Bridge:
        client = TwinzoClient(self._http, twinzo, base_url=self._sandbox.url)
        bridge = Bridge(plant, twinzo, client, PlantState(plant.name), OpsLog(Bus(), 10.0))
        stop = asyncio.Event()
        self.running.append((bridge, stop, asyncio.create_task(bridge.run(stop))))
        return bridge

    async def stop(self, bridge: Bridge) -> None:
        for running, stop, task in self.running:
            if running is bridge:
                stop.set()
                await asyncio.wait_for(task, 10)


@pytest.fixture
async def bridges(sandbox: TwinzoSandbox) -> AsyncIterator[_Bridges]:
    async with httpx.AsyncClient(timeout=2.0) as http:
        started = _Bridges(sandbox, http)
        yield started
        for _, stop, task in started.running:
            stop.set()
            await asyncio.wait_for(task, 10)


def _robot(bridge: Bridge) -> Any:
    device = bridge.state.devices.get(ROBOT)
    return None if device is None else device.robot


async def test_killed_robot_is_shown_offline_by_its_retained_last_will(
    mosquitto: MosquittoServer, sandbox: TwinzoSandbox, bridges: _Bridges
) -> None:
    plant, twinzo = _config(mosquitto.port)
    bridge = bridges.start(plant, twinzo)
    await _until(lambda: bridge.state.mqtt == "connected")
    robot_proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ROBOT_SCRIPT, str(mosquitto.port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert robot_proc.stdout is not None
    try:
        assert await asyncio.wait_for(robot_proc.stdout.readline(), 15) == b"ready\n"
        await _until(lambda: "agv-07" in sandbox.latest())
        await _until(lambda: _robot(bridge) is not None and _robot(bridge).connection == "ONLINE")
    finally:
        robot_proc.kill()  # SIGKILL: no DISCONNECT packet, the broker publishes the will
        await robot_proc.wait()
    await _until(lambda: _robot(bridge).connection == "CONNECTIONBROKEN")
    robot = _robot(bridge)
    assert robot.offline
    assert robot.lost == 0 and robot.restarts == 0  # QoS 1 on one connection: nothing lost
    await bridges.stop(bridge)
    counters = bridge.state.counters
    assert counters.pending == 0
    assert counters.received == counters.outcomes.total()
    posted = len(sandbox.locations())
    # A console that starts now gets the retained will at once: offline, nothing posted.
    late = bridges.start(plant, twinzo)
    await _until(lambda: _robot(late) is not None and _robot(late).connection is not None)
    assert _robot(late).connection == "CONNECTIONBROKEN"
    await asyncio.sleep(0.3)
    assert len(sandbox.locations()) == posted
    await bridges.stop(late)
    assert late.state.counters.outcomes == {"status_only": 1}


async def test_sequence_gaps_and_restarts_through_a_broker(
    mosquitto: MosquittoServer, sandbox: TwinzoSandbox, bridges: _Bridges
) -> None:
    plant, twinzo = _config(mosquitto.port)
    bridge = bridges.start(plant, twinzo)
    await _until(lambda: bridge.state.mqtt == "connected")
    ids = [0, 1, 2, 5, 6, 6, 0, 1]  # 3 and 4 lost, 6 repeated, then a restart
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        for n, header_id in enumerate(ids):
            body = {
                "headerId": header_id,
                "timestamp": f"2030-01-01T00:00:{n:02d}Z",
                "agvPosition": {"x": n, "y": 0, "positionInitialized": True},
            }
            await client.publish("uagv/v2/acme/AGV-7/visualization", orjson.dumps(body), qos=1)
    await _until(lambda: bridge.state.counters.received == len(ids))
    await bridges.stop(bridge)
    robot = _robot(bridge)
    assert (robot.lost, robot.restarts, robot.duplicates) == (2, 1, 1)
    sequence = bridge.state.as_dict()["sequence"]
    assert (sequence["lost"], sequence["restarts"], sequence["duplicates"]) == (2, 1, 1)
    counters = bridge.state.counters
    assert counters.received == counters.outcomes.total()
    assert counters.outcomes["rejected:duplicate"] == 1


async def test_demo_vda_plant_end_to_end(tmp_path: Path) -> None:
    config = load_config(ROOT / "config" / "console.yaml", environ={})
    (plant,) = [p for p in config.plants if p.format == "vda5050"]
    assert plant.simulator is not None
    sim = plant.simulator.model_copy(update={"rate_hz": 5.0, "fault_rate": 0.0})
    plant = plant.model_copy(update={"simulator": sim, "min_post_interval_ms": 0})
    stores = config.stores.model_copy(
        update={"sqlite_path": tmp_path / "platform.sqlite3", "blob_dir": tmp_path / "blobs"}
    )
    registry = config.registry.model_copy(
        update={"twins_root": ROOT / "twins", "sqlite_path": tmp_path / "registry.sqlite3"}
    )
    api = config.api.model_copy(update={"listen": "127.0.0.1:0"})  # never the fixed 8470
    config = config.model_copy(
        update={"plants": [plant], "stores": stores, "registry": registry, "api": api}
    )
    engine = Engine(config)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 10)
    state = engine.state.plants[plant.name]
    logins = set(plant.device_map.values())
    sandbox = engine.sandbox
    assert sandbox is not None

    def _done() -> bool:
        robots = [d.robot for d in state.devices.values()]
        return set(sandbox.latest()) == logins and all(
            r is not None and r.operating_mode for r in robots
        )

    await _until(_done, 15)
    stop.set()
    await asyncio.wait_for(task, 20)
    assert {loc.sector_id for loc in sandbox.locations()} == {5}  # map hall-3 → 5
    for device in state.devices.values():
        assert device.robot is not None
        assert device.robot.connection == "ONLINE"
        assert device.robot.operating_mode == "AUTOMATIC"
        assert device.battery is not None
    assert state.sequence is not None
    assert state.sequence.lost == 0 and state.sequence.duplicates == 0
    assert state.unknown  # the unmapped robot
    counters = state.counters
    assert counters.pending == 0
    assert counters.received == counters.outcomes.total()
    assert counters.group("rejected:") == 0


SNIFF_CONFIG = """
plants:
  - name: VDA Plant
    format: vda5050
    broker: {{host: 127.0.0.1, port: {port}}}
    vda5050: {{map_sectors: {{hall-1: 9}}}}
    device_map: {{acme/AGV-7: agv-07}}
    twinzo: {{sector_id: 5}}
    affine: {{A: 1000, D: 1000}}
"""


async def test_sniff_shows_the_vda_parse(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(SNIFF_CONFIG.format(port=mosquitto.port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dtp_console", "-c", str(config),
        "sniff", "--plant", "VDA Plant", "--limit", "3", "--for", "20s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert b"+/v2/+/+/visualization" in first
    state = {
        "headerId": 3,
        "timestamp": "2030-01-01T00:00:00.5Z",
        "operatingMode": "AUTOMATIC",
        "driving": True,
        "agvPosition": {"x": 1.5, "y": 2, "mapId": "hall-1", "positionInitialized": True},
        "errors": [{"errorType": "laser\x1b[2J", "errorLevel": "FATAL"}],
        "safetyState": {"eStop": "NONE", "fieldViolation": False},
    }
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish("uagv/v2/acme/AGV-7/state", orjson.dumps(state), qos=1)
        body = {"headerId": 4, "connectionState": "OFFLINE"}
        await client.publish("uagv/v2/acme/AGV-7/connection", orjson.dumps(body), qos=1)
        body = {"headerId": 5, "agvPosition": {"x": 1, "y": 2, "positionInitialized": False}}
        await client.publish("uagv/v2/acme/AGV-7/visualization", orjson.dumps(body), qos=1)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "acme/AGV-7 -> agv-07 at (1500, 2000) mm [state #3, map hall-1 -> sector 9" in text
    assert "AUTOMATIC, driving, errors FATAL laser\\x1b[2J]" in text
    assert "[connection #4, OFFLINE]" in text
    assert "rejected:not_localized" in text
    assert "\x1b" not in text
