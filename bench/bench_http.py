"""twinzo POST capacity per transport: httpcore (httpx's default) vs aiohttp's, one run.

An aiohttp server in the same process answers `POST /v3/localization` with a
one-location success body; each transport sends the same one-location body
`--posts` times with `--in-flight` requests outstanding, through the same
`TwinzoClient`-shaped call (`http.post` with twinzo's headers). Rounds alternate
transports (`--rounds`), so drift and a neighbour's load hit both alike. Prints
req/s and process CPU per request for each, and the ratio; never gates anything.

    .venv/bin/python bench/bench_http.py                 # 5,000 posts x 3 rounds
    .venv/bin/python bench/bench_http.py --posts 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.ports import free_port
from dtp_console.config.model import TwinzoConfig
from dtp_console.twinzo.http import twinzo_http_client

RESULTS = Path(__file__).parent / "results" / "bench_http.json"
_BODY = orjson.dumps(
    [
        {
            "Timestamp": 1_800_000_000_000,
            "SectorId": 1,
            "X": 1000.0,
            "Y": 2000.0,
            "Z": 0.0,
            "Interval": 1000,
            "Battery": 80,
            "IsMoving": True,
            "LocalizationAreas": [],
            "NoGoAreas": [],
        }
    ]
)
_ANSWER = orjson.dumps(
    {
        "Login": "tugger-03",
        "Locations": [{"Timestamp": 1, "Action": "Add", "Success": True, "ErrorMessage": None}],
        "ErrorMessage": None,
    }
)
_HEADERS = {
    "Content-Type": "application/json",
    "Client": "00000000-0000-0000-0000-000000000001",
    "Branch": "00000000-0000-0000-0000-000000000002",
    "Token": "placeholder-token",
    "Api-Key": "placeholder-api-key",
}


async def _localization(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_ANSWER, content_type="application/json")


def _client(transport: str, config: TwinzoConfig) -> httpx.AsyncClient:
    if transport == "aiohttp":
        return twinzo_http_client(config, user_agent="dtp-console/bench")
    limits = httpx.Limits(
        max_connections=config.max_concurrency,
        max_keepalive_connections=min(8, config.max_concurrency),
    )
    return httpx.AsyncClient(timeout=config.timeout_s, limits=limits)


async def _round(transport: str, url: str, posts: int, in_flight: int) -> dict[str, float]:
    config = TwinzoConfig(max_concurrency=in_flight)
    async with _client(transport, config) as http:
        await http.post(url, content=_BODY, headers=_HEADERS)  # connect outside the figures
        gate = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with gate:
                response = await http.post(url, content=_BODY, headers=_HEADERS)
                orjson.loads(response.content)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(posts)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"req_s": posts / wall, "cpu_us_per_req": cpu / posts * 1e6}


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    """Alternating rounds of both transports against one in-process server."""
    app = web.Application()
    app.router.add_post("/v3/localization", _localization)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/v3/localization"
    rounds: dict[str, list[dict[str, float]]] = {"httpx": [], "aiohttp": []}
    try:
        for index in range(opts.rounds):
            for transport in ("httpx", "aiohttp"):
                print(f"… {transport} round {index + 1}/{opts.rounds}", file=sys.stderr)
                rounds[transport].append(await _round(transport, url, opts.posts, opts.in_flight))
    finally:
        await runner.cleanup()
    summary: dict[str, Any] = {"posts": opts.posts, "in_flight": opts.in_flight, "rounds": rounds}
    for transport, runs in rounds.items():
        summary[transport] = {
            "req_s": round(statistics.median(r["req_s"] for r in runs)),
            "cpu_us_per_req": round(statistics.median(r["cpu_us_per_req"] for r in runs)),
        }
    summary["capacity_ratio"] = round(summary["aiohttp"]["req_s"] / summary["httpx"]["req_s"], 2)
    summary["cpu_ratio"] = round(
        summary["httpx"]["cpu_us_per_req"] / summary["aiohttp"]["cpu_us_per_req"], 2
    )
    return summary


def main() -> int:
    """Run, print, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=5_000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    opts = parser.parse_args()
    summary = asyncio.run(run(opts))
    print(f"{opts.posts} POSTs of one location, {opts.in_flight} in flight, server in-process")
    print(f"{'transport':<10} {'req/s':>8} {'CPU µs/req':>11}")
    for transport in ("httpx", "aiohttp"):
        figures = summary[transport]
        print(f"{transport:<10} {figures['req_s']:>8} {figures['cpu_us_per_req']:>11}")
    print(
        f"aiohttp/httpx capacity {summary['capacity_ratio']}x, "
        f"CPU per request httpx/aiohttp {summary['cpu_ratio']}x"
    )
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
