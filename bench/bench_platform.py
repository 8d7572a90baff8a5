"""Platform intake: generator messages at 5,000 msg/s through the platform worker into PostgreSQL.

A child process publishes the twin generators' messages (lift vibration
readings of `--lifts` lifts, their alerts, energy readings, room temperatures;
each stamped with its send time in `ts`) to a private mosquitto at `--rate`
msg/s for `--seconds`. The console's platform worker (the bridges' MQTT
source, its bounded queue, the platform mapping) hands the records to the
store service's spools, which write them to a throwaway PostgreSQL database
(created through `postgres` on 127.0.0.1:5432, dropped afterwards). Reported:
the intake rate, observation rows/s written, and the message → row latency
(send time to the commit of the batch holding the row: p50, p99, max).

Baseline, same invocation: the same number of messages handed to the worker
in-process as fast as it takes them (no broker): the intake ceiling of the
mapping and the spools. Run:
`.venv/bin/python bench/bench_platform.py [--rate 5000] [--seconds 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from _common import BenchBroker, percentile

from dtp_console.config.model import PlatformConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.ingest.worker import PlatformWorker
from dtp_console.simulator.config import stable_signal_id
from dtp_console.stores.config import StoresConfig
from dtp_console.stores.records import Observation
from dtp_console.stores.service import StoreService

TARGET_RATE = 5_000.0
RESULTS = Path(__file__).resolve().parent / "results" / "bench_platform.json"


def _iso(epoch_s: float) -> str:
    # Microseconds (the generators send milliseconds): two readings of one lift in one
    # publisher burst must not share a stamp, or the store keeps one row of the two.
    stamp = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def messages(seq: int, lifts: int, now_s: float) -> list[tuple[str, bytes]]:
    """The generator messages of step `seq`: a reading of one lift, sometimes more."""
    lift = f"Lift_{seq % lifts:03d}"
    topic = f"dtp/lift/{lift}/vibration"
    rms = 2.0 + (seq % 37) / 10
    ts = _iso(now_s)
    out = [
        (
            topic,
            orjson.dumps(
                {"signal_id": str(stable_signal_id(topic)), "name": f"{lift} vibration RMS",
                 "unit": "mm/s", "value": rms, "ts": ts}
            ),
        )
    ]  # fmt: skip
    if seq % 50 == 0:
        alert = {"type": "vibration_alert", "lift_id": lift, "rms": rms, "threshold": 4.5,
                 "ts": ts, "source": "bench"}  # fmt: skip
        out.append(("dtp/lift/alerts", orjson.dumps(alert)))
    if seq % 100 == 1:
        energy = {"type": "energy", "asset_id": "HVAC_001", "kw": 3.1, "kwh": seq / 1000,
                  "cost": seq / 4000, "currency": "EUR", "ts": ts, "source": "bench"}  # fmt: skip
        out.append(("dtp/energy_hvac/events", orjson.dumps(energy)))
    if seq % 250 == 2:
        room = {"name": "room1 temperature", "unit": "°C", "value": 21.5, "ts": ts}
        out.append(("dtp/sensors/room1/temp", orjson.dumps(room)))
    return out


# -- the publisher child -------------------------------------------------------------------


def _publish(port: int, rate: float, seconds: float, lifts: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{port}")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    print("READY", flush=True)
    sent, seq = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        due = int((now - start) * rate)
        while sent < due:
            for topic, payload in messages(seq, lifts, time.time()):
                client.publish(topic, payload, qos=0)
                sent += 1
            seq += 1
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"sent": sent, "seconds": round(elapsed, 3)}), flush=True)


# -- the console side ----------------------------------------------------------------------


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll `condition` (counters, not events: the worker has none to wait on)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _admin(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


class _Latency:
    """Wraps a store's `write_observations`: send time → commit, per row."""

    def __init__(self, store: Any) -> None:
        self.samples: list[float] = []
        self.rows = 0
        self.first: float | None = None
        self.last = 0.0
        self._write = store.write_observations
        store.write_observations = self.write

    async def write(self, batch: list[Observation]) -> None:
        await self._write(batch)
        now = time.time()
        self.first = now if self.first is None else self.first
        self.last = now
        self.rows += len(batch)
        self.samples.extend(now - o.ts.timestamp() for o in batch)


async def _service(dsn: str, folder: Path) -> tuple[StoreService, _Latency]:
    stores = StoresConfig.model_validate(
        {"postgres": {"dsn": dsn}, "sqlite_path": str(folder / "p.sqlite3"),
         "blob_dir": str(folder / "blobs")}
    )  # fmt: skip
    log = OpsLog(Bus())
    service = StoreService(stores, Bus(), log)
    await service.__aenter__()
    assert service.plan is not None
    return service, _Latency(service.plan.observations[0])


async def _mqtt_path(args: argparse.Namespace, dsn: str, folder: Path) -> dict[str, Any]:
    with BenchBroker(folder / "mqtt") as broker:
        service, latency = await _service(dsn, folder)
        config = PlatformConfig.model_validate(
            {"enabled": True, "broker": {"host": "127.0.0.1", "port": broker.port,
                                         "queue_size": 100_000}}
        )  # fmt: skip
        worker = PlatformWorker(config, OpsLog(Bus()))
        worker.stores = service
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(service.run(stop)),
            asyncio.create_task(worker.run(("127.0.0.1", broker.port), stop)),
        ]
        await _until(lambda: worker.state.mqtt == "connected", 20)
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "publish", "--port", str(broker.port),
            "--rate", str(args.rate), "--seconds", str(args.seconds), "--lifts", str(args.lifts),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert child.stdout is not None
        await child.stdout.readline()  # READY
        marks: list[float] = []  # first message handled, last change of the handled count

        async def watch() -> None:
            seen = 0
            while True:
                handled = worker.state.counters.outcomes.total()
                if handled != seen:
                    now = time.perf_counter()
                    marks[:] = [marks[0] if marks else now, now]
                    seen = handled
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        await child.wait()
        report = json.loads((await child.stdout.read()).decode().strip().splitlines()[-1])
        sent = int(report["sent"])
        await _until(lambda: worker.state.counters.outcomes.total() >= sent, 60)
        await asyncio.sleep(0.02)
        watcher.cancel()
        intake_s = max(1e-9, marks[1] - marks[0])
        await _until(lambda: not any(s.pending for s in service.stats()), 120)
        stop.set()
        await asyncio.gather(*tasks)
        await service.__aexit__(None, None, None)
    rows = await _admin(dsn, "SELECT count(*) FROM observation")
    totals = worker.totals()
    return {
        "sent": sent,
        "publish_s": report["seconds"],
        "received": worker.state.counters.received,
        "outcomes": dict(totals.outcomes),
        "exact": all(c.received == c.outcomes.total() for c in worker.families.values()),
        "intake_msg_per_s": round(worker.state.counters.received / intake_s),
        "rows": int(rows),
        "rows_committed": latency.rows,
        "rows_per_s": round(latency.rows / max(1e-9, latency.last - (latency.first or 0)))
        if latency.rows
        else 0,
        "latency_p50_ms": round(percentile(latency.samples, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(latency.samples, 99) * 1000, 1),
        "latency_max_ms": round(max(latency.samples) * 1000, 1),
    }


async def _direct_path(args: argparse.Namespace, dsn: str, folder: Path, n: int) -> dict[str, Any]:
    await _admin(dsn, "TRUNCATE observation, signal, event_log")
    service, latency = await _service(dsn, folder)
    worker = PlatformWorker(PlatformConfig.model_validate({"enabled": True}), OpsLog(Bus()))
    worker.stores = service
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    started = time.perf_counter()
    handled, seq = 0, 0
    while handled < n:
        for topic, payload in messages(seq, args.lifts, time.time()):
            worker.handle(topic, payload)
            handled += 1
        seq += 1
        if seq % 1000 == 0:
            await asyncio.sleep(0)  # the spools' flush tasks run in between, as in the console
    intake_s = time.perf_counter() - started
    await _until(lambda: not any(s.pending for s in service.stats()), 120)
    total_s = time.perf_counter() - started
    stop.set()
    await runner
    await service.__aexit__(None, None, None)
    return {
        "handled": handled,
        "intake_msg_per_s": round(handled / intake_s),
        "rows": latency.rows,
        "rows_per_s": round(latency.rows / total_s),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"dtp_bench_platform_{secrets.token_hex(4)}"
    await _admin(args.admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = args.admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            mqtt = await _mqtt_path(args, dsn, folder)
            direct = await _direct_path(args, dsn, folder, mqtt["sent"])
    finally:
        await _admin(args.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "lifts": args.lifts,
        "mqtt": mqtt,
        "direct": direct,
        "python": platform.python_version(),
    }


def main() -> None:
    """Run the MQTT path and the in-process baseline once; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    pub = sub.add_parser("publish")
    pub.add_argument("--port", type=int, required=True)
    pub.add_argument("--rate", type=float, required=True)
    pub.add_argument("--seconds", type=float, required=True)
    pub.add_argument("--lifts", type=int, default=50)
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to publish")
    parser.add_argument("--lifts", type=int, default=50, help="lifts (vibration signals)")
    parser.add_argument(
        "--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin DSN"
    )
    parser.add_argument("--save", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    if args.command == "publish":
        _publish(args.port, args.rate, args.seconds, args.lifts)
        return
    figures = asyncio.run(_run(args))
    mqtt, direct = figures["mqtt"], figures["direct"]
    offered = mqtt["sent"] / mqtt["publish_s"]
    print(
        f"offered      : {mqtt['sent']:,} messages in {mqtt['publish_s']:.1f} s "
        f"= {offered:,.0f} msg/s (target {args.rate:,.0f})"
    )
    print(
        f"MQTT intake  : {mqtt['intake_msg_per_s']:>8,} msg/s, received {mqtt['received']:,}, "
        f"received == Σ outcomes per family: {mqtt['exact']}"
    )
    print(f"outcomes     : {mqtt['outcomes']}")
    print(
        f"rows written : {mqtt['rows']:,} observations, {mqtt['rows_per_s']:,} rows/s; "
        f"message → row p50 {mqtt['latency_p50_ms']} ms, p99 {mqtt['latency_p99_ms']} ms, "
        f"max {mqtt['latency_max_ms']} ms"
    )
    print(
        f"baseline     : in-process handle() {direct['intake_msg_per_s']:,} msg/s, "
        f"{direct['rows_per_s']:,} rows/s end to end"
    )
    print(
        f"ratio        : MQTT intake / offered {mqtt['intake_msg_per_s'] / offered:.2f}, "
        f"baseline ceiling / offered {direct['intake_msg_per_s'] / offered:.1f}×"
    )
    if args.save:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
