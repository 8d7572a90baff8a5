"""sd_notify spoken to a real Unix datagram socket; the health that gates the watchdog."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig
from dtp_console.runtime import Engine
from dtp_console.sdnotify import MAX_STATUS_CHARS, SdNotifier, socket_address, watchdog_usec
from dtp_console.watchdog import WorkerLedger
from tests.support.notify_socket import NotifySocket


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == b"/run/systemd/notify"
    assert socket_address("@sd-notify-1") == b"\0sd-notify-1"
    assert socket_address(None) is None
    assert socket_address("") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None


def test_watchdog_usec_follows_sd_watchdog_enabled() -> None:
    pid = 4242
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}, pid) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, pid) == 30_000_000
    # Meant for another process, or nonsense: no watchdog.
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, pid) is None
    for bad in ("0", "-5", "1e6", "", "  ", "30s", "٣٠"):
        assert watchdog_usec({"WATCHDOG_USEC": bad}, pid) is None, bad
    assert watchdog_usec({}, pid) is None


def test_without_notify_socket_everything_is_a_no_op() -> None:
    sd = SdNotifier({"WATCHDOG_USEC": "1000000"})
    assert not sd.enabled
    assert sd.watchdog_s is None  # no socket: no watchdog either
    assert not sd.ready("x")
    assert not sd.watchdog()
    assert sd.sent == 0
    assert sd.errors == 0
    sd.close()


def test_an_unsupported_socket_form_is_flagged_not_used() -> None:
    sd = SdNotifier({"NOTIFY_SOCKET": "vsock:2:9"})
    assert not sd.enabled
    assert sd.unsupported


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
async def test_datagrams_arrive_as_key_value_lines(abstract: bool) -> None:
    async with NotifySocket(abstract=abstract) as server:
        sd = SdNotifier({"NOTIFY_SOCKET": server.env_value, "WATCHDOG_USEC": "2000000"})
        assert sd.enabled
        assert sd.watchdog_s == 2.0
        assert sd.ping_interval_s == 1.0
        assert sd.ready("running: 2 plants")
        assert sd.watchdog()
        assert sd.stopping("stopping")
        await server.wait_for("STOPPING")
        sd.close()
    fields = [d.fields for d in server.received]
    assert fields == [
        {"READY": "1", "STATUS": "running: 2 plants"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1", "STATUS": "stopping"},
    ]
    assert sd.sent == 3


async def test_a_status_cannot_forge_another_assignment() -> None:
    hostile = "plant\nREADY=1\r\x1b[31m\u202e" + "é" * 500
    async with NotifySocket(abstract=True) as server:
        sd = SdNotifier({"NOTIFY_SOCKET": server.env_value})
        assert sd.status(hostile)
        await server.wait_count(1)
        sd.close()
    assert len(server.received) == 1
    fields = server.received[0].fields
    assert set(fields) == {"STATUS"}  # the newline did not start a READY=1 line
    assert fields["STATUS"].startswith("plant READY=1")
    assert len(fields["STATUS"]) == MAX_STATUS_CHARS


async def test_a_send_that_fails_is_counted_not_raised(tmp_path: Any) -> None:
    sd = SdNotifier({"NOTIFY_SOCKET": os.fspath(tmp_path / "nobody-listens.sock")})
    assert not sd.watchdog()
    assert not sd.ready("x")
    assert sd.errors == 2
    assert "FileNotFoundError" in sd.last_error or "ConnectionRefused" in sd.last_error
    sd.close()


def test_ledger_dead_worker_and_crash_loop() -> None:
    now = [100.0]
    ledger = WorkerLedger(crash_limit=3, window_s=60, clock=lambda: now[0])
    ledger.running("bridge Old Plant")
    ledger.running("simulator")
    assert ledger.problems() == []
    ledger.ended("simulator")  # "nothing to simulate" is a normal end
    assert ledger.problems() == []
    for _ in range(2):
        ledger.crashed("stores")
        ledger.running("stores")
    assert ledger.problems() == []  # restarted by the supervisor, under the limit
    ledger.crashed("stores")
    assert ledger.problems() == ["stores crashed 3 times in 60s"]
    now[0] += 61  # the crashes age out of the window
    ledger.running("stores")
    assert ledger.problems() == []
    assert ledger.workers["stores"].restarts == 3
    ledger.ended("bridge Old Plant")
    assert ledger.problems() == ["bridge Old Plant ended while the console runs (not restarted)"]


def test_the_tasks_a_worker_restarts_itself_count_towards_a_crash_loop() -> None:
    # The bridge's source, poster and watch and the platform worker's source restart
    # inside their worker (a TaskGroup each), never through the engine's supervisor.
    from types import SimpleNamespace

    from dtp_console.state import PlantState
    from dtp_console.watchdog import _RestartWatch, engine_problems

    plant, platform = PlantState("Old Plant"), PlantState("platform")
    engine: Any = SimpleNamespace(
        workers=WorkerLedger(crash_limit=3, window_s=60),
        state=SimpleNamespace(plants={"Old Plant": plant}),
        platform=SimpleNamespace(state=platform),
    )
    tasks = _RestartWatch(engine.workers)
    assert engine_problems(engine, tasks) == []
    plant.watch_restarts = 3
    platform.source_restarts = 3
    assert engine_problems(engine, tasks) == [
        "watch of Old Plant crashed 3 times in 60s",
        "the platform source crashed 3 times in 60s",
    ]


_CONFIG = {
    "twinzo": {"client": "demo", "password": "change-me", "api_key": "change-me"},
    "sandbox": {"enabled": True},
    "simulator": {"enabled": False},
    "registry": {"enabled": False},
    "stores": {"enabled": False},
    "api": {"listen": "127.0.0.1:0"},  # never the fixed default port
    "plants": [
        {
            "name": "Old Plant",
            "format": "ati_sherpa",
            "broker": {"host": "embedded"},
            "device_map": {"ati_amr_001": "tugger-05-old"},
            "twinzo": {"sector_id": 2},
        }
    ],
}

WATCHDOG_USEC = 400_000  # pings every 0.2 s


async def _run_engine_until_unhealthy(
    monkeypatch: pytest.MonkeyPatch,
    bridge_run: Callable[[Bridge, asyncio.Event], Awaitable[None]],
    ledger: WorkerLedger | None = None,
) -> tuple[NotifySocket, Engine]:
    async with NotifySocket(abstract=True) as server:
        monkeypatch.setenv("NOTIFY_SOCKET", server.env_value)
        monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        monkeypatch.setattr(Bridge, "run", bridge_run)
        engine = Engine(ConsoleConfig.model_validate(_CONFIG))
        if ledger is not None:
            engine.workers = ledger
        lines = engine.bus.subscribe()
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run(stop))
        try:
            await server.wait_for("READY")
            unhealthy = await _wait_status(server, "unhealthy: ")
            held_at = unhealthy.at
            await asyncio.sleep(WATCHDOG_USEC / 1e6 * 3)  # several ping periods
            late = [t for t in server.times("WATCHDOG") if t > held_at + 0.05]
            assert late == [], "pings went on while a worker was unhealthy"
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
        await server.wait_for("STOPPING")
        text = " | ".join(e.render() for e in lines.drain() if hasattr(e, "render"))
        assert "systemd watchdog pings held back" in text, text
    return server, engine


async def _wait_status(server: NotifySocket, prefix: str) -> Any:
    for _ in range(1000):
        for datagram in server.received:
            if datagram.fields.get("STATUS", "").startswith(prefix):
                return datagram
        await asyncio.sleep(0.02)
    raise AssertionError(f"no STATUS={prefix}…; got {server.statuses()}")


async def test_pings_stop_when_a_bridge_ends_and_is_not_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def dies_quietly(_self: Bridge, _stop: asyncio.Event) -> None:
        await asyncio.sleep(1.0)  # healthy for a while, then the task just ends

    server, _ = await _run_engine_until_unhealthy(monkeypatch, dies_quietly)
    ready = server.times("READY")[0]
    pings = server.times("WATCHDOG")
    assert [t for t in pings if t > ready], "no ping while the bridge was alive"
    assert any(
        s == "unhealthy: bridge Old Plant ended while the console runs (not restarted)"
        for s in server.statuses()
    ), server.statuses()


async def test_pings_stop_while_a_bridge_crash_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    async def crashes(_self: Bridge, _stop: asyncio.Event) -> None:
        await asyncio.sleep(0.3)
        raise RuntimeError("test crash")

    ledger = WorkerLedger(crash_limit=2, window_s=60)
    server, engine = await _run_engine_until_unhealthy(monkeypatch, crashes, ledger)
    assert any(
        s.startswith("unhealthy: bridge Old Plant crashed 2 times") for s in server.statuses()
    )
    assert engine.workers.workers["bridge Old Plant"].restarts >= 2
