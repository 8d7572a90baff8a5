"""`/metrics`: what a scrape costs against the stats JSON of the same state, and the hot path.

A synthetic engine state (plants × mapped devices, each with a login, POST
latencies observed) is rendered with `render_metrics()` and, as the
baseline, serialised as the `--stats-json` document (`as_dict()` + orjson).
The hot-path figure is `Histogram.observe()` against a plain `+= 1`.
Figures only; nothing here asserts on time. Run:
`.venv/bin/python bench/bench_metrics.py [--plants 4] [--devices 250] [--repeat 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import time
import timeit
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtp_console.config.model import ConsoleConfig
from dtp_console.metrics import render_metrics
from dtp_console.runtime import Engine
from dtp_console.state import DeviceState, Histogram, PlantState


def build(plants: int, devices: int) -> Engine:
    """An engine (not started) whose state looks like a busy console's."""
    engine = Engine(ConsoleConfig.model_validate({"registry": {"enabled": False}}))
    rng = random.Random(7)
    state = engine.state
    histogram = state.post_histogram("/v3/localization")
    for p in range(plants):
        plant = state.plants[f"Plant {p}"] = PlantState(f"Plant {p}")
        plant.set_mqtt("connected", "127.0.0.1:1883")
        plant.connects = 1
        for d in range(devices):
            login = f"tugger-{p:02d}-{d:04d}"
            device = plant.devices[f"amr-{d:04d}"] = DeviceState(f"amr-{d:04d}", login)
            device.messages = rng.randrange(10_000)
            device.posts_ok = device.messages // 2
            plant.counters.received += device.messages
            plant.counters.count("forwarded", device.posts_ok)
            plant.counters.count("coalesced", device.messages - device.posts_ok)
            auth = state.auth_for(login)
            auth.status, auth.authentications = "valid", 1
        for reason in ("invalid_json", "duplicate", "out_of_order", "no_position"):
            plant.counters.count(f"rejected:{reason}", 3)
            plant.counters.received += 3
    for _ in range(100_000):
        histogram.observe(rng.expovariate(1 / 0.03))
    return engine


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:.2f} ms, max {max(samples) * 1e3:.2f} ms"


async def _lag(stop: asyncio.Event, gaps: list[float]) -> None:
    """The longest the loop went without running this 1 ms ticker."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def measure(engine: Engine, repeat: int) -> None:
    scrape: list[float] = []
    body = b""
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_lag(stop, gaps))
    await asyncio.sleep(0.05)
    idle = max(gaps)
    gaps.clear()
    for _ in range(repeat):
        started = time.perf_counter()
        body = await render_metrics(engine)
        scrape.append(time.perf_counter() - started)
    stop.set()
    await ticker
    print(
        f"longest loop stall while scraping: {max(gaps) * 1e3:.1f} ms (idle: {idle * 1e3:.1f} ms)"
    )
    baseline: list[float] = []
    stats = b""
    for _ in range(repeat):
        started = time.perf_counter()
        stats = orjson.dumps(engine.state.as_dict())
        baseline.append(time.perf_counter() - started)
    print(f"scrape (render_metrics): {_ms(scrape)}, {len(body) / 1024:.0f} KiB")
    print(f"baseline (stats JSON):   {_ms(baseline)}, {len(stats) / 1024:.0f} KiB")
    print(
        f"ratio scrape / stats JSON: {statistics.median(scrape) / statistics.median(baseline):.1f}x"
    )


def hot_path() -> None:
    histogram = Histogram()
    counter = [0]

    def _count() -> None:
        counter[0] += 1

    n = 1_000_000
    observe = min(timeit.repeat(lambda: histogram.observe(0.042), number=n, repeat=3)) / n
    plain = min(timeit.repeat(_count, number=n, repeat=3)) / n
    print(
        f"Histogram.observe: {observe * 1e9:.0f} ns; baseline += 1 in a call: {plain * 1e9:.0f} ns"
    )
    print(f"ratio observe / baseline: {observe / plain:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plants", type=int, default=4)
    parser.add_argument("--devices", type=int, default=250, help="mapped devices per plant")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(f"python {platform.python_version()}; {args.plants} plants x {args.devices} devices")
    asyncio.run(measure(build(args.plants, args.devices), args.repeat))
    hot_path()


if __name__ == "__main__":
    main()
