"""Fault-injection rigs: the integration servers, plus a bridge whose log can be read.

The private mosquittos and the twinzo sandbox are the integration suite's
fixtures, re-exported here; the helpers below are the small `_config` /
`start_bridge` pattern of `tests/integration/test_bridge.py`, with knobs the
fault tests need (repeat window, device count, client timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest

from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.integration.conftest import (
    SANDBOX_CREDENTIALS,
    mosquitto,
    other_ca,
    sandbox,
    tls_files,
    tls_mosquitto,
)

__all__ = [
    "TOPIC",
    "BridgeRig",
    "StartBridge",
    "at_least",
    "ati",
    "logins",
    "mosquitto",
    "other_ca",
    "plant_config",
    "publish",
    "sandbox",
    "tls_files",
    "tls_mosquitto",
    "until",
]

TOPIC = "ati_fm/sherpa/status"


def logins(devices: int) -> dict[str, str]:
    """A device map of `devices` ATI robots: `ati_amr_001` → `tugger-001`, …"""
    return {f"ati_amr_{i:03d}": f"tugger-{i:03d}" for i in range(1, devices + 1)}


def plant_config(
    port: int, *, devices: int = 2, twinzo: dict[str, Any] | None = None, **plant: Any
) -> tuple[PlantConfig, TwinzoConfig]:
    """One ATI plant on 127.0.0.1:`port` posting to the sandbox; nested dicts are merged."""
    base: dict[str, Any] = {
        "name": "Old Plant",
        "format": "ati_sherpa",
        "broker": {"host": "127.0.0.1", "port": port, "reconnect_initial_s": 0.1},
        "device_map": logins(devices),
        "twinzo": {"sector_id": 2},
        "min_post_interval_ms": 0,
    }
    for key, value in plant.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    config = ConsoleConfig.model_validate(
        {
            "twinzo": {
                **SANDBOX_CREDENTIALS,
                "flush_interval_ms": 20,
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.5,
                **(twinzo or {}),
            },
            "plants": [base],
        }
    )
    return config.plants[0], config.twinzo


class BridgeRig:
    """A bridge running in the background; its operator lines are kept as they arrive."""

    def __init__(self, bridge: Bridge, bus: Bus, log: OpsLog) -> None:
        self.bridge = bridge
        self.log = log
        self._lines = bus.subscribe()
        self.lines: list[str] = []
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def state(self) -> PlantState:
        """The bridge's live state."""
        return self.bridge.state

    def read(self) -> list[str]:
        """Lines that arrived since the last call (all of them stay in `lines`)."""
        new = [e.render() for e in self._lines.drain() if isinstance(e, LogLine)]
        self.lines.extend(new)
        return new


StartBridge = Callable[..., Awaitable[BridgeRig]]


async def until(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> float:
    """Poll `check` every 10 ms; the seconds it took. AssertionError after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def at_least(read: Callable[[], int], target: int) -> Callable[[], bool]:
    """A check for `until`: `read()` has reached `target` (binds `target` now)."""
    return lambda: read() >= target


@pytest.fixture
async def start_bridge(sandbox: TwinzoSandbox) -> AsyncIterator[StartBridge]:
    """Start bridges against the sandbox (one shared httpx client); stopped and drained after."""
    started: list[BridgeRig] = []
    clients: list[httpx.AsyncClient] = []

    async def _start(
        plant: PlantConfig, twinzo: TwinzoConfig, *, repeat_window_s: float = 10.0
    ) -> BridgeRig:
        http = httpx.AsyncClient(timeout=twinzo.timeout_s)
        clients.append(http)
        bus = Bus()
        log = OpsLog(bus, repeat_window_s)
        client = TwinzoClient(http, twinzo, base_url=sandbox.url)
        bridge = Bridge(plant, twinzo, client, PlantState(plant.name), log, log_every_n=1)
        rig = BridgeRig(bridge, bus, log)
        rig.task = asyncio.create_task(bridge.run(rig.stop), name=f"rig:{plant.name}")
        started.append(rig)
        return rig

    try:
        yield _start
    finally:
        for rig in started:
            rig.stop.set()
            if rig.task is not None:
                await asyncio.wait_for(rig.task, 15)
        for http in clients:
            await http.aclose()


def ati(vendor_id: str, x: float, y: float) -> bytes:
    """An ATI Sherpa status with a pose (no vendor timestamp: receive time is used)."""
    return orjson.dumps(
        {"sherpa_name": vendor_id, "mode": "fleet", "pose": [x, y, 0.0], "battery_status": 80.0}
    )


async def publish(port: int, messages: list[tuple[str, bytes]], **kwargs: Any) -> None:
    """Publish `messages` (QoS 1) with a short-lived client."""
    async with aiomqtt.Client("127.0.0.1", port, **kwargs) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
