"""The `--no-ui` renderer: operator log lines and a periodic stats line on stdout.

It reads the bus and samples the engine state on its own clock, exactly like
the UI does; it never imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from dtp_console.events import Bus, Event, LogLine, StoreHealth, TwinDeleted, TwinUpdated
from dtp_console.oplog import OpLogFile
from dtp_console.state import HA_ROLE_LABELS, EngineState, PlantState
from dtp_console.textsafe import safe_text

__all__ = ["HeadlessRenderer", "stats_line", "stores_stats_line"]


def stats_line(plant: PlantState, rate: float | None = None) -> str:
    """`STATS <plant>: mqtt … | rx … fwd … coal … unk … rej … fail … pend …`.

    Worker restarts, ghost robots, implausible jumps and silence reconnects follow
    when there were any (a silent plant shows `(SILENT)`), and standing warnings (TLS
    verification off, a plaintext password) end every line while they hold.
    """
    c = plant.counters
    rx = f"rx {c.received}" + (f" ({rate:.1f}/s)" if rate is not None else "")
    parts = [
        rx,
        f"fwd {c.outcomes['forwarded']}",
        f"coal {c.outcomes['coalesced']}",
        f"unk {c.outcomes['unknown_device']}",
        f"rej {c.group('rejected:')}",
        f"fail {c.group('failed:')}",
        f"drop {c.group('dropped:')}",
        f"pend {c.pending}",
    ]
    if plant.sequence is not None:  # VDA 5050: what the robots' headerIds say went missing
        seq = plant.sequence
        parts.append(f"lost {seq.lost} robot-restarts {seq.restarts}")
    restarts = plant.source_restarts + plant.poster_restarts + plant.watch_restarts
    if restarts:
        parts.append(f"restarts {restarts}")
    ghosts = sum(1 for d in plant.devices.values() if d.ghost is not None)
    if ghosts:
        parts.append(f"ghosts {ghosts}")
    if plant.implausible_jumps:
        parts.append(f"jumps {plant.implausible_jumps}")
    if plant.silence_reconnects:
        parts.append(f"silence-reconnects {plant.silence_reconnects}")
    mqtt = f"{plant.mqtt} (SILENT)" if plant.silent else plant.mqtt
    line = f"STATS {plant.name}: mqtt {mqtt} | " + " ".join(parts)
    if plant.ha_role != "off":
        line += f" | ha {HA_ROLE_LABELS[plant.ha_role]}" + (
            f" (active: {plant.ha_holder})" if plant.ha_holder and plant.ha_role != "active" else ""
        )
    return line + "".join(f" | WARN {w}" for w in plant.warnings)


def stores_stats_line(stores: dict[str, Any]) -> str:
    """`STATS stores: drop … pend … [disk … replayed …] | <role>:<store> wr … pend … drop …
    retry …` (one line; `disk`: records in the disk spools now, `replayed`: found there at start).

    Kept apart from the per-plant `stats_line` on purpose: spool drops are the
    stores' loss, not a plant's.
    """
    spools = stores.get("spools", {})
    parts = [
        f"{key} wr {s['written']} pend {s['pending']} drop {s['dropped']} retry {s['retries']}"
        for key, s in spools.items()
    ]
    head = f"STATS stores: drop {stores.get('dropped', 0)} pend {stores.get('pending', 0)}"
    if stores.get("spool") == "disk":
        head += f" disk {stores.get('on_disk', 0)} replayed {stores.get('replayed', 0)}"
    return " | ".join([head, *parts])


class HeadlessRenderer:
    """Prints bus log lines as they come and a stats line every `interval_s`.

    Log lines (and the twin and store lines made from events) also go to
    `log_file`, through the same writer and in the same format as the UI's;
    stats lines are stdout's heartbeat and stay there.
    """

    def __init__(
        self,
        bus: Bus,
        state: EngineState,
        *,
        out: TextIO,
        interval_s: float = 5.0,
        log_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscription = bus.subscribe()
        self._state = state
        self._out = out
        self._interval = interval_s
        # Opened once: no open/close per line in the event loop.
        self._log = OpLogFile(log_file) if log_file is not None else None
        self._clock = clock
        self._last_rx: dict[str, tuple[float, int]] = {}
        self._store_ok: dict[str, bool] = {}

    def _write(self, line: str) -> None:
        # Log lines are escaped when made; stats lines are composed here, so the
        # one place that prints escapes them too (idempotent for safe text).
        self._out.write(safe_text(line, None) + "\n")
        self._out.flush()

    def _log_line(self, line: LogLine) -> None:
        self._write(line.render())
        if self._log is not None:
            self._log.write((line,))

    def _render(self, event: Event) -> None:
        # Twin ids and store errors are outside text: made into LogLines, escaped once.
        if isinstance(event, LogLine):
            self._log_line(event)
        elif isinstance(event, TwinUpdated):
            status = str(event.twin.status)
            if event.previous_status and event.previous_status != status:
                status = f"{event.previous_status} -> {status}"
            why = event.reason or ("registered" if event.created else "updated")
            text = f"twin {event.twin.id}: {status} ({why})"
            self._log_line(LogLine(level="INFO", text=text, ts=event.ts))
        elif isinstance(event, StoreHealth):
            # Failures and recoveries are the stores service's own log lines (one channel
            # per fact); this says once that a store answered its first check.
            first = event.name not in self._store_ok
            self._store_ok[event.name] = event.ok
            if first and event.ok:
                latency = f" {event.latency_ms:.1f} ms" if event.latency_ms is not None else ""
                text = f"store {event.name} ({event.role}): ok{latency}"
                self._log_line(LogLine(level="INFO", text=text, ts=event.ts))
        elif isinstance(event, TwinDeleted):
            verb = "deleted" if event.hard else "deprecated"
            self._log_line(LogLine(level="INFO", text=f"twin {event.twin.id} {verb}", ts=event.ts))

    def drain(self) -> None:
        """Print every queued log line."""
        for event in self._subscription.drain():
            self._render(event)
        if self._subscription.dropped:
            note = f"log reader fell behind: {self._subscription.dropped} lines dropped"
            self._log_line(LogLine(level="WARN", text=note))
            self._subscription.dropped = 0

    def print_stats(self) -> None:
        """One stats line per plant, with the receive rate since the previous one."""
        now = self._clock()
        for plant in self._state.plants.values():
            last = self._last_rx.get(plant.name)
            rate = None
            if last is not None and now > last[0]:
                rate = (plant.counters.received - last[1]) / (now - last[0])
            self._last_rx[plant.name] = (now, plant.counters.received)
            self._write(stats_line(plant, rate))
        if self._state.store_stats is not None:
            self._write(stores_stats_line(self._state.store_stats()))
        if self._state.platform_stats is not None:
            self._write(platform_stats_line(self._state.platform_stats()))

    async def run(self, stop: asyncio.Event) -> None:
        """Render until `stop`; then print what is left (the caller prints final stats)."""
        next_stats = self._clock() + self._interval
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                self._render(await asyncio.wait_for(self._subscription.get(), 0.2))
            self.drain()
            if self._clock() >= next_stats:
                self.print_stats()
                next_stats += self._interval
        self.drain()

    def close(self) -> None:
        """Print what is left and detach from the bus."""
        self.drain()
        self._subscription.close()
        if self._log is not None:
            self._log.close()


def platform_stats_line(stats: dict[str, Any]) -> str:
    """`STATS platform: mqtt connected | rx 90 mapped 85 rej 5 drop 0 pend 0 | dtp/lift 82 …`."""
    outcomes: dict[str, int] = stats["outcomes"]

    def group(prefix: str) -> int:
        return sum(n for k, n in outcomes.items() if k.startswith(prefix))

    families = " ".join(f"{name} {c['received']}" for name, c in stats["families"].items())
    return safe_text(
        f"STATS platform: mqtt {stats['mqtt']} | rx {stats['received']} "
        f"mapped {group('mapped:')} rej {group('rejected:')} drop {group('dropped:')} "
        f"fail {group('failed:')} pend {stats['pending']}" + (f" | {families}" if families else "")
    )
