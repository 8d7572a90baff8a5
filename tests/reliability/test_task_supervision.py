"""Every inner task of a worker lives in a TaskGroup: a crash is logged, counted and
restarted, and nothing is still pending once the worker's `run()` has returned.

Before: `Bridge.run` and the platform worker started bare tasks. A crash of the
bridge's watch task was logged but counted nowhere; a crash of the platform
worker's source raised out of `run()` uncounted (`restarts` stayed 0), and a
bridge cancelled instead of stopped left its poster task pending forever.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import httpx
import pytest

from dtp_console.bridge.watch import PlantWatch
from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.ingest import worker as ingest_worker
from dtp_console.ingest.worker import PlatformWorker
from dtp_console.mqtt import source as mqtt_source
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.reliability.conftest import TOPIC, StartBridge, ati, plant_config, publish, until
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration


def _dies_once(real: Callable[..., Awaitable[None]]) -> tuple[Callable[..., Any], list[int]]:
    calls: list[int] = []

    async def _flaky(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        await real(*args, **kwargs)

    return _flaky, calls


def _others() -> set[asyncio.Task[Any]]:
    """The tasks alive now, the test's own and the sandbox server's excepted (the sandbox
    keeps a keep-alive connection's handler until the shared HTTP client closes)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and not t.done()
        and not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")
    }


def _failed(lines: list[str], pattern: str) -> list[str]:
    return [line for line in lines if re.search(pattern, line)]


async def test_a_dead_watch_task_is_logged_counted_and_restarted(
    mosquitto: MosquittoServer, start_bridge: StartBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky, calls = _dies_once(PlantWatch.run)
    monkeypatch.setattr(PlantWatch, "run", flaky)
    plant, twinzo = plant_config(mosquitto.port)
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.watch_restarts == 1, what="the watch restart")
    await until(lambda: len(calls) == 2, what="the watch running again")
    failed = _failed(rig.read(), r"^FAIL watch of Old Plant died")
    assert len(failed) == 1 and "RuntimeError: simulated crash" in failed[0], rig.lines
    assert rig.state.as_dict()["watch_restarts"] == 1
    assert rig.state.source_restarts == rig.state.poster_restarts == 0
    await until(lambda: rig.state.connects == 1, what="connected")
    await publish(mosquitto.port, [(TOPIC, ati("ati_amr_001", 1.0, 2.0))])
    await until(lambda: rig.state.counters.outcomes["forwarded"] == 1, what="still forwarding")


async def test_no_task_of_a_stopped_bridge_is_left_pending(
    mosquitto: MosquittoServer, start_bridge: StartBridge
) -> None:
    before = _others()
    plant, twinzo = plant_config(mosquitto.port)
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.connects == 1, what="connected")
    await publish(mosquitto.port, [(TOPIC, ati("ati_amr_001", 1.0, 2.0))])
    await until(lambda: rig.state.counters.outcomes["forwarded"] == 1, what="forwarded")
    assert len(_others() - before) >= 4, "the rig, its source, poster and watch run"
    rig.stop.set()
    assert rig.task is not None
    await asyncio.wait_for(rig.task, 15)
    left = _others() - before
    assert not left, f"pending after run() returned: {sorted(t.get_name() for t in left)}"
    assert rig.state.mqtt == "stopped"


async def test_no_task_of_a_cancelled_bridge_is_left_pending(
    mosquitto: MosquittoServer, sandbox: TwinzoSandbox
) -> None:
    plant, twinzo = plant_config(mosquitto.port)
    before = _others()
    async with httpx.AsyncClient() as http:
        client = TwinzoClient(http, twinzo, base_url=sandbox.url)
        bridge = Bridge(plant, twinzo, client, PlantState(plant.name), OpsLog(Bus()))
        task = asyncio.create_task(bridge.run(asyncio.Event()))
        await until(lambda: bridge.state.connects == 1, what="connected")
        task.cancel()  # not stopped: cancelled (the engine's TaskGroup failing, say)
        await asyncio.wait({task}, timeout=15)
        assert task.cancelled()
    left = _others() - before
    assert not left, f"pending after run() was cancelled: {sorted(t.get_name() for t in left)}"


async def test_a_crash_that_escapes_the_restart_loop_ends_run(
    sandbox: TwinzoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the restart loop cannot hold (a bug in its own counter) reaches the engine,
    and the bridge's other tasks are cancelled with it."""
    monkeypatch.setattr(PlantState, "set_mqtt", _broken_set_mqtt)
    plant, twinzo = plant_config(1)
    before = _others()
    async with httpx.AsyncClient() as http:
        client = TwinzoClient(http, twinzo, base_url=sandbox.url)
        bridge = Bridge(plant, twinzo, client, PlantState(plant.name), OpsLog(Bus()))
        with pytest.raises(ExceptionGroup) as caught:
            await asyncio.wait_for(bridge.run(asyncio.Event()), 15)
    assert caught.group_contains(RuntimeError, match="counter bug")
    assert not (_others() - before), "the poster and the watch were cancelled with it"


def _broken_set_mqtt(_self: object, *_args: object) -> None:
    raise RuntimeError("counter bug")


async def test_a_dead_platform_source_is_logged_counted_and_restarted(
    mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky, calls = _dies_once(mqtt_source.run_source)
    monkeypatch.setattr(ingest_worker, "run_source", flaky)
    config = ConsoleConfig.model_validate(
        {"platform": {"broker": {"host": "127.0.0.1", "port": mosquitto.port}}}
    )
    bus = Bus()
    lines = bus.subscribe()
    platform = PlatformWorker(config.platform, OpsLog(bus))
    stop = asyncio.Event()
    before = _others()
    task = asyncio.create_task(platform.run(("127.0.0.1", mosquitto.port), stop))
    try:
        await until(lambda: platform.state.connects == 1, what="connected after the restart")
        assert len(calls) == 2
        assert platform.restarts == platform.state.source_restarts == 1
        assert platform.stats_dict()["restarts"] == 1
        said = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
        failed = _failed(said, r"^FAIL the platform source died")
        assert len(failed) == 1 and "RuntimeError: simulated crash" in failed[0], said
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("dtp/lift/Lift_001/vibration", b'{"value": 1.5}', qos=1)
        await until(lambda: platform.totals().received == 1, what="a message read")
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert not (_others() - before), "the source ended with run()"


async def test_a_frozen_broker_does_not_hold_the_stop_and_leaves_nothing_pending(
    mosquitto: MosquittoServer, start_bridge: StartBridge
) -> None:
    """A broker that stops answering (SIGSTOP) does not hold the stop up, and the source
    is not left behind. (paho's DISCONNECT needs no answer; a send buffer that cannot
    drain is what holds it, bounded by the client's time-out after the WARN at 5 s.)"""
    before = _others()
    plant, twinzo = plant_config(mosquitto.port)
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.connects == 1, what="connected")
    assert mosquitto.process is not None
    mosquitto.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        rig.stop.set()
        assert rig.task is not None
        await asyncio.wait_for(rig.task, 20)
        took = time.monotonic() - started
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
    assert took < 5, took
    left = _others() - before
    assert not left, f"pending after run() returned: {sorted(t.get_name() for t in left)}"
    assert rig.state.mqtt == "stopped"
