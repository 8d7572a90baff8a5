"""Nothing lost across `kill -9`: real console processes, a real broker, real stores.

The console (`dtp-console run --no-ui`) watches a private mosquitto as its
platform broker; the test publishes 50,000 room-temperature readings and 1,000
lift alerts while the store cannot take them (PostgreSQL stopped; SQLite with
a flush interval longer than the test), waits until every record is in the
disk spool, `kill -9`s the console, starts it again (and PostgreSQL): exactly
those rows arrive, none twice, and the counters say where each record went.
Also: a read-only or full spool folder refuses the start (exit 2, the field named).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import orjson
import pytest

from devtools.pgcluster import PgCluster
from tests.support.mosquitto import MosquittoServer
from tests.support.victoria import VICTORIA_METRICS, VictoriaMetricsServer, export_selector

pytestmark = pytest.mark.integration

OBSERVATIONS = 50_000
EVENTS = 1_000
ROOMS = 10
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

CONFIG = """
twinzo: {{client: demo, password: change-me, api_key: change-me}}
sandbox: {{enabled: false}}
registry: {{enabled: false}}
simulator:
  enabled: true
  broker: {{host: 127.0.0.1, port: {port}}}
  generators: {{enabled: false}}
stores:
  enabled: true
  sqlite_path: {tmp}/db/platform.sqlite3
  blob_dir: {tmp}/blobs
  spool_dir: {tmp}/spool
  spool_max: 200000
  health_interval_s: 0.5
  probe_timeout_s: 2
  retry_initial_s: 0.2
  retry_max_s: 1
  flush_interval_ms: {flush_ms}
  drain_timeout_s: 1
{extra}
logging: {{stats_interval_s: 1}}
plants: []
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "STORES_"))}


def _write_config(
    tmp: Path, port: int, flush_ms: int, extra: str = "", spool_max: int = 200_000
) -> Path:
    path = tmp / "console.yaml"
    text = CONFIG.format(port=port, tmp=tmp, flush_ms=flush_ms, extra=extra)
    path.write_text(text.replace("spool_max: 200000", f"spool_max: {spool_max}"))
    return path


def _start(config: Path, stats: Path | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "dtp_console", "-c", str(config), "run", "--no-ui"]
    if stats is not None:
        args += ["--stats-json", str(stats)]
    log = (config.parent / f"{config.stem}.log").open("ab")
    try:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_env())
    finally:
        log.close()


def _spooled(spool_dir: Path) -> dict[str, int]:
    """Rows per spool file now (read-only, beside the running console)."""
    out: dict[str, int] = {}
    for path in spool_dir.glob("*/*.sqlite3"):
        try:
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                out[f"{path.stem}:{path.parent.name}"] = conn.execute(
                    "SELECT coalesce(sum(n - skip), 0) FROM spool"
                ).fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error:
            out[f"{path.stem}:{path.parent.name}"] = -1
    return out


async def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = cond()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _feed(port: int, t0: dt.datetime = T0) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for i in range(OBSERVATIONS):
            room = i % ROOMS
            body = {"value": float(i), "ts": (t0 + dt.timedelta(seconds=i)).isoformat()}
            await client.publish(f"dtp/sensors/room{room}/temp", orjson.dumps(body), qos=0)
        for n in range(EVENTS):
            body = {"source": "lift-test", "n": n, "ts": T0.isoformat()}
            await client.publish("dtp/lift/alerts", orjson.dumps(body), qos=0)


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


async def _crash_and_replay(
    tmp: Path, port: int, extra: str, *, store_up: Any, counts: Any, t0: dt.datetime = T0
) -> dict[str, Any]:
    """Feed a console whose store cannot write, kill -9 it, restart it, let the store in."""
    first = _start(_write_config(tmp, port, 100, extra))
    try:
        await _wait(lambda: (tmp / "spool").is_dir() and first.poll() is None, 30, "first start")
        await asyncio.sleep(2)  # the platform watcher subscribes
        await _feed(port, t0)
        want = OBSERVATIONS + ROOMS  # signals are spooled with the observations
        await _wait(
            lambda: (
                sum(v for k, v in _spooled(tmp / "spool").items() if "observations" in k) >= want
                and sum(v for k, v in _spooled(tmp / "spool").items() if "events" in k) >= EVENTS
            ),
            120,
            "every record in the disk spool",
        )
    finally:
        _kill9(first)
    on_disk = _spooled(tmp / "spool")
    await store_up()
    stats = tmp / "stats.json"
    second = _start(_write_config(tmp, port, 100, extra), stats)  # the same config again
    try:
        await _wait(counts, 120, "every spooled row in the store")
        await _wait(
            lambda: all(v == 0 for v in _spooled(tmp / "spool").values()), 30, "spool empty"
        )
    finally:
        assert _stop(second) == 0
    result: dict[str, Any] = json.loads(stats.read_text())["stores"]
    result["on_disk_before"] = on_disk
    return result


def _explained(stores: dict[str, Any], on_disk: dict[str, int]) -> None:
    """Every record found on disk at start was written; nothing dropped, nothing pending."""
    for key, spool in stores["spools"].items():
        assert spool["kind"] == "disk"
        assert spool["submitted"] == spool["written"] + spool["dropped"] + spool["pending"]
        assert spool["dropped"] == 0 and spool["pending"] == 0 and spool["torn"] == 0
        assert spool["replayed"] == on_disk.get(key, 0), key


@pytest.mark.timeout(300)
async def test_postgres_outage_kill9_restart_loses_nothing(tmp_path: Path) -> None:
    reason = PgCluster.unavailable()
    if reason:
        pytest.skip(reason)
    with PgCluster() as pg, MosquittoServer(tmp_path / "mqtt") as mqtt:
        pg.stop()
        extra = f'  postgres: {{dsn: "{pg.dsn}", connect_timeout_s: 1}}'

        async def up() -> None:
            await asyncio.to_thread(pg.start)

        async def counts() -> bool:
            try:
                conn = await asyncpg.connect(pg.dsn, timeout=2)
            except (OSError, asyncpg.PostgresError):
                return False
            try:
                obs = await conn.fetchval("SELECT count(*) FROM observation")
                events = await conn.fetchval(
                    "SELECT count(*) FROM event_log WHERE source = 'lift-test'"
                )
            except asyncpg.UndefinedTableError:
                return False
            finally:
                await conn.close()
            return bool(obs >= OBSERVATIONS and events >= EVENTS)

        stores = await _crash_and_replay(tmp_path, mqtt.port, extra, store_up=up, counts=counts)
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM observation") == OBSERVATIONS
            values = await conn.fetch("SELECT value_double FROM observation ORDER BY 1")
            assert [r[0] for r in values] == [float(i) for i in range(OBSERVATIONS)]
            # (The console's own FAIL lines while the store was down are events too.)
            rows = await conn.fetch(
                "SELECT event_id, body->>'n' AS n FROM event_log WHERE source = 'lift-test'"
            )
            assert len(rows) == EVENTS  # none twice
            assert len({r["event_id"] for r in rows}) == EVENTS
            assert sorted(int(r["n"]) for r in rows) == list(range(EVENTS))
            assert await conn.fetchval("SELECT count(*) FROM signal") == ROOMS
        finally:
            await conn.close()
    _explained(stores, stores["on_disk_before"])
    assert stores["spools"]["observations:postgres"]["replayed"] == OBSERVATIONS + ROOMS
    # The alerts, plus the console's own FAIL lines ("store not reachable") as events.
    assert stores["spools"]["events:postgres"]["replayed"] >= EVENTS


@pytest.mark.timeout(300)
async def test_sqlite_default_kill9_restart_loses_nothing(tmp_path: Path) -> None:
    # The outage: a plain file where the SQLite file's folder should be (open fails).
    (tmp_path / "db").write_text("not a folder")
    with MosquittoServer(tmp_path / "mqtt") as mqtt:
        db = tmp_path / "db" / "platform.sqlite3"

        async def up() -> None:
            (tmp_path / "db").unlink()

        def counts() -> bool:
            if not db.is_file():
                return False
            conn = sqlite3.connect(db, timeout=5)
            try:
                obs = conn.execute("SELECT count(*) FROM observation").fetchone()[0]
                events = conn.execute(
                    "SELECT count(*) FROM event_log WHERE source = 'lift-test'"
                ).fetchone()[0]
            except sqlite3.Error:
                return False
            finally:
                conn.close()
            return bool(obs >= OBSERVATIONS and events >= EVENTS)

        stores = await _crash_and_replay(tmp_path, mqtt.port, "", store_up=up, counts=counts)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM observation").fetchone()[0] == OBSERVATIONS
        rows = conn.execute(
            "SELECT event_id, json_extract(body, '$.n') FROM event_log WHERE source = 'lift-test'"
        ).fetchall()
        assert len(rows) == EVENTS and len({r[0] for r in rows}) == EVENTS
        assert sorted(r[1] for r in rows) == list(range(EVENTS))
    finally:
        conn.close()
    _explained(stores, stores["on_disk_before"])


@pytest.mark.timeout(300)
async def test_victoriametrics_outage_kill9_restart_loses_nothing(tmp_path: Path) -> None:
    """The remote stand-in: observations to InfluxDB's write API (VictoriaMetrics)."""
    if VICTORIA_METRICS is None:
        pytest.skip("victoria-metrics is not installed")
    # Within VictoriaMetrics' retention (a month): the last hours, whole seconds.
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=20)
    vm = VictoriaMetricsServer(tmp_path / "vm")  # not started yet: the outage
    extra = f'  influx: {{url: "{vm.url}", token: "test-token", timeout_s: 2}}'
    attempt = 0
    (tmp_path / "db").write_text("not a folder")  # the events' SQLite is down as well

    async def up() -> None:
        (tmp_path / "db").unlink()
        await asyncio.to_thread(vm.start)

    def samples() -> int:
        nonlocal attempt
        attempt += 1
        params = {
            "match[]": export_selector("observation_value", attempt),
            "start": str(int(t0.timestamp()) - 60),
        }
        response = httpx.get(f"{vm.url}/api/v1/export", params=params, timeout=10)
        values = [orjson.loads(line)["values"] for line in response.content.splitlines() if line]
        return sum(len(v) for v in values)

    def counts() -> bool:
        try:
            return samples() >= OBSERVATIONS
        except httpx.HTTPError:
            return False

    with MosquittoServer(tmp_path / "mqtt") as mqtt:
        try:
            stores = await _crash_and_replay(
                tmp_path, mqtt.port, extra, store_up=up, counts=counts, t0=t0
            )
            await asyncio.sleep(2)  # nothing more arrives: exactly once
            assert samples() == OBSERVATIONS
        finally:
            vm.stop()
    _explained(stores, stores["on_disk_before"])
    assert stores["spools"]["observations:influx"]["replayed"] == OBSERVATIONS + ROOMS


@pytest.mark.timeout(300)
async def test_a_tiny_budget_fills_drops_the_oldest_and_the_console_keeps_running(
    tmp_path: Path,
) -> None:
    (tmp_path / "db").write_text("not a folder")  # SQLite cannot open: everything spools
    with MosquittoServer(tmp_path / "mqtt") as mqtt:
        stats = tmp_path / "stats.json"
        proc = _start(_write_config(tmp_path, mqtt.port, 100, spool_max=1_000), stats)
        try:
            await _wait(lambda: (tmp_path / "spool").is_dir(), 30, "start")
            await asyncio.sleep(2)
            await _feed(mqtt.port)
            log = tmp_path / "console.log"
            await _wait(lambda: "dtp/lift 1000 dtp/sensors 50000" in log.read_text(), 60, "intake")
            await asyncio.sleep(1.5)
            assert proc.poll() is None  # still running
            assert "spool full" in log.read_text()
        finally:
            assert _stop(proc) == 0
    spools = json.loads(stats.read_text())["stores"]["spools"]
    obs = spools["observations:sqlite"]
    assert obs["submitted"] == OBSERVATIONS + ROOMS
    assert obs["pending"] == 1_000 and obs["on_disk"] == 1_000  # kept for the next start
    assert obs["dropped"] == OBSERVATIONS + ROOMS - 1_000
    assert obs["submitted"] == obs["written"] + obs["dropped"] + obs["pending"]
    assert _spooled(tmp_path / "spool")["observations:sqlite"] == 1_000


def _refused(tmp: Path, read_only: bool) -> subprocess.CompletedProcess[str]:
    """Run the console in a private mount namespace where the spool folder is a tmpfs
    remounted read-only, or one filled up."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private read-only/full mount")
    spool = tmp / "spool"
    spool.mkdir()
    config = _write_config(tmp, 1, 100)
    if read_only:
        prepare = f"mount -t tmpfs -o size=64k tmpfs {spool} && mount -o remount,ro {spool}"
    else:
        prepare = (
            f"mount -t tmpfs -o size=8k tmpfs {spool} && "
            f"(dd if=/dev/zero of={spool}/filler bs=4k count=64 2>/dev/null; true)"
        )
    script = f"{prepare} && exec {sys.executable} -m dtp_console -c {config} run --no-ui --for 5s"
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )


@pytest.mark.parametrize(
    ("read_only", "why"),
    [(True, "Read-only file system"), (False, "No space left")],
    ids=["read-only", "full"],
)
def test_unusable_spool_dir_refuses_the_start(tmp_path: Path, read_only: bool, why: str) -> None:
    result = _refused(tmp_path, read_only)
    assert result.returncode == 2, result.stderr + result.stdout
    assert "stores.spool_dir" in result.stderr and why in result.stderr
    assert "Traceback" not in result.stderr
