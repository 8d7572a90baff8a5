"""Attach state stream: what 0, 1 and 5 attached consoles cost a 100-robot plant, in one run.

The console (engine, embedded broker, simulator with 100 HiTech robots at 1 Hz
each, the sandbox as twinzo, the API) runs in this process; the stream clients
run in a child process (`--clients`) that only counts bytes, so their reading
does not compete with the event loop under test. Phases, in one invocation:

1. baseline: no client attached;
2. one client on `/api/console/state?devices=Bench Plant` (every device);
3. five such clients;
4. baseline again (drift and a neighbour's load show as a difference 1 ↔ 4).

Per phase it prints the plant's intake (messages received and forwarded per
second), the process CPU, and for the streaming phases the bytes and frames per
second per client (counted by the server before and after gzip, and by the
child after aiohttp inflated them) and the feed's encode reuse and gzip time.
Ratios are against the mean of the two baselines. Target: at most 50 kB/s per
client on the socket. Never gates anything.

    .venv/bin/python bench/bench_attach.py                    # 100 robots, 10 s phases
    .venv/bin/python bench/bench_attach.py --seconds 5 --robots 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import hitech_bench_plant

from dtp_console.api.config import ApiToken
from dtp_console.api.tokens import hash_token
from dtp_console.config.model import ConsoleConfig
from dtp_console.runtime import Engine

RESULTS = Path(__file__).parent / "results" / "bench_attach.json"
TOKEN = "test-bench-token"
PLANT = "Bench Plant"
TARGET_BYTES_PER_S = 50_000


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _config(robots: int, rate: float) -> ConsoleConfig:
    token = ApiToken(label="bench", hash=hash_token(TOKEN), role="viewer", tenants=["*"])
    return ConsoleConfig.model_validate(
        {
            "twinzo": {"client": "demo", "password": "change-me", "api_key": "change-me"},
            "sandbox": {"enabled": True},
            "simulator": {"enabled": True},
            "registry": {"enabled": False},
            "stores": {"enabled": False},
            "platform": {"enabled": False},
            "logging": {"stats_interval_s": 3600},
            "api": {"listen": "127.0.0.1:0", "tokens": [token.model_dump()]},
            "plants": [
                hitech_bench_plant(
                    PLANT, robots, rate, {"host": "embedded", "topics": ["hitech/amr/+/position"]}
                ),
            ],
        }
    )


async def _phase(engine: Engine, seconds: float, clients: int) -> dict[str, Any]:
    plant = engine.state.plants[PLANT]
    feed = engine.api.console.feed
    received0, forwarded0 = plant.counters.received, plant.counters.outcomes["forwarded"]
    bytes0, frames0 = feed.stats.bytes, feed.stats.frames
    encoded0, reused0 = feed.stats.devices_encoded, feed.stats.devices_reused
    busy0 = feed.stats.tick_seconds
    wire0, gzip0 = feed.stats.wire_bytes, feed.stats.compress_seconds
    feed.stats.tick_max_s = 0.0
    cpu0, start = _cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - start
    out: dict[str, Any] = {
        "clients": clients,
        "intake_per_s": round((plant.counters.received - received0) / wall, 1),
        "forwarded_per_s": round((plant.counters.outcomes["forwarded"] - forwarded0) / wall, 1),
        "cpu_pct": round(100 * (_cpu() - cpu0) / wall, 1),
    }
    if clients:
        out["server_bytes_per_s_per_client"] = round((feed.stats.bytes - bytes0) / wall / clients)
        out["frames_per_s_per_client"] = round((feed.stats.frames - frames0) / wall / clients, 1)
        encoded = feed.stats.devices_encoded - encoded0
        reused = feed.stats.devices_reused - reused0
        out["device_encodes_reused_pct"] = round(100 * reused / max(1, encoded + reused), 1)
        out["feed_tick_cpu_pct"] = round(100 * (feed.stats.tick_seconds - busy0) / wall, 2)
        out["server_wire_bytes_per_s_per_client"] = round(
            (feed.stats.wire_bytes - wire0) / wall / clients
        )
        out["gzip_cpu_pct"] = round(100 * (feed.stats.compress_seconds - gzip0) / wall, 2)
        out["feed_tick_max_ms"] = round(1000 * feed.stats.tick_max_s, 2)
        out["cut_off"] = feed.stats.cut_off
    return out


async def _with_clients(
    engine: Engine, count: int, seconds: float, settle: float
) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--clients",
        str(count),
        "--url",
        engine.api.url,
        "--seconds",
        str(seconds),
        "--skip",
        str(settle),
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    ready = await asyncio.wait_for(child.stdout.readline(), 60)
    assert ready.strip() == b"READY", ready
    feed = engine.api.console.feed
    async with asyncio.timeout(30):
        while feed.stats.clients < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await asyncio.sleep(settle)  # past the snapshots
    result = await _phase(engine, seconds, count)
    out, _ = await asyncio.wait_for(child.communicate(), 120)
    result.update(json.loads(out.decode().strip().splitlines()[-1]))
    return result


async def _console(args: argparse.Namespace) -> dict[str, Any]:
    engine = Engine(_config(args.robots, args.rate))
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        await asyncio.wait_for(engine.ready.wait(), 30)
        plant = engine.state.plants[PLANT]
        async with asyncio.timeout(60):
            while len(plant.devices) < args.robots:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await asyncio.sleep(args.settle)  # every login authenticated
        results: dict[str, Any] = {
            "robots": args.robots,
            "rate_hz_per_robot": args.rate,
            "baseline": await _phase(engine, args.seconds, 0),
            "one_client": await _with_clients(engine, 1, args.seconds, args.settle),
            "five_clients": await _with_clients(engine, 5, args.seconds, args.settle),
            "baseline_again": await _phase(engine, args.seconds, 0),
        }
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    base = results["baseline"], results["baseline_again"]
    cpu = (base[0]["cpu_pct"] + base[1]["cpu_pct"]) / 2
    intake = (base[0]["intake_per_s"] + base[1]["intake_per_s"]) / 2
    for key in ("one_client", "five_clients"):
        phase = results[key]
        phase["intake_ratio_vs_baseline"] = round(phase["intake_per_s"] / intake, 3)
        phase["cpu_ratio_vs_baseline"] = round(phase["cpu_pct"] / cpu, 2) if cpu else None
        wire = phase["server_wire_bytes_per_s_per_client"]  # what the socket carries (gzip)
        phase["within_50kB_per_s"] = wire <= TARGET_BYTES_PER_S
    return results


# -- the client child ------------------------------------------------------------------


async def _read(
    session: aiohttp.ClientSession, url: str, seconds: float, skip: float
) -> dict[str, int]:
    """Bytes, deltas and log lines read in `seconds` after the first `skip` (the snapshot)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    got = {"bytes": 0, "deltas": 0, "logs": 0}
    counting = time.monotonic() + skip
    deadline = counting + seconds
    async with session.get(
        url + "/api/console/state", params={"devices": PLANT}, headers=headers
    ) as resp:
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    chunk = await resp.content.readany()
            except TimeoutError:
                break
            if not chunk:
                break
            if time.monotonic() < counting:
                continue
            got["bytes"] += len(chunk)
            got["deltas"] += chunk.count(b"event: delta\n")
            got["logs"] += chunk.count(b"event: log\n")
    return got


async def _clients(args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [
            asyncio.create_task(_read(session, args.url, args.seconds, args.skip))
            for _ in range(args.clients)
        ]
        print("READY", flush=True)
        counts = await asyncio.gather(*tasks)
    print(
        json.dumps(
            {
                "child_bytes_per_s_per_client": round(
                    sum(c["bytes"] for c in counts) / args.seconds / args.clients
                ),
                "child_deltas_per_s_per_client": round(
                    sum(c["deltas"] for c in counts) / args.seconds / args.clients, 1
                ),
                "child_log_lines_per_s_per_client": round(
                    sum(c["logs"] for c in counts) / args.seconds / args.clients, 1
                ),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.0, help="reports per second per robot")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--settle", type=float, default=2.0, help="before each phase")
    parser.add_argument("--clients", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--skip", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        asyncio.run(_clients(args))
        return
    results = asyncio.run(_console(args))
    print(json.dumps(results, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
