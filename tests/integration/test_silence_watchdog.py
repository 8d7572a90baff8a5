"""The silent-connection watchdog against a real mosquitto that stops delivering.

Mosquitto (2.0.11 here) applies a reloaded ACL file to every delivery after a
SIGHUP, while the connections and subscriptions stay as they were: the bridge
stays "connected", its subscription stays granted, and nothing arrives. That
is the field's "connected but silent" bridge, made on purpose.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

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
USERS = {"bridge": "test-pass", "robots": "test-robots"}
ALLOWED = "user bridge\ntopic read ati_fm/#\n\nuser robots\ntopic write ati_fm/#\n"
DENIED = "user bridge\ntopic read nothing/#\n\nuser robots\ntopic write ati_fm/#\n"
BOUND_S = 2.0


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout}s: {what}")
        await asyncio.sleep(0.02)


async def _robots(port: int, sent: list[int], stop: asyncio.Event) -> None:
    """Two robots reporting every 50 ms, as the `robots` user (which may always write)."""
    async with aiomqtt.Client("127.0.0.1", port, username="robots", password="test-robots") as c:
        step = 0
        while not stop.is_set():
            vendor_id = f"ati_amr_00{1 + step % 2}"
            body = {"sherpa_name": vendor_id, "mode": "fleet", "pose": [step * 0.01, 1.0, 0.0]}
            await c.publish(TOPIC, orjson.dumps(body), qos=1)
            sent[0] += 1
            step += 1
            await asyncio.sleep(0.05)


async def test_watchdog_reconnects_a_connection_that_delivers_nothing(
    tmp_path: Path, sandbox: TwinzoSandbox
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto-acl", users=USERS, acl=ALLOWED).start()
    assert broker.acl_file is not None
    config = ConsoleConfig.model_validate(
        {
            "twinzo": {**SANDBOX_CREDENTIALS, "flush_interval_ms": 20},
            "plants": [
                {
                    "name": "Old Plant",
                    "format": "ati_sherpa",
                    "broker": {
                        "host": "127.0.0.1",
                        "port": broker.port,
                        "username": "bridge",
                        "password": "test-pass",
                        "reconnect_initial_s": 0.1,
                    },
                    "device_map": {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"},
                    "twinzo": {"sector_id": 2},
                    "min_post_interval_ms": 0,
                    "silence_reconnect_s": BOUND_S,
                }
            ],
        }
    )
    plant = config.plants[0]
    bus = Bus()
    lines = bus.subscribe()
    state = PlantState(plant.name)
    stop, robots_stop = asyncio.Event(), asyncio.Event()
    sent = [0]
    async with httpx.AsyncClient(timeout=2.0) as http:
        client = TwinzoClient(http, config.twinzo, base_url=sandbox.url)
        bridge = Bridge(plant, config.twinzo, client, state, OpsLog(bus, 10.0))
        task = asyncio.create_task(bridge.run(stop))
        robots: asyncio.Task[None] | None = None
        try:
            await _until(lambda: state.mqtt == "connected", 10, "bridge connected")
            robots = asyncio.create_task(_robots(broker.port, sent, robots_stop))
            await _until(lambda: state.counters.received >= 10, 10, "messages flowing")
            assert not state.silent

            # Deny the bridge's read and reload: the connection stays, delivery stops.
            broker.acl_file.write_text(DENIED)
            broker.reload()
            await asyncio.sleep(0.3)  # the reload and what was in flight
            before, published = state.counters.received, sent[0]
            await asyncio.sleep(BOUND_S * 0.6)  # well inside the bound: no reconnect yet
            assert sent[0] - published >= 10, "the robots keep publishing"
            assert state.counters.received == before, "mosquitto still delivers"
            assert (state.mqtt, state.connects, state.silence_reconnects) == ("connected", 1, 0)

            # Past the bound the watchdog drops the connection and subscribes again.
            await _until(lambda: state.silence_reconnects >= 1, BOUND_S * 3, "watchdog fired")
            assert state.silent
            await _until(lambda: state.connects >= 2, 10, "reconnected")
            await _until(lambda: state.mqtt == "connected", 10, "connected again")
            assert state.counters.received == before, "still denied after the reconnect"

            broker.acl_file.write_text(ALLOWED)
            broker.reload()
            await _until(lambda: state.counters.received > before + 10, 10, "flowing again")
            await _until(lambda: not state.silent, 5, "silent cleared")
        finally:
            robots_stop.set()
            if robots is not None:
                await asyncio.wait_for(robots, 10)
            stop.set()
            await asyncio.wait_for(task, 15)
            broker.stop()
    text = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    warns = [t for t in text if "reconnecting and resubscribing" in t]
    assert len(warns) == 1, text  # once per episode, however many reconnects it took
    assert warns[0].startswith("WARN MQTT Old Plant: no message for 2s although robots")
    assert any(t.startswith("INFO MQTT Old Plant: messages flow again after") for t in text)
    assert state.silence_reconnects >= 1
    stats = state.as_dict()
    assert stats["silence_reconnects"] == state.silence_reconnects
    assert stats["silent"] is False
    # Every message has its outcome, the watchdog's reconnects included.
    assert state.counters.pending == 0
    assert sum(state.counters.outcomes.values()) == state.counters.received
    assert state.counters.outcomes["dropped:queue_full"] == 0
