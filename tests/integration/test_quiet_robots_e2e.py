"""Ghost robots and implausible jumps end to end: a real mosquitto, the bridge, the sandbox.

The poster's own accounting decides what twinzo accepted and refused here (the
sandbox answers `Success: false` inside an HTTP 200 on demand), and every
message still ends in exactly one outcome with the new ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiomqtt
import httpx
import orjson
import pytest

from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.integration.conftest import SANDBOX_CREDENTIALS
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

TOPIC = "ati_fm/sherpa/status"
ROBOTS = {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"}


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout}s: {what}")
        await asyncio.sleep(0.02)


def _ati(vendor_id: str, x: float) -> bytes:
    return orjson.dumps({"sherpa_name": vendor_id, "mode": "fleet", "pose": [x, 1.0, 0.0]})


async def test_refused_and_quiet_ghosts_and_a_dropped_jump_with_exact_counters(
    mosquitto: MosquittoServer, sandbox: TwinzoSandbox
) -> None:
    config = ConsoleConfig.model_validate(
        {
            "twinzo": {**SANDBOX_CREDENTIALS, "flush_interval_ms": 20},
            "plants": [
                {
                    "name": "Old Plant",
                    "format": "ati_sherpa",
                    "broker": {"host": "127.0.0.1", "port": mosquitto.port},
                    "device_map": ROBOTS,
                    "twinzo": {"sector_id": 2},
                    "affine": {"a": 1000.0, "d": 1000.0},  # metres → mm
                    "min_post_interval_ms": 0,
                    "stale_after_s": 1.0,
                    "ghost_after_s": 1.5,
                    "refused_after_s": 1.0,
                    "drop_implausible": True,
                }
            ],
        }
    )
    plant = config.plants[0]
    bus = Bus()
    lines = bus.subscribe()
    state = PlantState(plant.name)
    stop = asyncio.Event()
    x = {"ati_amr_001": 10.0, "ati_amr_002": 50.0}
    quiet: set[str] = set()
    async with httpx.AsyncClient(timeout=2.0) as http:
        client = TwinzoClient(http, config.twinzo, base_url=sandbox.url)
        bridge = Bridge(plant, config.twinzo, client, state, OpsLog(bus, 10.0))
        task = asyncio.create_task(bridge.run(stop))
        try:
            await _until(lambda: state.mqtt == "connected", 10, "connected")
            running = asyncio.Event()

            async def report() -> None:
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as robots:
                    while not running.is_set():
                        for vendor_id in ROBOTS:
                            if vendor_id not in quiet:
                                x[vendor_id] += 0.1  # 1 m/s
                                await robots.publish(TOPIC, _ati(vendor_id, x[vendor_id]), qos=1)
                        await asyncio.sleep(0.1)

            publisher = asyncio.create_task(report())
            devices = state.devices
            try:
                await _until(
                    lambda: (
                        len(devices) == 2
                        and all(d.last_accepted_at is not None for d in devices.values())
                    ),
                    10,
                    "both accepted",
                )
                # twinzo refuses every location while the messages keep coming.
                sandbox.set_faults(location_failure_rate=1.0)
                await _until(
                    lambda: {d.ghost for d in devices.values()} == {"refused"}, 10, "refused"
                )
                sandbox.set_faults(location_failure_rate=0.0)
                await _until(lambda: {d.ghost for d in devices.values()} == {None}, 10, "clear")
                # One robot teleports 40 m in a tenth of a second: dropped, then accepted there.
                first = devices["ati_amr_001"]
                x["ati_amr_001"] += 40.0
                await _until(lambda: first.x is not None and first.x > 45_000, 10, "relocated")
                assert first.implausible_jumps == 1
                # The other robot goes quiet while the first keeps reporting.
                quiet.add("ati_amr_002")
                await _until(lambda: devices["ati_amr_002"].ghost == "quiet", 10, "quiet ghost")
                assert first.ghost is None
            finally:
                running.set()
                await asyncio.wait_for(publisher, 10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    counters = state.counters
    assert counters.outcomes["rejected:implausible_jump"] == 1
    assert counters.outcomes["failed:twinzo_rejected"] > 0
    assert counters.pending == 0
    assert counters.received == sum(counters.outcomes.values())
    assert state.ghost_episodes == {"refused": 2, "quiet": 1}
    stats = state.as_dict()
    assert stats["devices"]["tugger-06-old"]["ghost"] == "quiet"
    assert stats["devices"]["tugger-05-old"]["implausible_jumps"] == 1
    assert stats["devices"]["tugger-06-old"]["message_age_s"] >= 1.5
    text = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    assert sum("twinzo has refused its positions" in t for t in text) == 2
    assert sum("is accepted by twinzo again" in t for t in text) == 2
    assert any(
        "Ghost robot tugger-06-old (ATI:ati_amr_002) in Old Plant: no message" in t for t in text
    )
    assert any("rejected" in t.lower() and "implausible_jump" in t for t in text)
