"""SSE fan-out: N stream subscribers while the registry takes R changes/s, in one run.

The console side (registry on SQLite, bus, `ApiServer`) runs in this process;
the subscribers run in a child process (`--subscriber`) so their parsing does
not compete with the event loop under test. Phases, in one invocation:

1. baseline: R registry writes/s with no subscriber attached;
2. fan-out: the same with N subscribers on `/api/portal/stream`;
3. baseline again (drift and a neighbour's load show as a difference 1 ↔ 3).

Per phase it prints the registry's own write latency (each `register` call,
awaited, paced at R/s) p50/p99, the process CPU, and for phase 2 the delivery
latency (event timestamp → parsed by the subscriber, one machine, one clock)
p50/p99/max, frames delivered and clients cut off. Never gates anything.

    .venv/bin/python bench/bench_sse.py                      # 50 subscribers, 200/s, 10 s
    .venv/bin/python bench/bench_sse.py --seconds 5 --subscribers 10
    .venv/bin/python bench/bench_sse.py --restricted   # per-token dependency flags

`--restricted`: every written twin depends on a twin of another tenant (and on
one that does not exist), and the subscribers' token sees only the writer's
tenant, so each event costs the hub a dependency-owner lookup and one more
encoding (shared by all subscribers of that grant set): the worst case of the
per-token `unknown_dependencies` view.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import percentile

from dtp_console.api.config import ApiConfig, ApiToken
from dtp_console.api.server import ApiServer
from dtp_console.api.tokens import hash_token
from dtp_console.events import Bus
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.model import Dependencies, TwinSpec
from dtp_console.registry.runner import open_registry
from dtp_console.registry.service import RegistryService

RESULTS = Path(__file__).parent / "results" / "bench_sse.json"
TOKEN = "test-bench-token"
RESTRICTED_TOKEN = "test-bench-token-plant-a"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _writes(
    service: RegistryService, rate: float, seconds: float, tag: str, deps: Dependencies
) -> dict[str, Any]:
    """Register `rate` changes/s for `seconds`; each call's latency (ms)."""
    latencies: list[float] = []
    count = int(rate * seconds)
    interval = 1.0 / rate
    cpu0, start = _cpu(), time.monotonic()
    late = 0
    for n in range(count):
        due = start + n * interval
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            late += 1
        spec = TwinSpec(
            id=f"dt:Bench_{n % 100:03d}",
            name=f"bench {n % 100}",
            tenant="plant-a",
            metadata={"domain": ["bench"], "phase": tag, "n": n},
            dependencies=deps,
        )
        t0 = time.perf_counter()
        await service.register(spec)
        latencies.append((time.perf_counter() - t0) * 1000)
    wall = time.monotonic() - start
    return {
        "writes": count,
        "achieved_per_s": round(count / wall, 1),
        "late_writes": late,
        "write_p50_ms": round(percentile(latencies, 50), 3),
        "write_p99_ms": round(percentile(latencies, 99), 3),
        "write_max_ms": round(max(latencies), 3),
        "cpu_pct": round(100 * (_cpu() - cpu0) / wall, 1),
    }


async def _console(args: argparse.Namespace) -> dict[str, Any]:
    bus = Bus()
    api = ApiConfig(
        listen="127.0.0.1:0",
        tokens=[
            ApiToken(label="bench", hash=hash_token(TOKEN), role="viewer", tenants=["*"]),
            ApiToken(
                label="bench-a",
                hash=hash_token(RESTRICTED_TOKEN),
                role="viewer",
                tenants=["plant-a"],
            ),
        ],
        max_stream_clients=max(200, args.subscribers),
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = RegistryConfig(twins_root=Path(tmp) / "twins", sqlite_path=Path(tmp) / "r.db")
        async with open_registry(config, bus) as service:
            server = ApiServer(api, bus=bus, registry=lambda: service)
            async with server:
                deps = Dependencies()
                if args.restricted:
                    shared = TwinSpec(id="dt:Shared", name="shared", tenant="shared")
                    await service.register(shared)
                    deps = Dependencies(static=["dt:Shared", "dt:Nope"])
                await _writes(service, args.rate, 1.0, "warmup", deps)
                results: dict[str, Any] = {
                    "restricted": args.restricted,
                    "baseline": await _writes(service, args.rate, args.seconds, "a", deps),
                }
                expected = int(args.rate * args.seconds)
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--subscriber",
                    server.url,
                    "--subscribers",
                    str(args.subscribers),
                    "--expect",
                    str(expected),
                    *(["--restricted"] if args.restricted else []),
                    stdout=subprocess.PIPE,
                )
                assert child.stdout is not None
                ready = await asyncio.wait_for(child.stdout.readline(), 60)
                assert ready.strip() == b"READY", ready
                async with asyncio.timeout(30):
                    while server.hub.stats.clients < args.subscribers:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                before = server.hub.stats.delivered
                fanout = await _writes(service, args.rate, args.seconds, "b", deps)
                out, _ = await asyncio.wait_for(child.communicate(), 120)
                fanout.update(json.loads(out.decode().strip().splitlines()[-1]))
                fanout["frames_written"] = server.hub.stats.delivered - before
                fanout["cut_off"] = server.hub.stats.cut_off
                results["fanout"] = fanout
                fanout["owner_lookups"] = server.hub.stats.owner_lookups
                results["baseline_again"] = await _writes(
                    service, args.rate, args.seconds, "c", deps
                )
    base = (results["baseline"]["write_p99_ms"] + results["baseline_again"]["write_p99_ms"]) / 2
    results["write_p99_ratio_fanout_vs_baseline"] = round(
        results["fanout"]["write_p99_ms"] / base, 2
    )
    return results


# -- the subscriber child --------------------------------------------------------------


async def _subscribe(
    session: aiohttp.ClientSession,
    url: str,
    expect: int,
    latencies: list[float],
    deadline: float,
    token: str,
    hidden: list[int],
) -> int:
    got = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(url + "/api/portal/stream", headers=headers) as resp:
        buffer = b""
        while got < expect and time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    chunk = await resp.content.readany()
            except TimeoutError:
                break
            if not chunk:
                break
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            now = time.time()
            for frame in frames:
                for line in frame.split(b"\n"):
                    if line.startswith(b"data: "):
                        doc = orjson.loads(line[6:])
                        latencies.append((now - doc["ts"]) * 1000)
                        got += 1
                        if "dt:Shared" in doc["twin"]["unknown_dependencies"]:
                            hidden.append(1)
    return got


async def _subscriber(args: argparse.Namespace) -> None:
    latencies: list[float] = []
    hidden: list[int] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.monotonic() + 300
        token = RESTRICTED_TOKEN if args.restricted else TOKEN
        tasks = [
            asyncio.create_task(
                _subscribe(
                    session, args.subscriber, args.expect, latencies, deadline, token, hidden
                )
            )
            for _ in range(args.subscribers)
        ]
        print("READY", flush=True)
        counts = await asyncio.gather(*tasks, return_exceptions=True)
    received = [c for c in counts if isinstance(c, int)]
    print(
        json.dumps(
            {
                "subscribers": args.subscribers,
                "events_received": sum(received),
                "events_expected": args.expect * args.subscribers,
                "events_with_shared_hidden": len(hidden),
                "delivery_p50_ms": round(percentile(latencies, 50), 2),
                "delivery_p99_ms": round(percentile(latencies, 99), 2),
                "delivery_max_ms": round(max(latencies, default=float("nan")), 2),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="registry changes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument(
        "--restricted",
        action="store_true",
        help="twins depend on another tenant's twin; subscribers see one tenant",
    )
    parser.add_argument("--subscriber", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        asyncio.run(_subscriber(args))
        return
    results = asyncio.run(_console(args))
    print(json.dumps(results, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
