"""The PostgreSQL store against the server here, outages included, and `dtp-console check`.

A throwaway database with a random name per test session, created through the
`postgres` database on 127.0.0.1:5432 (trust auth) and dropped afterwards;
`DTP_TEST_PG_DSN` points elsewhere. The outage test starts its own cluster
(tests/support/pgcluster.py) so it can stop and start it. Each is skipped,
saying why, only when its server cannot be reached or started.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from devtools.pgcluster import PgCluster
from dtp_console.cli import main
from dtp_console.events import Bus, LogLine, OpsLog, StoreHealth
from dtp_console.stores.config import PostgresConfig, StoresConfig
from dtp_console.stores.postgres import PostgresStore
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import EventRecord, Observation, Signal
from dtp_console.stores.service import StoreService
from tests.support.mosquitto import free_port

pytestmark = pytest.mark.integration

ADMIN_DSN = os.environ.get("DTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SID = uuid.uuid5(uuid.NAMESPACE_URL, "test:room1")


def _dsn_for(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


async def _admin(dsn: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    name = f"dtp_stores_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(ADMIN_DSN, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_DSN.rsplit('@', 1)[-1]}: {exc}")
    try:
        yield _dsn_for(name)
    finally:
        asyncio.run(_admin(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _config(dsn: str, **extra: object) -> PostgresConfig:
    return PostgresConfig.model_validate({"dsn": dsn, "connect_timeout_s": 3, **extra})


@pytest.fixture
async def store(pg_dsn: str) -> AsyncIterator[PostgresStore]:
    pg = PostgresStore(_config(pg_dsn))
    await pg.open()
    await _admin(pg_dsn, "TRUNCATE observation, signal, event_log")
    yield pg
    await pg.close()


async def _until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_schema_is_idempotent_and_falls_back_without_timescale(pg_dsn: str) -> None:
    first, second = PostgresStore(_config(pg_dsn)), PostgresStore(_config(pg_dsn))
    await asyncio.gather(first.open(), second.open())  # concurrent creation is serialised
    await first.open()  # and re-opening is a no-op
    available = await _admin(
        pg_dsn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    assert first.timescale == second.timescale == bool(available)
    if not first.timescale:
        index = await _admin(
            pg_dsn,
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'observation'"
            " AND indexname = 'observation_ts_idx'",
        )
        assert isinstance(index, str) and "ts DESC" in index
        kind = await _admin(
            pg_dsn, "SELECT relkind::text FROM pg_class WHERE relname = 'observation'"
        )
        assert kind == "r"
    key = await _admin(
        pg_dsn,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'observation'::regclass AND contype = 'p'",
    )
    assert key == "PRIMARY KEY (signal_id, ts)"
    await first.close()
    await second.close()
    await first.close()  # idempotent


async def test_batched_writes_read_back_and_duplicates_are_ignored(store: PostgresStore) -> None:
    await store.write_signals([Signal(SID, "room1 temperature", "°C")])
    await store.write_signals([Signal(SID, "room 1 temperature", "°C")])
    batch = [
        Observation(SID, T0 + dt.timedelta(milliseconds=i), 20.0 + i / 1000, source="test")
        for i in range(20_000)
    ]
    await store.write_observations(batch)
    await store.write_observations(batch[:5_000])  # a retried batch changes nothing
    await store.write_observations([batch[0], batch[0]])  # nor do duplicates within a batch
    other = uuid.uuid4()
    await store.write_observations(
        [Observation(other, T0, value_text="open", quality={"stale": True, "n": 2})]
    )
    newest = await store.read_observations(SID, limit=1)
    assert newest == [batch[-1]]
    assert len(await store.read_observations(SID, limit=50_000)) == 20_000
    [text] = await store.read_observations(other)
    assert (text.value_text, text.value_double, text.quality) == (
        "open",
        None,
        {"stale": True, "n": 2},
    )
    name = await _admin(_dsn(store), "SELECT name FROM signal WHERE signal_id = $1", SID)
    assert name == "room 1 temperature"


def _dsn(store: PostgresStore) -> str:
    return store._dsn


async def test_event_log(store: PostgresStore) -> None:
    events = [
        EventRecord(T0, 2, "lift", {"type": "vibration_alert", "rms": 5.1}),
        EventRecord(T0 + dt.timedelta(seconds=1), 3, "bridge:HiTech", {"text": "POST failed"}),
    ]
    await store.write_events(events)
    assert await store.read_events() == events[::-1]
    with pytest.raises(StoreError, match=r"check constraint .* \(SQLSTATE 23514\)"):
        await store.write_events([EventRecord(T0, 4, "bad")])  # type: ignore[arg-type]
    severity = await _admin(_dsn(store), "SELECT severity FROM event_log WHERE source = 'lift'")
    assert severity == 2


async def test_events_are_written_once_per_id(store: PostgresStore) -> None:
    event = EventRecord(T0, 1, "registry", {"twin": "dt:Lift_001"})
    await store.write_events([event, event])
    await store.write_events([event])  # a replay after a crash
    assert await store.read_events() == [event]
    assert await _admin(_dsn(store), "SELECT event_id FROM event_log") == event.id


async def test_an_older_event_log_is_migrated(pg_dsn: str) -> None:
    name = f"dtp_stores_old_{secrets.token_hex(4)}"
    await _admin(ADMIN_DSN, f'CREATE DATABASE "{name}"')
    dsn = _dsn_for(name)
    try:
        await _admin(
            dsn,
            "CREATE TABLE event_log (id bigserial PRIMARY KEY, ts timestamptz NOT NULL,"
            " severity smallint NOT NULL, source text NOT NULL, body jsonb NOT NULL)",
        )
        await _admin(
            dsn, "INSERT INTO event_log (ts, severity, source, body) VALUES (now(), 0, 'old', '{}')"
        )
        pg = PostgresStore(_config(dsn))
        await pg.open()
        try:
            event = EventRecord(T0, 2, "new", {})
            await pg.write_events([event, event])
            events = await pg.read_events()
            assert sorted(e.source for e in events) == ["new", "old"]
            assert [e.id for e in events if e.source == "new"] == [event.id]
        finally:
            await pg.close()
    finally:
        await _admin(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_ping_and_probe_leave_no_probe_rows(store: PostgresStore) -> None:
    await store.ping()
    await store.probe()
    assert await store.read_events() == []
    assert await _admin(_dsn(store), "SELECT count(*) FROM observation") == 0


async def test_unreachable_server_is_a_one_line_store_error() -> None:
    dsn = f"postgresql://dtp:not-the-password@127.0.0.1:{free_port()}/dtp"
    store = PostgresStore(_config(dsn))
    with pytest.raises(StoreError) as info:
        await store.open()
    assert str(info.value) == "postgres connect: connection refused"
    with pytest.raises(StoreError, match="not open"):
        await store.write_observations([Observation(SID, T0, 1.0)])
    assert "not-the-password" not in repr(store)


async def test_connections_dropped_mid_run_are_retried(pg_dsn: str, tmp_path: Path) -> None:
    """Backends killed under a running service: every observation still lands once."""
    await _admin(pg_dsn, "SELECT 1")
    config = StoresConfig.model_validate(
        {"postgres": {"dsn": pg_dsn, "batch_size": 200}, "flush_interval_ms": 5}
        | {"retry_initial_s": 0.05, "retry_max_s": 0.2, "health_interval_s": 60}
        | {"sqlite_path": str(tmp_path / "platform.sqlite3")}
    )
    bus = Bus()
    async with StoreService(config, bus, OpsLog(bus)) as service:
        await _admin(pg_dsn, "TRUNCATE observation, signal, event_log")
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        spool = service.spools["observations:postgres"]
        for round_ in range(10):
            for i in range(500):
                ts = (T0 + dt.timedelta(seconds=round_ * 500 + i)).isoformat()
                service.submit_mqtt(
                    "dtp/sensors/room1/temp", f'{{"value": {i}, "ts": "{ts}"}}'.encode()
                )
            await asyncio.sleep(0.01)
            await _admin(
                ADMIN_DSN,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                pg_dsn.rsplit("/", 1)[1],
            )
        await _until(lambda: spool.pending == 0)
        stop.set()
        await runner
    assert spool.retries >= 1  # the drops did hit writes (4–5 of 10 rounds here)
    assert spool.dropped == 0
    assert spool.submitted == spool.written == 5_001  # 5,000 readings and one signal
    assert await _admin(pg_dsn, "SELECT count(*) FROM observation") == 5_000


async def test_spool_and_recover_across_an_outage(tmp_path: Path) -> None:
    reason = PgCluster.unavailable()
    if reason:
        pytest.skip(reason)
    with PgCluster() as cluster:
        config = StoresConfig.model_validate(
            {
                "postgres": {"dsn": cluster.dsn, "batch_size": 100, "connect_timeout_s": 1},
                "flush_interval_ms": 5,
                "retry_initial_s": 0.05,
                "retry_max_s": 0.2,
                "health_interval_s": 0.1,
                "probe_timeout_s": 2,
                "sqlite_path": str(tmp_path / "platform.sqlite3"),
            }
        )
        bus = Bus()
        seen = bus.subscribe(maxsize=100_000)
        async with StoreService(config, bus, OpsLog(bus)) as service:
            stop = asyncio.Event()
            runner = asyncio.create_task(service.run(stop))
            observations = service.spools["observations:postgres"]
            events = service.spools["events:postgres"]

            def submit(start: int, n: int) -> None:
                for i in range(start, start + n):
                    ts = (T0 + dt.timedelta(seconds=i)).isoformat()
                    payload = f'{{"value": {i}, "ts": "{ts}"}}'.encode()
                    service.submit_mqtt("dtp/sensors/room1/temp", payload)

            submit(0, 1_000)
            await _until(lambda: observations.pending == 0)
            await asyncio.to_thread(cluster.stop)  # the store goes down mid-run
            submit(1_000, 2_000)
            service.submit_log(LogLine(level="FAIL", text="OAuth failed for tugger-03: 401"))
            await _until(lambda: observations.retries >= 2 and events.retries >= 1)
            await _until(lambda: "postgres" in service.health and not service.health["postgres"].ok)
            assert observations.pending == 2_000
            assert observations.written == 1_001
            await asyncio.to_thread(cluster.start)  # … and comes back
            await _until(lambda: observations.pending == 0 and events.pending == 0)
            await _until(lambda: service.health["postgres"].ok)
            stop.set()
            await runner
        assert observations.dropped == events.dropped == 0
        assert observations.submitted == observations.written == 3_001
        assert events.submitted == events.written == 1
        assert await _admin(cluster.dsn, "SELECT count(*) FROM observation") == 3_000
        assert await _admin(cluster.dsn, "SELECT count(*) FROM event_log WHERE severity = 3") == 1
        health = [e for e in seen.drain() if isinstance(e, StoreHealth) and e.name == "postgres"]
        assert any(not h.ok for h in health) and health[-1].ok
        failed = next(h for h in health if not h.ok)
        assert failed.error is not None and failed.error.startswith("postgres")


# -- dtp-console check ------------------------------------------------------------------------


def _write_config(tmp_path: Path, stores: str = "") -> Path:
    path = tmp_path / "console.yaml"
    path.write_text(
        "stores:\n"
        f"  sqlite_path: {tmp_path / 'var' / 'platform.sqlite3'}\n"
        f"  blob_dir: {tmp_path / 'var' / 'blobs'}\n"
        "  probe_timeout_s: 5\n" + stores
    )
    return path


def test_check_with_embedded_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(_write_config(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {"postgres", "influx", "neo4j", "s3", "sqlite", "folder"}
    assert rows["postgres"].endswith("not configured")
    assert rows["sqlite"].split()[1] == "observations,events,relationships"
    assert rows["sqlite"].endswith(" ok") and rows["folder"].endswith(" ok")
    assert " ms " in rows["sqlite"]


def test_check_with_an_unreachable_postgres(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "TEST_STORES_PG_DSN", f"postgresql://dtp:s3cr3t-pw@127.0.0.1:{free_port()}/dtp"
    )
    config = _write_config(tmp_path, "  postgres:\n    dsn: ${TEST_STORES_PG_DSN}\n")
    assert main(["check", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("postgres")]
    assert "FAILED: postgres connect: connection refused" in row
    assert "s3cr3t-pw" not in out
    assert main(["check", "--json", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert '"error": "postgres connect: connection refused"' in out
    assert "s3cr3t-pw" not in out


def test_check_with_the_postgres_here(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path, f"  postgres:\n    dsn: {pg_dsn}\n")
    assert main(["check", "-c", str(config)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["postgres"].split()[1] == "observations,events"
    assert rows["postgres"].endswith(" ok")
    assert rows["sqlite"].split()[1] == "relationships"


def test_secret_dsn_is_masked_in_config() -> None:
    config = PostgresConfig(dsn=SecretStr("postgresql://u:pw@h/db"))
    assert "pw" not in repr(config)
