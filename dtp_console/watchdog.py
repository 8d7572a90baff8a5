"""The engine's side of `Type=notify`: READY, STATUS, STOPPING, and a health-gated watchdog.

Healthy means, from what the engine already knows:

- the event loop runs (the pings come from it: a stuck loop sends none);
- every supervised worker (bridges, stores, registry) is alive: one whose task
  ended while the console runs was not restarted and is dead (the simulator may
  end early: "nothing to simulate");
- no worker is crash-looping: fewer than `CRASH_LIMIT` crashes within
  `CRASH_WINDOW_S`, counting the supervisor's restarts of a worker and a
  bridge's own restarts of its MQTT source and poster tasks.

An outage outside the process (a broker or store down) is not ill health: the
bridges and spools ride it out, and a restart would not help. While unhealthy
the pings stop, systemd's `WatchdogSec=` expires and `Restart=on-failure`
starts a fresh process; the STATUS line and a WARN say why. Once stopping, the
pings go on unconditionally while the outboxes drain (`TimeoutStopSec=` bounds
that), so a long drain is not mistaken for a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from dtp_console.sdnotify import SdNotifier

if TYPE_CHECKING:
    from dtp_console.runtime import Engine

__all__ = ["CRASH_LIMIT", "CRASH_WINDOW_S", "ServiceNotifier", "WorkerLedger", "engine_problems"]

#: This many crashes of one worker within `CRASH_WINDOW_S` is a crash loop.
CRASH_LIMIT = 5
CRASH_WINDOW_S = 300.0
#: Workers that may finish on their own while the console runs.
_MAY_FINISH = frozenset({"simulator"})
#: STATUS refresh when systemd runs no watchdog.
_STATUS_INTERVAL_S = 5.0

WorkerStatus = Literal["running", "restarting", "ended"]


@dataclass(slots=True)
class WorkerRecord:
    """What the supervisor knows of one worker."""

    name: str
    status: WorkerStatus = "running"
    restarts: int = 0
    """Crashes the supervisor restarted it after, since start."""
    crash_times: deque[float] = field(default_factory=deque)
    """Monotonic times of its recent crashes (within the window)."""


class WorkerLedger:
    """The supervisor's record of each worker: running, restarting after a crash, or ended."""

    def __init__(
        self,
        *,
        crash_limit: int = CRASH_LIMIT,
        window_s: float = CRASH_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.crash_limit = crash_limit
        self.window_s = window_s
        self._clock = clock
        self.workers: dict[str, WorkerRecord] = {}

    def _get(self, name: str) -> WorkerRecord:
        return self.workers.setdefault(name, WorkerRecord(name))

    def running(self, name: str) -> None:
        """`name` (re)started."""
        self._get(name).status = "running"

    def crashed(self, name: str) -> None:
        """`name` raised; the supervisor restarts it after a delay."""
        record = self._get(name)
        record.status = "restarting"
        record.restarts += 1
        record.crash_times.append(self._clock())
        self._trim(record.crash_times)

    def ended(self, name: str) -> None:
        """`name` returned: the supervisor does not restart it."""
        self._get(name).status = "ended"

    def _trim(self, times: deque[float]) -> None:
        horizon = self._clock() - self.window_s
        while times and times[0] < horizon:
            times.popleft()
        while len(times) > self.crash_limit * 4:  # bounded whatever the crash rate
            times.popleft()

    def problems(self) -> list[str]:
        """Why the workers are not healthy (empty: healthy); for a running console."""
        found: list[str] = []
        for record in self.workers.values():
            self._trim(record.crash_times)
            if record.status == "ended" and record.name not in _MAY_FINISH:
                found.append(f"{record.name} ended while the console runs (not restarted)")
            elif len(record.crash_times) >= self.crash_limit:
                found.append(
                    f"{record.name} crashed {len(record.crash_times)} times in {self.window_s:g}s"
                )
        return found


class _RestartWatch:
    """Crash-loop detection from counters that only grow (a bridge's own task restarts)."""

    def __init__(self, like: WorkerLedger) -> None:
        self.ledger = WorkerLedger(crash_limit=like.crash_limit, window_s=like.window_s)
        self._last: dict[str, int] = {}

    def observe(self, counters: Mapping[str, int]) -> list[str]:
        """Record the crashes since the last call; the crash loops among them."""
        for name, value in counters.items():
            previous = self._last.get(name, 0)
            self._last[name] = value
            for _ in range(min(max(0, value - previous), self.ledger.crash_limit)):
                self.ledger.crashed(name)
            self.ledger.running(name)  # the bridge restarts these tasks itself
        return self.ledger.problems()


def engine_problems(engine: Engine, tasks: _RestartWatch | None = None) -> list[str]:
    """Why the engine is not healthy now (empty: healthy)."""
    found = engine.workers.problems()
    if tasks is not None:
        counters: dict[str, int] = {}
        for name, plant in engine.state.plants.items():
            counters[f"MQTT source of {name}"] = plant.source_restarts
            counters[f"poster of {name}"] = plant.poster_restarts
            counters[f"watch of {name}"] = plant.watch_restarts
        if engine.platform is not None:  # it restarts its source itself, as a bridge does
            counters["the platform source"] = engine.platform.state.source_restarts
        found.extend(tasks.observe(counters))
    return found


def _running_status(engine: Engine) -> str:
    plants = engine.state.plants.values()
    connected = sum(1 for p in plants if p.mqtt == "connected")
    forwarded = sum(p.counters.outcomes.get("forwarded", 0) for p in plants)
    return (
        f"running: {len(engine.state.plants)} plants, MQTT {connected}/"
        f"{len(engine.state.plants)} connected, {forwarded} forwarded"
    )


class ServiceNotifier:
    """Tells systemd how the engine is doing, for as long as the `async with` lasts."""

    def __init__(
        self, engine: Engine, stop: asyncio.Event, notifier: SdNotifier | None = None
    ) -> None:
        self._engine = engine
        self._stop = stop
        self.notifier = notifier or SdNotifier()
        self._task: asyncio.Task[None] | None = None
        self._restarts = _RestartWatch(engine.workers)
        self.healthy = True
        """False while the pings are held back."""
        self.pings = 0

    async def __aenter__(self) -> ServiceNotifier:
        if self.notifier.unsupported:
            self._engine.log.emit("WARN", "NOTIFY_SOCKET is set in a form not supported; ignored")
        if self.notifier.enabled:
            self._task = asyncio.create_task(self._run(), name="sd-notify")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.notifier.errors:
            self._engine.log.emit(
                "WARN",
                f"systemd notify: {self.notifier.errors} datagrams not sent "
                f"({self.notifier.last_error})",
            )
        self.notifier.close()

    async def _wait_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run(self) -> None:
        engine, sd = self._engine, self.notifier
        sd.status("starting")
        ready = asyncio.ensure_future(engine.ready.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            stopped.cancel()
        interval = sd.ping_interval_s
        if not self._stop.is_set():
            sd.ready(_running_status(engine))
            every = f"; watchdog ping every {interval:g}s" if interval else ""
            engine.log.emit("INFO", f"systemd notified: READY{every}")
            await self._while_running(interval)
        sd.stopping("stopping: draining outboxes")
        while interval is not None:
            # Draining is bounded by TimeoutStopSec=, not by the watchdog.
            self._ping()
            await asyncio.sleep(interval)

    async def _while_running(self, interval: float | None) -> None:
        loop = asyncio.get_running_loop()
        period = interval or _STATUS_INTERVAL_S
        due = loop.time()
        while not self._stop.is_set():
            late = loop.time() - due
            if interval is not None and late > interval:
                self._engine.log.emit(
                    "WARN", f"event loop was blocked ~{late:.1f}s (watchdog ping late)"
                )
            problems = engine_problems(self._engine, self._restarts)
            self._report(problems)
            if not problems and interval is not None:
                self._ping()
            due = max(due + period, loop.time())
            await self._wait_stop(due - loop.time())

    def _ping(self) -> None:
        if self.notifier.watchdog():
            self.pings += 1

    def _report(self, problems: list[str]) -> None:
        engine, sd = self._engine, self.notifier
        if problems:
            reason = "; ".join(problems)
            sd.status(f"unhealthy: {reason}")
            if self.healthy:
                held = " held back" if sd.ping_interval_s else " (no watchdog configured)"
                engine.log.emit("WARN", f"not healthy: {reason}; systemd watchdog pings{held}")
            self.healthy = False
            return
        if not self.healthy:
            engine.log.emit("INFO", "healthy again; systemd watchdog pings resumed")
        self.healthy = True
        sd.status(_running_status(engine))
