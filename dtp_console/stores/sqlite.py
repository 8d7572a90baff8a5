"""The embedded default store: observations, events and relationships in one SQLite file.

The stdlib driver blocks, so every call runs in a worker thread, one at a time
(an asyncio lock guards the single connection); WAL lets other readers of the
file (a `check`, a second console) go on meanwhile. Timestamps are stored as
UTC ISO 8601 text with microseconds, so they sort as they compare. Writes are
idempotent: observations on (signal_id, ts), events on their client-made
`event_id` (the column is added to a file made by an older version on open).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from dtp_console.sqlite_conn import connect_sqlite
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import EventRecord, Observation, Severity, Signal

__all__ = ["SqliteStore", "utc_text"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signal (
    signal_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    unit TEXT
);
CREATE TABLE IF NOT EXISTS observation (
    signal_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    value_double REAL,
    value_text TEXT,
    quality TEXT,
    source TEXT,
    PRIMARY KEY (signal_id, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS observation_ts ON observation (ts DESC);
CREATE TABLE IF NOT EXISTS event_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    severity INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 3),
    source TEXT NOT NULL,
    body TEXT NOT NULL,
    event_id TEXT
);
CREATE INDEX IF NOT EXISTS event_log_ts ON event_log (ts DESC);
CREATE TABLE IF NOT EXISTS graph_twin (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS graph_asset (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS graph_mirrors (
    twin_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    PRIMARY KEY (twin_id, asset_id)
);
CREATE TABLE IF NOT EXISTS graph_dependency (
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('static', 'dynamic')),
    PRIMARY KEY (source, target, kind)
);
CREATE TABLE IF NOT EXISTS graph_plant (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS graph_device (
    plant TEXT NOT NULL,
    vendor_id TEXT NOT NULL,
    login TEXT NOT NULL,
    PRIMARY KEY (plant, vendor_id)
);
"""

_PROBE_SIGNAL = uuid.uuid5(uuid.NAMESPACE_URL, "dtp-console:signal:check-probe")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file made by an older version up to date (idempotent)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(event_log)")}
    if "event_id" not in columns:
        conn.execute("ALTER TABLE event_log ADD COLUMN event_id TEXT")
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS event_log_event_id ON event_log (event_id)")


def utc_text(ts: dt.datetime) -> str:
    """An aware datetime as sortable UTC text (`2026-01-01T00:00:00.000000+00:00`)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC).isoformat(timespec="microseconds")


class SqliteStore:
    """`ObservationStore`, `EventStore` and `GraphStore` in one SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- lifetime -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file's folder, connect (WAL) and create the schema if missing."""
        if self._conn is not None:
            return
        async with self._lock:
            if self._conn is None:
                self._conn = await self._guard(self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = connect_sqlite(self.path)
        try:
            conn.executescript(_SCHEMA)
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await asyncio.to_thread(conn.close)

    async def _guard(self, fn: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(fn)
        except (sqlite3.Error, OSError) as exc:
            msg = f"SQLite {self.path}: {exc}".splitlines()[0]
            raise StoreError(msg) from None

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._lock:
            conn = self._conn
            if conn is None:
                msg = f"SQLite {self.path}: store is not open"
                raise StoreError(msg)
            return await self._guard(lambda: fn(conn))

    async def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows)

        await self._run(work)

    async def ping(self) -> None:
        """`SELECT 1` on the connection."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def probe(self) -> None:
        """Write an observation, an event and a twin node; read each back; remove them."""
        token = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        await self.write_signals([Signal(_PROBE_SIGNAL, "dtp-console check probe")])
        await self.write_observations([Observation(_PROBE_SIGNAL, now, value_text=token)])
        await self.write_events([EventRecord(now, 0, "dtp-console check", {"probe": token})])
        await self.merge_twin(f"probe:{token}", "check probe", "probe", "active", None)

        def read_back(conn: sqlite3.Connection) -> list[str]:
            missing = []
            row = conn.execute(
                "SELECT value_text FROM observation WHERE signal_id = ? AND ts = ?",
                (str(_PROBE_SIGNAL), utc_text(now)),
            ).fetchone()
            if row is None or row[0] != token:
                missing.append("observation")
            if not conn.execute(
                "SELECT 1 FROM event_log WHERE json_extract(body, '$.probe') = ?", (token,)
            ).fetchone():
                missing.append("event")
            if not conn.execute(
                "SELECT 1 FROM graph_twin WHERE id = ?", (f"probe:{token}",)
            ).fetchone():
                missing.append("twin")
            with conn:
                conn.execute("DELETE FROM observation WHERE signal_id = ?", (str(_PROBE_SIGNAL),))
                conn.execute(
                    "DELETE FROM event_log WHERE json_extract(body, '$.probe') = ?", (token,)
                )
                conn.execute("DELETE FROM graph_twin WHERE id = ?", (f"probe:{token}",))
            return missing

        missing = await self._run(read_back)
        if missing:
            msg = f"SQLite {self.path}: probe {', '.join(missing)} not read back"
            raise StoreError(msg)

    # -- observations and events ----------------------------------------------------------

    async def write_signals(self, signals: Sequence[Signal]) -> None:
        """Upsert signal definitions."""
        await self._write(
            "INSERT INTO signal (signal_id, name, unit) VALUES (?, ?, ?)"
            " ON CONFLICT (signal_id) DO UPDATE SET name = excluded.name, unit = excluded.unit",
            [(str(s.signal_id), s.name, s.unit) for s in signals],
        )

    async def write_observations(self, batch: Sequence[Observation]) -> None:
        """Insert observations; a repeated (signal_id, ts) is ignored."""
        await self._write(
            "INSERT OR IGNORE INTO observation"
            " (signal_id, ts, value_double, value_text, quality, source)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    str(o.signal_id),
                    utc_text(o.ts),
                    o.value_double,
                    o.value_text,
                    None if o.quality is None else json.dumps(o.quality),
                    o.source,
                )
                for o in batch
            ],
        )

    async def write_events(self, batch: Sequence[EventRecord]) -> None:
        """Append events; one already written (same `id`: a retry or a replay) is skipped."""
        await self._write(
            "INSERT INTO event_log (ts, severity, source, body, event_id)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            [(utc_text(e.ts), e.severity, e.source, json.dumps(e.body), str(e.id)) for e in batch],
        )

    async def read_observations(
        self, signal_id: uuid.UUID | None = None, limit: int = 1_000
    ) -> list[Observation]:
        """The newest observations (of one signal when given), newest first."""

        def work(conn: sqlite3.Connection) -> list[Observation]:
            rows = conn.execute(
                "SELECT signal_id, ts, value_double, value_text, quality, source"
                " FROM observation WHERE (? IS NULL OR signal_id = ?) ORDER BY ts DESC LIMIT ?",
                (None if signal_id is None else str(signal_id),) * 2 + (limit,),
            ).fetchall()
            return [
                Observation(
                    uuid.UUID(r[0]),
                    dt.datetime.fromisoformat(r[1]),
                    r[2],
                    r[3],
                    None if r[4] is None else json.loads(r[4]),
                    r[5],
                )
                for r in rows
            ]

        return await self._run(work)

    async def read_events(self, limit: int = 1_000) -> list[EventRecord]:
        """The newest events, newest first."""

        def work(conn: sqlite3.Connection) -> list[EventRecord]:
            rows = conn.execute(
                "SELECT ts, severity, source, body, event_id FROM event_log"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [_event(r) for r in rows]

        return await self._run(work)

    async def signals(self) -> list[Signal]:
        """Every signal definition, by name."""
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT signal_id, name, unit FROM signal ORDER BY name"
            ).fetchall()
        )
        return [Signal(uuid.UUID(r[0]), r[1], r[2]) for r in rows]

    # -- relationships --------------------------------------------------------------------

    async def merge_twin(
        self, twin_id: str, name: str, tenant: str, status: str, asset_id: str | None
    ) -> None:
        """The twin row; its MIRRORS edge to the asset when given."""

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO graph_twin (id, name, tenant, status) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                    " tenant = excluded.tenant, status = excluded.status",
                    (twin_id, name, tenant, status),
                )
                if asset_id is not None:
                    conn.execute("INSERT OR IGNORE INTO graph_asset (id) VALUES (?)", (asset_id,))
                    conn.execute(
                        "INSERT OR IGNORE INTO graph_mirrors (twin_id, asset_id) VALUES (?, ?)",
                        (twin_id, asset_id),
                    )

        await self._run(work)

    async def merge_dependency(
        self, source: str, target: str, kind: Literal["static", "dynamic"]
    ) -> None:
        """A DEPENDS_ON edge (its end twins need not exist yet)."""
        await self._write(
            "INSERT OR IGNORE INTO graph_dependency (source, target, kind) VALUES (?, ?, ?)",
            [(source, target, kind)],
        )

    async def prune_dependencies(
        self, source: str, keep: Sequence[tuple[str, Literal["static", "dynamic"]]]
    ) -> None:
        """Drop `source`'s DEPENDS_ON edges whose (target, kind) is not in `keep`."""
        wanted = set(keep)

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                rows = conn.execute(
                    "SELECT target, kind FROM graph_dependency WHERE source = ?", (source,)
                ).fetchall()
                conn.executemany(
                    "DELETE FROM graph_dependency WHERE source = ? AND target = ? AND kind = ?",
                    [(source, t, k) for t, k in rows if (t, k) not in wanted],
                )

        await self._run(work)

    async def remove_twin(self, twin_id: str) -> None:
        """The twin and every edge touching it (its assets stay)."""

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM graph_twin WHERE id = ?", (twin_id,))
                conn.execute("DELETE FROM graph_mirrors WHERE twin_id = ?", (twin_id,))
                conn.execute(
                    "DELETE FROM graph_dependency WHERE source = ? OR target = ?",
                    (twin_id, twin_id),
                )

        await self._run(work)

    async def merge_device(self, plant: str, vendor_id: str, login: str) -> None:
        """The plant and its device (login updated)."""

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR IGNORE INTO graph_plant (name) VALUES (?)", (plant,))
                conn.execute(
                    "INSERT INTO graph_device (plant, vendor_id, login) VALUES (?, ?, ?)"
                    " ON CONFLICT (plant, vendor_id) DO UPDATE SET login = excluded.login",
                    (plant, vendor_id, login),
                )

        await self._run(work)

    async def remove_device(self, plant: str, vendor_id: str) -> None:
        """A plant's device."""
        await self._write(
            "DELETE FROM graph_device WHERE plant = ? AND vendor_id = ?", [(plant, vendor_id)]
        )

    async def graph_snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every node and edge, sorted (for tests and the UI)."""
        tables = {
            "twins": "SELECT id, name, tenant, status FROM graph_twin ORDER BY id",
            "mirrors": "SELECT twin_id, asset_id FROM graph_mirrors ORDER BY 1, 2",
            "dependencies": "SELECT source, target, kind FROM graph_dependency ORDER BY 1, 2, 3",
            "devices": "SELECT plant, vendor_id, login FROM graph_device ORDER BY 1, 2",
        }

        def work(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
            return {key: [tuple(r) for r in conn.execute(sql)] for key, sql in tables.items()}

        return await self._run(work)


def _event(row: Sequence[Any]) -> EventRecord:
    severity: Severity = row[1]
    ts, body = dt.datetime.fromisoformat(row[0]), json.loads(row[3])
    if row[4] is None:  # a row from before event ids
        return EventRecord(ts, severity, row[2], body)
    return EventRecord(ts, severity, row[2], body, uuid.UUID(row[4]))
