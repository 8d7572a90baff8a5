"""Observation write rate into the PostgreSQL here: batched COPY vs one INSERT per row.

Both paths run in one invocation against a throwaway database (created through
`postgres` on 127.0.0.1:5432 with trust auth, dropped afterwards; `--admin-dsn`
points elsewhere). The batched path is the store's own: a COPY into a staging
table plus one `INSERT … ON CONFLICT DO NOTHING` per batch. The baseline is the
old simulator's way: one INSERT per row, each its own transaction. Targets:
≥ 50,000 rows/s batched and ≥ 20× the baseline; a miss prints MISSED (this is a
benchmark, not a test). Run:
`.venv/bin/python bench/bench_stores.py [--rows 200000] [--single-rows 5000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import secrets
import time
import uuid
from pathlib import Path

import asyncpg

from dtp_console.stores.config import PostgresConfig
from dtp_console.stores.postgres import PostgresStore
from dtp_console.stores.records import Observation

TARGET_RATE = 50_000.0
TARGET_RATIO = 20.0
RESULTS = Path(__file__).resolve().parent / "results" / "bench_stores.json"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _observations(n: int, signals: int, offset_s: float) -> list[Observation]:
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"bench:signal:{i}") for i in range(signals)]
    return [
        Observation(
            ids[i % signals],
            T0 + dt.timedelta(seconds=offset_s + i / 1000),
            20.0 + (i % 100) / 10,
            source="bench",
        )
        for i in range(n)
    ]


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _run(args: argparse.Namespace) -> dict[str, float | int | str]:
    name = f"dtp_bench_stores_{secrets.token_hex(4)}"
    await _admin(args.admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = args.admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    store = PostgresStore(PostgresConfig.model_validate({"dsn": dsn, "batch_size": args.batch}))
    try:
        await store.open()
        batched_rows = _observations(args.rows, args.signals, 0)
        single_rows = _observations(args.single_rows, args.signals, 10_000_000)
        await store.write_observations(_observations(1_000, args.signals, -100_000))  # warm-up
        started = time.perf_counter()
        for i in range(0, len(batched_rows), args.batch):
            await store.write_observations(batched_rows[i : i + args.batch])
        batched_s = time.perf_counter() - started
        started = time.perf_counter()
        await store.write_observations_single(single_rows)
        single_s = time.perf_counter() - started
        count = await store.read_observations(limit=1)
        assert count, "nothing was written"
    finally:
        await store.close()
        await _admin(args.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    batched_rate = args.rows / batched_s
    single_rate = args.single_rows / single_s
    return {
        "rows_batched": args.rows,
        "batch_size": args.batch,
        "batched_s": round(batched_s, 3),
        "batched_rows_per_s": round(batched_rate),
        "rows_single": args.single_rows,
        "single_s": round(single_s, 3),
        "single_rows_per_s": round(single_rate),
        "ratio": round(batched_rate / single_rate, 1),
        "timescale": str(store.timescale),
        "python": platform.python_version(),
    }


def main() -> None:
    """Run both paths once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows for the batched path")
    parser.add_argument("--single-rows", type=int, default=5_000, help="rows, one INSERT each")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per batch")
    parser.add_argument("--signals", type=int, default=50, help="distinct signals")
    parser.add_argument(
        "--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin DSN"
    )
    parser.add_argument("--save", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    figures = asyncio.run(_run(args))
    rate, ratio = float(figures["batched_rows_per_s"]), float(figures["ratio"])
    print(
        f"batched COPY : {figures['rows_batched']:>7,} rows in {figures['batched_s']:>6.2f} s "
        f"= {rate:>9,.0f} rows/s  (target ≥ {TARGET_RATE:,.0f}: "
        f"{'met' if rate >= TARGET_RATE else 'MISSED'})"
    )
    print(
        f"one INSERT   : {figures['rows_single']:>7,} rows in {figures['single_s']:>6.2f} s "
        f"= {float(figures['single_rows_per_s']):>9,.0f} rows/s"
    )
    print(
        f"ratio        : {ratio:.1f}×  (target ≥ {TARGET_RATIO:.0f}×: "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'})"
    )
    if args.save:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
