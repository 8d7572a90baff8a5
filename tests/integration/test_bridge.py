"""A bridge end to end: a private mosquitto (plain and TLS) → pipeline → the twinzo sandbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest

from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.state import EngineState, PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.sandbox import TwinzoSandbox
from dtp_console.ui.display import post_status_text
from dtp_console.ui.widgets.badges import badge_infos
from tests.integration.conftest import SANDBOX_CREDENTIALS
from tests.support.mosquitto import MosquittoServer, TlsFiles

pytestmark = pytest.mark.integration

REAL_AFFINE = {"a": 999.74, "b": 22.88, "c": 22.88, "d": -999.74, "tx": 95598.8, "ty": 167357.6}


def _config(port: int, **plant: Any) -> tuple[PlantConfig, TwinzoConfig]:
    base: dict[str, Any] = {
        "name": "Old Plant",
        "format": "ati_sherpa",
        "broker": {"host": "127.0.0.1", "port": port, "reconnect_initial_s": 0.1},
        "device_map": {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"},
        "twinzo": {"sector_id": 2},
        "affine": REAL_AFFINE,
        "min_post_interval_ms": 0,
    }
    for key, value in plant.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    config = ConsoleConfig.model_validate(
        {
            "twinzo": {**SANDBOX_CREDENTIALS, "flush_interval_ms": 20, "backoff_initial_s": 0.05},
            "plants": [base],
        }
    )
    return config.plants[0], config.twinzo


class Running:
    """A bridge running in the background with its bus readable."""

    def __init__(self, bridge: Bridge, bus: Bus) -> None:
        self.bridge = bridge
        self.lines = bus.subscribe()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def log_text(self) -> list[str]:
        return [e.render() for e in self.lines.drain() if isinstance(e, LogLine)]


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def start_bridge(
    sandbox: TwinzoSandbox,
) -> AsyncIterator[Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]]]:
    started: list[Running] = []
    async with httpx.AsyncClient(timeout=2.0) as http:

        async def _start(plant: PlantConfig, twinzo: TwinzoConfig) -> Running:
            bus = Bus()
            client = TwinzoClient(http, twinzo, base_url=sandbox.url)
            bridge = Bridge(
                plant, twinzo, client, PlantState(plant.name), OpsLog(bus, 10.0), log_every_n=1
            )
            running = Running(bridge, bus)
            running.task = asyncio.create_task(bridge.run(running.stop))
            started.append(running)
            return running

        yield _start
        for running in started:
            running.stop.set()
            if running.task is not None:
                await asyncio.wait_for(running.task, 10)


def _ati(vendor_id: str, x: float, y: float, mode: str = "fleet") -> bytes:
    return orjson.dumps(
        {"sherpa_name": vendor_id, "mode": mode, "pose": [x, y, 0.0], "battery_status": 80.0}
    )


async def _publish(port: int, messages: list[tuple[str, bytes]], **kwargs: Any) -> None:
    async with aiomqtt.Client("127.0.0.1", port, **kwargs) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def test_plain_broker_to_sandbox_with_every_outcome(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    plant, twinzo = _config(mosquitto.port)
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    topic = "ati_fm/sherpa/status"
    await _publish(
        mosquitto.port,
        [
            (topic, _ati("ati_amr_001", 10.0, 20.0)),
            (topic, _ati("ati_amr_002", 30.0, 40.0)),
            (topic, _ati("ati_amr_999", 1.0, 1.0)),  # unknown
            (topic, _ati("ati_amr_001", 0.0, 0.0, mode="disconnected")),
            (topic, b"{not json"),
            (topic, b'{"sherpa_name": "ati_amr_002", "mode": "fleet", "pose": ["NaN", 1, 0]}'),
        ],
    )
    await _until(lambda: state.counters.received == 6 and state.counters.pending == 0)
    outcomes = state.counters.outcomes
    assert outcomes["forwarded"] == 2
    assert outcomes["unknown_device"] == 1
    assert outcomes["rejected:not_in_fleet"] == 1
    assert outcomes["rejected:invalid_json"] == 1
    assert outcomes["rejected:non_finite"] == 1
    assert sum(outcomes.values()) == state.counters.received
    latest = sandbox.latest()
    assert set(latest) == {"tugger-05-old", "tugger-06-old"}
    first = latest["tugger-05-old"]
    assert first.sector_id == 2
    assert first.x == pytest.approx(999.74 * 10 + 22.88 * 20 + 95598.8, abs=0.1)
    assert first.y == pytest.approx(22.88 * 10 - 999.74 * 20 + 167357.6, abs=0.1)
    lines = running.log_text()
    assert any(
        line.startswith("OK tugger-05-old (ATI:ati_amr_001) -> Old Plant: (") for line in lines
    )
    assert "WARN Unknown ATI device: ati_amr_999 (add to device map)" in lines
    assert state.unknown["ati_amr_999"] == 1


async def test_slow_twinzo_never_stalls_intake(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    plant, twinzo = _config(mosquitto.port)
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    sandbox.set_faults(latency_ms=1500)
    topic = "ati_fm/sherpa/status"
    burst = [(topic, _ati(f"ati_amr_00{1 + i % 2}", float(i), 0.0)) for i in range(400)]
    started = time.monotonic()
    await _publish(mosquitto.port, burst)
    # All 400 are taken in while the first POSTs are still waiting on twinzo.
    await _until(lambda: state.counters.received == 400, timeout=1.2)
    assert time.monotonic() - started < 1.4
    assert running.bridge.outbox.in_flight >= 1
    sandbox.set_faults(latency_ms=0)
    await _until(lambda: state.counters.pending == 0, timeout=8)
    assert state.counters.outcomes["coalesced"] >= 390
    assert sum(state.counters.outcomes.values()) == 400
    # The newest position of each robot is what twinzo ends up with.
    assert sandbox.latest()["tugger-05-old"].x == pytest.approx(999.74 * 398 + 95598.8, abs=0.1)


async def test_5xx_is_retried_and_latest_position_lands(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    plant, twinzo = _config(mosquitto.port)
    twinzo = twinzo.model_copy(update={"max_attempts": 100})
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    topic = "ati_fm/sherpa/status"
    await _publish(mosquitto.port, [(topic, _ati("ati_amr_001", 1.0, 1.0))])
    await _until(lambda: state.counters.outcomes["forwarded"] == 1)
    sandbox.set_faults(error_rate=1.0)
    await _publish(mosquitto.port, [(topic, _ati("ati_amr_001", 5.0, 5.0))])
    await _until(lambda: state.devices["ati_amr_001"].posts_failed >= 2)
    assert sandbox.latest()["tugger-05-old"].x == pytest.approx(999.74 + 22.88 + 95598.8, abs=0.1)
    sandbox.set_faults(error_rate=0.0)
    await _until(lambda: state.counters.outcomes["forwarded"] == 2, timeout=5)
    assert sandbox.latest()["tugger-05-old"].x == pytest.approx(
        999.74 * 5 + 22.88 * 5 + 95598.8, abs=0.1
    )
    assert state.counters.pending == 0
    assert any("FAIL POST failed for tugger-05-old: 503" in t for t in running.log_text())


async def test_auth_failure_is_counted_and_logged(
    mosquitto: MosquittoServer,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    plant, twinzo = _config(mosquitto.port, twinzo={"password": "wrong-password"})
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    await _publish(mosquitto.port, [("ati_fm/sherpa/status", _ati("ati_amr_001", 5.0, 5.0))])
    await _until(lambda: state.counters.received == 1 and state.counters.pending == 0)
    assert state.counters.outcomes["failed:auth"] == 1
    assert "FAIL OAuth failed for tugger-05-old: 401" in running.log_text()


async def test_tls_with_ca_and_password(
    tls_mosquitto: MosquittoServer,
    tls_files: TlsFiles,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    broker = {"tls": True, "ca_file": str(tls_files.ca), "username": "bridge"}
    plant, twinzo = _config(tls_mosquitto.port, broker={**broker, "password": "test-pass"})
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    import ssl

    context = ssl.create_default_context(cafile=str(tls_files.ca))
    await _publish(
        tls_mosquitto.port,
        [("ati_fm/sherpa/status", _ati("ati_amr_002", 1.0, 2.0))],
        username="bridge",
        password="test-pass",
        tls_context=context,
    )
    await _until(lambda: "tugger-06-old" in sandbox.latest())


@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ({"password": "wrong-pass"}, "not authorized"),
        ({"password": "test-pass", "use_other_ca": True}, "TLS certificate verification failed"),
    ],
)
async def test_tls_failures_say_why_and_keep_retrying(
    tls_mosquitto: MosquittoServer,
    tls_files: TlsFiles,
    other_ca: TlsFiles,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
    broker: dict[str, Any],
    expected: str,
) -> None:
    ca: Path = other_ca.ca if broker.pop("use_other_ca", False) else tls_files.ca
    settings = {"tls": True, "ca_file": str(ca), "username": "bridge", **broker}
    plant, twinzo = _config(tls_mosquitto.port, broker=settings)
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "disconnected")
    assert expected in state.mqtt_detail
    await asyncio.sleep(0.5)
    lines = [line for line in running.log_text() if line.startswith("WARN MQTT Old Plant")]
    assert lines, "the failure is logged"
    assert expected in lines[0]
    assert "retrying in" in lines[0]
    assert state.connects == 0


async def test_reconnects_after_broker_restart_without_losing_intake(
    tmp_path: Path,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    server = MosquittoServer(tmp_path / "restart").start()
    try:
        plant, twinzo = _config(server.port)
        running = await start_bridge(plant, twinzo)
        state = running.bridge.state
        await _until(lambda: state.mqtt == "connected")
        server.kill()
        await _until(lambda: state.mqtt in ("disconnected", "connecting"))
        server.start()
        await _until(lambda: state.mqtt == "connected" and state.connects == 2, timeout=10)
        await _publish(server.port, [("ati_fm/sherpa/status", _ati("ati_amr_001", 7.0, 7.0))])
        await _until(lambda: "tugger-05-old" in sandbox.latest())
    finally:
        server.stop()


async def test_batch_mode(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    plant, twinzo = _config(
        mosquitto.port, twinzo={"sector_id": 2, "batch": True, "branch": sandbox.branch_guid}
    )
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    await _publish(
        mosquitto.port,
        [
            ("ati_fm/sherpa/status", _ati("ati_amr_001", 1.0, 1.0)),
            ("ati_fm/sherpa/status", _ati("ati_amr_002", 2.0, 2.0)),
        ],
    )
    await _until(lambda: state.counters.outcomes["forwarded"] == 2)
    assert all(loc.batch for loc in sandbox.locations())
    assert sandbox.stats.auth_calls.total() == 0  # batch mode needs no device tokens


async def test_live_device_map_change_applies_without_restart(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    plant, twinzo = _config(mosquitto.port)
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    await _publish(mosquitto.port, [("ati_fm/sherpa/status", _ati("ati_amr_777", 1.0, 1.0))])
    await _until(lambda: state.counters.outcomes["unknown_device"] == 1)
    running.bridge.apply_device_map({**plant.device_map, "ati_amr_777": "tugger-07-old"})
    assert "ati_amr_777" not in state.unknown
    await _publish(mosquitto.port, [("ati_fm/sherpa/status", _ati("ati_amr_777", 2.0, 1.0))])
    await _until(lambda: "tugger-07-old" in sandbox.latest())


async def test_posting_yields_to_an_intake_backlog_but_not_for_long(sandbox: TwinzoSandbox) -> None:
    plant, twinzo = _config(1)  # the bridge's MQTT side is not started here
    async with httpx.AsyncClient(timeout=2.0) as http:
        client = TwinzoClient(http, twinzo, base_url=sandbox.url)
        bridge = Bridge(plant, twinzo, client, PlantState(plant.name), OpsLog(Bus()))
        bridge.state.counters.received = 10_001  # 10,000 still waiting in the MQTT queue
        assert bridge.handle("ati_fm/sherpa/status", _ati("ati_amr_001", 1.0, 1.0)) == "queued"
        assert bridge.intake_backlog == 10_000
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(bridge.poster.run(stop))
        await asyncio.sleep(0.5)
        assert sandbox.latest() == {}  # intake first
        assert bridge.poster.deferred_flushes >= 10
        await _until(lambda: "tugger-05-old" in sandbox.latest(), timeout=3)
        waited = time.monotonic() - started
        assert 0.9 <= waited <= 2.0  # deferral is capped (MAX_DEFER_S = 1 s)
        stop.set()
        await task


async def test_a_200_with_refused_locations_is_a_failure_everywhere(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],
) -> None:
    """twinzo says `Success: false` inside an HTTP 200: the device, its row and the badge fail."""
    sandbox.set_faults(location_failure_rate=1.0)
    plant, twinzo = _config(mosquitto.port)
    running = await start_bridge(plant, twinzo)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    await _publish(mosquitto.port, [("ati_fm/sherpa/status", _ati("ati_amr_001", 5.0, 5.0))])
    await _until(lambda: state.counters.received == 1 and state.counters.pending == 0)
    device = state.devices["ati_amr_001"]
    assert device.last_post_status == "200"
    assert device.last_post_ok is False
    assert device.posts_failed == 1 and device.posts_ok == 0
    assert device.last_error == "Injected failure"
    assert post_status_text(device.last_post_status, device.last_post_ok) == "rej"
    engine = EngineState(plants={plant.name: state})
    config = ConsoleConfig.model_validate({"plants": []})
    badges = badge_infos(engine, {}, config, wall_now=0, mono_now=0)
    [badge] = [b for b in badges if b.key == "twinzo"]
    assert badge.level == "fail"
    assert badge.error == "Injected failure"
