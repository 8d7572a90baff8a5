"""The console UI under load: event→screen latency and the UI's CPU share at ~5,000 msg/s.

The engine is in-process and network-free: seeded `AmrFleet`s publish at the
target rate, real `Bridge.handle()` takes every message, twinzo answers are
faked (devtools/seeded.py). Two phases of the same length:

1. engine alone (no App): the engine's own CPU;
2. engine + the console App headless (`App.run_test`, 200×60, a plant tab visible).

UI CPU = CPU of phase 2 − CPU of phase 1 (same process, same load). Latency is
from the moment a batch of messages was handled to the end of the first screen
refresh after the App's tick that read it (`call_after_refresh`).
Figures only: nothing here asserts on time.

Usage: `.venv/bin/python bench/bench_ui.py [--rate 5000] [--seconds 10] [--robots 100]`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.seeded import SeededEngine, write_config
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.display import UiClock

_TICK_S = 0.01


def _config(robots: int, rate_hz: float) -> str:
    plants = []
    for index, (name, fmt, prefix, topic) in enumerate(
        [
            ("Old Plant", "ati_sherpa", "ati_amr_", "ati_fm/sherpa/status"),
            ("HiTech Plant", "hitech", "hitech-amr-", "hitech/amr/+/position"),
        ]
    ):
        mapping = "\n".join(
            f"      {prefix}{n:03d}: tugger-{index}-{n:03d}" for n in range(1, robots + 1)
        )
        plants.append(
            f"""
  - name: {name}
    format: {fmt}
    broker: {{host: embedded, topics: ["{topic}"]}}
    device_map:
{mapping}
    twinzo: {{sector_id: {index + 1}}}
    bounds: {{x_min: 0, x_max: 200000, y_min: 0, y_max: 120000}}
    min_post_interval_ms: 0
    simulator: {{robots: {robots}, unmapped: 0, rate_hz: {rate_hz}, seed: {index + 5},
                station_stop_s: 2, speed_mm_s: 2000}}
"""
        )
    return (
        "twinzo: {client: demo, password: change-me, api_key: change-me}\n"
        "simulator: {enabled: false}\nregistry: {enabled: false}\nplants:" + "".join(plants)
    )


class LoadEngine(SeededEngine):
    """Steps the fleets in real time and records when each batch was handled."""

    def __init__(self, config_path: Path) -> None:
        super().__init__(config_path, steps=0)
        self.batches: list[tuple[float, int]] = []
        self.handled = 0
        self.busy_s = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient() as http:
            self.build(http)
            self.ready.set()
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(_TICK_S)
                started = time.perf_counter()
                now = time.monotonic()
                dt, last = now - last, now
                count = 0
                for name, fleet in self.fleets.items():
                    bridge = self.bridges[name]
                    # Sub-steps of one period: a late tick sends what fell due, not less.
                    period = 1.0 / fleet.config.rate_hz
                    left = dt
                    while left > 0:
                        step = min(left, period)
                        left -= step
                        for topic, payload in fleet.step(step):
                            bridge.state.counters.received += 1
                            bridge.handle(topic, payload, now=now)
                            count += 1
                    for location in bridge.outbox.take_all():
                        self.answer(bridge, location, now)
                self.republish_lines()
                self.handled += count
                if count:
                    self.batches.append((time.monotonic(), count))
                self.busy_s += time.perf_counter() - started


class MeasuredApp(DtpConsoleApp):
    """Records, per tick, how long after handling each batch reached the screen."""

    def __init__(self, engine: LoadEngine) -> None:
        super().__init__(engine, clock=UiClock(), refresh_s=0.1)
        self.load = engine
        self.latencies_ms: list[tuple[float, int]] = []
        self.tick_ms: list[float] = []
        self._seen = 0

    def refresh_now(self) -> None:
        started = time.perf_counter()
        batches = self.load.batches[self._seen :]
        self._seen = len(self.load.batches)
        super().refresh_now()
        self.tick_ms.append((time.perf_counter() - started) * 1000)

        def painted() -> None:
            now = time.monotonic()
            self.latencies_ms.extend(((now - t) * 1000, n) for t, n in batches)

        self.call_after_refresh(painted)


def _weighted_percentile(samples: list[tuple[float, int]], q: float) -> float:
    ordered = sorted(samples)
    total = sum(n for _, n in ordered)
    seen = 0
    for value, n in ordered:
        seen += n
        if seen >= q * total:
            return value
    return ordered[-1][0] if ordered else float("nan")


async def _engine_alone(path: Path, seconds: float) -> tuple[float, float, int]:
    engine = LoadEngine(path)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await engine.ready.wait()
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    stop.set()
    await task
    return cpu / wall, engine.busy_s / wall, engine.handled


async def _with_ui(path: Path, seconds: float) -> tuple[float, MeasuredApp, float]:
    engine = LoadEngine(path)
    app = MeasuredApp(engine)
    async with app.run_test(size=(200, 60)) as pilot:
        await engine.ready.wait()
        await pilot.pause(1.0)  # warm-up: rows and map tracks created
        app.latencies_ms.clear()
        app.tick_ms.clear()
        cpu0, wall0 = time.process_time(), time.monotonic()
        handled0 = engine.handled
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        rate = (engine.handled - handled0) / wall
        await pilot.press("q")
        await pilot.pause(0.2)
    return cpu / wall, app, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="messages per second")
    parser.add_argument("--robots", type=int, default=100, help="robots per plant (2 plants)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rate_hz = args.rate / (2 * args.robots)
    with tempfile.TemporaryDirectory() as folder:
        path = write_config(Path(folder), _config(args.robots, rate_hz))
        alone_cpu, alone_busy, handled = asyncio.run(_engine_alone(path, args.seconds))
        ui_cpu, app, achieved = asyncio.run(_with_ui(path, args.seconds))
    lat = app.latencies_ms
    print(f"load: 2 plants x {args.robots} robots at {rate_hz:g} Hz, target {args.rate:.0f} msg/s")
    print(
        f"engine alone: {handled / args.seconds:.0f} msg/s, CPU {alone_cpu:.0%} of a core"
        f" (load loop busy {alone_busy:.0%})"
    )
    print(f"engine + UI : {achieved:.0f} msg/s, CPU {ui_cpu:.0%} of a core")
    print(f"UI share    : {ui_cpu - alone_cpu:.0%} of a core (difference of the two phases)")
    print(
        f"UI ticks    : {len(app.tick_ms)}, refresh_now p50 {statistics.median(app.tick_ms):.1f} ms"
    )
    print(
        f"event→screen: p50 {_weighted_percentile(lat, 0.5):.0f} ms, "
        f"p99 {_weighted_percentile(lat, 0.99):.0f} ms, max {max(v for v, _ in lat):.0f} ms "
        f"({sum(n for _, n in lat)} messages)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
