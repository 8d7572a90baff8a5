"""PostgreSQL / TimescaleDB (asyncpg): observations, signals and the event log.

The schema is created idempotently on `open()`. `observation` becomes a
Timescale hypertable when `CREATE EXTENSION IF NOT EXISTS timescaledb` works,
and a plain table with a `(ts DESC)` index when it does not (PostgreSQL here
has no Timescale). A batch of observations is one `COPY` into a per-connection
staging table and one `INSERT … SELECT … ON CONFLICT DO NOTHING`, so a batch
written twice (a retry after a lost acknowledgement) changes nothing. Events
carry a client-made UUIDv7 (`event_log.event_id`, unique; added to an older
table on `open()`), so a replayed event is skipped the same way.

Every driver or socket error surfaces as `StoreError` with one line of reason;
the DSN (and its password) never appears in one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from dtp_console.pg import PG_ERRORS, PgOpenError, PoolSettings, describe_pg_error, open_pool
from dtp_console.stores.config import PostgresConfig
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import EventRecord, Observation, Severity, Signal

__all__ = ["PostgresStore", "describe_pg_error"]

_SCHEMA_LOCK = 0x647470_73746F72  # "dtp" "stor": serialises concurrent schema creation

_TABLES = """
CREATE TABLE IF NOT EXISTS signal (
    signal_id uuid PRIMARY KEY,
    name text NOT NULL,
    unit text
);
CREATE TABLE IF NOT EXISTS observation (
    signal_id uuid NOT NULL,
    ts timestamptz NOT NULL,
    value_double double precision,
    value_text text,
    quality jsonb,
    source text,
    PRIMARY KEY (signal_id, ts)
);
CREATE TABLE IF NOT EXISTS event_log (
    id bigserial PRIMARY KEY,
    ts timestamptz NOT NULL,
    severity smallint NOT NULL CHECK (severity BETWEEN 0 AND 3),
    source text NOT NULL,
    body jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS event_log_ts_idx ON event_log (ts DESC);
ALTER TABLE event_log ADD COLUMN IF NOT EXISTS event_id uuid;
CREATE UNIQUE INDEX IF NOT EXISTS event_log_event_id_idx ON event_log (event_id);
"""
_PLAIN_INDEX = "CREATE INDEX IF NOT EXISTS observation_ts_idx ON observation (ts DESC)"
_HYPERTABLE = "SELECT create_hypertable('observation', 'ts', if_not_exists => TRUE)"
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS observation_stage (
    signal_id uuid, ts timestamptz, value_double double precision,
    value_text text, quality text, source text
) ON COMMIT DELETE ROWS
"""
_STAGE_COLUMNS = ("signal_id", "ts", "value_double", "value_text", "quality", "source")
_FROM_STAGE = """
INSERT INTO observation (signal_id, ts, value_double, value_text, quality, source)
SELECT signal_id, ts, value_double, value_text, quality::jsonb, source FROM observation_stage
ON CONFLICT (signal_id, ts) DO NOTHING
"""
_UPSERT_SIGNAL = """
INSERT INTO signal (signal_id, name, unit) VALUES ($1, $2, $3)
ON CONFLICT (signal_id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit
"""
_INSERT_EVENT = (
    "INSERT INTO event_log (ts, severity, source, body, event_id)"
    " VALUES ($1, $2, $3, $4::jsonb, $5)"
    " ON CONFLICT (event_id) DO NOTHING"
)
_PROBE_SIGNAL = uuid.uuid5(uuid.NAMESPACE_URL, "dtp-console:signal:check-probe")
#: Errors meaning "the timescaledb extension is not available here".
_NO_TIMESCALE = (
    asyncpg.FeatureNotSupportedError,
    asyncpg.UndefinedFileError,
    asyncpg.InsufficientPrivilegeError,
    asyncpg.UndefinedObjectError,
    asyncpg.InvalidParameterValueError,
)


class PostgresStore:
    """`ObservationStore` and `EventStore` on PostgreSQL (Timescale when present)."""

    name = "postgres"

    def __init__(self, config: PostgresConfig) -> None:
        if config.dsn is None:
            msg = "postgres: no dsn configured"
            raise StoreError(msg)
        self._dsn = config.dsn.get_secret_value()
        self._config = config
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        self.timescale = False
        """Whether `observation` is a Timescale hypertable (known after `open()`)."""

    def __repr__(self) -> str:
        return "PostgresStore(<dsn masked>)"

    @asynccontextmanager
    async def _errors(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except StoreError:
            raise
        except PG_ERRORS as exc:  # never `{exc}`: asyncpg's text may echo the DSN
            msg = f"postgres {what}: {describe_pg_error(exc)}"
            raise StoreError(msg) from None

    async def open(self) -> None:
        """Connect the pool and create the schema if missing (idempotent)."""
        async with self._open_lock:
            if self._pool is not None:
                return
            settings = PoolSettings(
                self._dsn,
                sslmode=self._config.sslmode,
                ca_file=self._config.ca_file,
                max_size=self._config.pool_size,
                timeout=self._config.connect_timeout_s,
                command_timeout=max(30.0, self._config.connect_timeout_s),
            )
            try:
                self._pool = await open_pool(settings, _SCHEMA_LOCK, self._create_schema)
            except PgOpenError as exc:
                msg = f"postgres {exc.phase}: {exc.reason}"
                raise StoreError(msg) from None

    async def _create_schema(self, conn: Any) -> None:
        """The tables (in `open_pool`'s locked transaction); Timescale when it can be had."""
        try:
            async with conn.transaction():  # a savepoint: a failure here is not fatal
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            timescale = True
        except _NO_TIMESCALE:
            timescale = False
        await conn.execute(_TABLES)
        if timescale:
            await conn.execute(_HYPERTABLE)
        else:
            await conn.execute(_PLAIN_INDEX)
        self.timescale = timescale

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _ready(self) -> Any:
        if self._pool is None:
            msg = "postgres: store is not open"
            raise StoreError(msg)
        return self._pool

    async def ping(self) -> None:
        """`SELECT 1` through the pool."""
        pool = self._ready()
        async with self._errors("ping"):
            await pool.fetchval("SELECT 1", timeout=self._config.connect_timeout_s)

    async def write_signals(self, signals: Sequence[Signal]) -> None:
        """Upsert signal definitions."""
        if not signals:
            return
        pool = self._ready()
        rows = [(s.signal_id, s.name, s.unit) for s in signals]
        async with self._errors("write signals"):
            await pool.executemany(_UPSERT_SIGNAL, rows)

    async def write_observations(self, batch: Sequence[Observation]) -> None:
        """COPY the batch into the staging table, then insert what is new."""
        if not batch:
            return
        pool = self._ready()
        records = [
            (
                o.signal_id,
                o.ts,
                o.value_double,
                o.value_text,
                None if o.quality is None else json.dumps(o.quality),
                o.source,
            )
            for o in batch
        ]
        async with (
            self._errors("write observations"),
            pool.acquire() as conn,
            conn.transaction(),
        ):
            await conn.execute(_STAGE)
            await conn.copy_records_to_table(
                "observation_stage", records=records, columns=_STAGE_COLUMNS
            )
            await conn.execute(_FROM_STAGE)

    async def write_observations_single(self, batch: Sequence[Observation]) -> None:
        """One INSERT per observation (the old simulator's way; the benchmark's baseline)."""
        pool = self._ready()
        async with self._errors("write observations"), pool.acquire() as conn:
            for o in batch:
                await conn.execute(
                    "INSERT INTO observation (signal_id, ts, value_double, value_text, source)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    o.signal_id,
                    o.ts,
                    o.value_double,
                    o.value_text,
                    o.source,
                )

    async def write_events(self, batch: Sequence[EventRecord]) -> None:
        """Append events; one already written (same `id`: a retry or a replay) is skipped."""
        if not batch:
            return
        pool = self._ready()
        rows = [(e.ts, e.severity, e.source, json.dumps(e.body), e.id) for e in batch]
        async with self._errors("write events"):
            await pool.executemany(_INSERT_EVENT, rows)

    async def read_observations(
        self, signal_id: uuid.UUID | None = None, limit: int = 1_000
    ) -> list[Observation]:
        """The newest observations (of one signal when given), newest first."""
        pool = self._ready()
        async with self._errors("read observations"):
            rows = await pool.fetch(
                "SELECT signal_id, ts, value_double, value_text, quality::text AS quality, source"
                " FROM observation WHERE ($1::uuid IS NULL OR signal_id = $1)"
                " ORDER BY ts DESC LIMIT $2",
                signal_id,
                limit,
            )
        return [
            Observation(
                r["signal_id"],
                r["ts"],
                r["value_double"],
                r["value_text"],
                None if r["quality"] is None else json.loads(r["quality"]),
                r["source"],
            )
            for r in rows
        ]

    async def read_events(self, limit: int = 1_000) -> list[EventRecord]:
        """The newest events, newest first."""
        pool = self._ready()
        async with self._errors("read events"):
            rows = await pool.fetch(
                "SELECT ts, severity, source, body::text AS body, event_id FROM event_log"
                " ORDER BY id DESC LIMIT $1",
                limit,
            )
        out = []
        for r in rows:
            severity: Severity = r["severity"]
            body = json.loads(r["body"])
            if r["event_id"] is None:  # a row from before event ids
                out.append(EventRecord(r["ts"], severity, r["source"], body))
            else:
                out.append(EventRecord(r["ts"], severity, r["source"], body, r["event_id"]))
        return out

    async def probe(self) -> None:
        """Write an observation and an event, read both back, remove them."""
        pool = self._ready()
        token = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        await self.write_signals([Signal(_PROBE_SIGNAL, "dtp-console check probe")])
        await self.write_observations([Observation(_PROBE_SIGNAL, now, value_text=token)])
        await self.write_events([EventRecord(now, 0, "dtp-console check", {"probe": token})])
        async with self._errors("probe read back"):
            value = await pool.fetchval(
                "SELECT value_text FROM observation WHERE signal_id = $1 AND ts = $2",
                _PROBE_SIGNAL,
                now,
            )
            event = await pool.fetchval(
                "SELECT count(*) FROM event_log WHERE body->>'probe' = $1", token
            )
            await pool.execute("DELETE FROM observation WHERE signal_id = $1", _PROBE_SIGNAL)
            await pool.execute("DELETE FROM event_log WHERE body->>'probe' = $1", token)
        missing = [
            n for n, ok in (("observation", value == token), ("event", event == 1)) if not ok
        ]
        if missing:
            msg = f"postgres probe: {', '.join(missing)} not read back"
            raise StoreError(msg)
