"""Spooled write throughput into PostgreSQL: the disk spool vs the in-memory one, and replay.

One invocation, one throwaway database (created through `postgres` on
127.0.0.1:5432 with trust auth, dropped afterwards; `--admin-dsn` points
elsewhere). Each spool takes `--rows` observations the way the service feeds it
(`submit_many` of `--chunk` records per loop tick) and writes them with the
store's own batched COPY; the figure is rows until the last one is acknowledged,
per second. The baseline is the in-memory spool in the same run. Then the
replay: `--rows` records are spooled to disk with the store down, the spool is
stopped (records kept on disk), and a new disk spool on the same file replays
them into PostgreSQL (open + scan + read + write). Targets: the disk spool
≥ 50% of the in-memory one and ≥ 30,000 rows/s; a miss prints MISSED (a
benchmark, not a test). Run: `.venv/bin/python bench/bench_spool.py [--rows 200000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# The observation generator and the admin helper of the stores bench (same rows).
from bench_stores import _admin, _observations

from dtp_console.events import Bus, OpsLog
from dtp_console.stores.config import PostgresConfig
from dtp_console.stores.disk_spool import DiskSpool
from dtp_console.stores.postgres import PostgresStore
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import Observation
from dtp_console.stores.spool import Spool

TARGET_RATIO = 0.5
TARGET_RATE = 30_000.0
RESULTS = Path(__file__).resolve().parent / "results" / "bench_spool.json"


AnySpool = Spool[Observation] | DiskSpool[Observation]


async def _through(spool: AnySpool, rows: list[Observation], chunk: int) -> float:
    """Seconds from the first submit until the last row is written."""
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop, drain_timeout_s=30))
    await asyncio.sleep(0)
    started = time.perf_counter()
    for i in range(0, len(rows), chunk):
        spool.submit_many(rows[i : i + chunk])
        await asyncio.sleep(0)
    while spool.pending:  # noqa: ASYNC110 - polling is the measurement's clock
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    assert spool.written == len(rows), spool.stats()
    assert spool.dropped == 0, spool.stats()
    return elapsed


def _disk(
    path: Path, write: Callable[[list[Observation]], Awaitable[None]], args: argparse.Namespace
) -> DiskSpool[Observation]:
    return DiskSpool(
        "observations:postgres",
        write,
        OpsLog(Bus()),
        path,
        max_records=10_000_000,
        max_bytes=1 << 34,
        batch_size=args.batch,
        flush_interval_s=0.05,
        retry_initial_s=0.05,
        retry_max_s=0.1,
    )


def _bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"dtp_bench_spool_{secrets.token_hex(4)}"
    await _admin(args.admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = args.admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    store = PostgresStore(PostgresConfig.model_validate({"dsn": dsn, "batch_size": args.batch}))
    folder = Path(tempfile.mkdtemp(prefix="dtp-bench-spool-"))
    figures: dict[str, Any] = {"rows": args.rows, "batch_size": args.batch, "chunk": args.chunk}
    try:
        await store.open()
        await store.write_observations(_observations(1_000, args.signals, -100_000))  # warm-up
        memory: AnySpool = Spool(
            "observations:postgres",
            store.write_observations,
            OpsLog(Bus()),
            max_records=10_000_000,
            batch_size=args.batch,
            flush_interval_s=0.05,
        )
        disk = _disk(folder / "through.sqlite3", store.write_observations, args)
        await disk.open()
        # Alternate to spread this VM's CPU steal over both; the best of `--repeat` each.
        runs: dict[str, list[float]] = {"memory": [], "disk": []}
        for r in range(args.repeat):
            for kind in ("memory", "disk"):
                if kind == "disk" and r:
                    disk = _disk(folder / f"through-{r}.sqlite3", store.write_observations, args)
                    await disk.open()
                spool = memory if kind == "memory" else disk
                if kind == "memory" and r:
                    spool = memory = Spool(
                        "observations:postgres",
                        store.write_observations,
                        OpsLog(Bus()),
                        max_records=10_000_000,
                        batch_size=args.batch,
                        flush_interval_s=0.05,
                    )
                offset = (r * 2 + (kind == "disk")) * 1_000_000
                rows = _observations(args.rows, args.signals, offset)
                runs[kind].append(await _through(spool, rows, args.chunk))
        mem_s, disk_s = min(runs["memory"]), min(runs["disk"])
        figures |= {
            "memory_s": round(mem_s, 3),
            "memory_rows_per_s": round(args.rows / mem_s),
            "disk_s": round(disk_s, 3),
            "disk_rows_per_s": round(args.rows / disk_s),
            "disk_vs_memory": round(mem_s / disk_s, 2),
        }

        # Replay: spool with the store down, stop, replay into PostgreSQL from a new spool.
        async def down(_batch: list[Observation]) -> None:
            raise StoreError("postgres: down for the benchmark")

        path = folder / "replay.sqlite3"
        writer = _disk(path, down, args)
        await writer.open()
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop, drain_timeout_s=0.1))
        rows = _observations(args.rows, args.signals, 50_000_000)
        started = time.perf_counter()
        for i in range(0, len(rows), args.chunk):
            writer.submit_many(rows[i : i + args.chunk])
            await asyncio.sleep(0)
        while writer.on_disk < args.rows:  # noqa: ASYNC110 - polling is the clock
            await asyncio.sleep(0.001)
        spool_s = time.perf_counter() - started
        stop.set()
        await task
        file_bytes = _bytes(folder, "replay.sqlite3*")
        started = time.perf_counter()
        replay = _disk(path, store.write_observations, args)
        await replay.open()
        opened_s = time.perf_counter() - started
        stop = asyncio.Event()
        task = asyncio.create_task(replay.run(stop, drain_timeout_s=30))
        while replay.pending:  # noqa: ASYNC110 - polling is the clock
            await asyncio.sleep(0.001)
        replay_s = time.perf_counter() - started
        stop.set()
        await task
        assert replay.replayed == args.rows, replay.stats()
        assert replay.written == args.rows, replay.stats()
        figures |= {
            "spool_to_disk_rows_per_s": round(args.rows / spool_s),
            "spool_file_bytes": file_bytes,
            "replay_open_s": round(opened_s, 3),
            "replay_s": round(replay_s, 3),
            "replay_rows_per_s": round(args.rows / replay_s),
            "python": platform.python_version(),
        }
    finally:
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)
        await _admin(args.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return figures


def main() -> None:
    """Run both spools and the replay once; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="observations per run")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per store write")
    parser.add_argument("--chunk", type=int, default=500, help="rows submitted per loop tick")
    parser.add_argument("--signals", type=int, default=50, help="distinct signals")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each spool (best kept)")
    parser.add_argument(
        "--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin DSN"
    )
    parser.add_argument("--save", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    f = asyncio.run(_run(args))
    ratio, rate = float(f["disk_vs_memory"]), float(f["disk_rows_per_s"])
    print(f"in-memory spool → PostgreSQL : {f['memory_rows_per_s']:>9,} rows/s ({f['memory_s']} s)")
    print(
        f"disk spool → PostgreSQL      : {f['disk_rows_per_s']:>9,} rows/s ({f['disk_s']} s)  "
        f"(target ≥ {TARGET_RATE:,.0f}: {'met' if rate >= TARGET_RATE else 'MISSED'})"
    )
    print(
        f"disk / memory                : {ratio:.2f}  "
        f"(target ≥ {TARGET_RATIO:.2f}: {'met' if ratio >= TARGET_RATIO else 'MISSED'})"
    )
    print(
        f"spool to disk (store down)   : {f['spool_to_disk_rows_per_s']:>9,} rows/s, "
        f"{f['spool_file_bytes']:,} bytes on disk for {f['rows']:,} rows"
    )
    print(
        f"replay after restart         : {f['replay_rows_per_s']:>9,} rows/s "
        f"(open + scan {f['replay_open_s']} s, total {f['replay_s']} s)"
    )
    if args.save:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(f, indent=2) + "\n")


if __name__ == "__main__":
    main()
