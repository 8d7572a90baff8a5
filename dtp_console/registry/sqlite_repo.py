"""The embedded repository: one SQLite file, the default when no PostgreSQL is set.

The stdlib driver is blocking, so every call runs in a worker thread, one at a
time (an asyncio lock guards the single connection). Writes use
`BEGIN IMMEDIATE`, so a CLI and a running console sharing the file serialise
their read-modify-writes too; WAL lets readers go on meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from dtp_console.registry.lifecycle import TwinStatus
from dtp_console.registry.model import ServiceRecord, StatusChange, TwinRecord
from dtp_console.registry.repository import (
    ServiceChange,
    ServiceMutation,
    TwinChange,
    TwinMutation,
)
from dtp_console.sqlite_conn import connect_sqlite

__all__ = ["SqliteRepository"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry_twin (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    interfaces TEXT NOT NULL,
    dependencies TEXT NOT NULL,
    source TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS registry_twin_tenant ON registry_twin (tenant, status);
CREATE TABLE IF NOT EXISTS registry_twin_status_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    twin_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS registry_twin_status_history_twin
    ON registry_twin_status_history (twin_id, seq);
CREATE TABLE IF NOT EXISTS registry_service (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    tenant TEXT NOT NULL,
    twin_id TEXT,
    interfaces TEXT NOT NULL,
    health TEXT NOT NULL,
    health_detail TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""

_TWIN_COLUMNS = (
    "id, name, tenant, status, metadata, interfaces, dependencies, source, created_at, updated_at"
)
_SERVICE_COLUMNS = (
    "id, name, category, tenant, twin_id, interfaces, health, health_detail,"
    " registered_at, updated_at"
)


class SqliteRepository:
    """`TwinRepository` on a SQLite file (`:memory:` works too)."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the file, its folder and the schema if missing."""
        if self._conn is None:
            self._conn = await asyncio.to_thread(self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = connect_sqlite(self.path)
        try:
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await asyncio.to_thread(conn.close)

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._lock:
            if self._conn is None:
                msg = "the SQLite repository is not open"
                raise RuntimeError(msg)
            work = asyncio.ensure_future(asyncio.to_thread(fn, self._conn))
            cancelled = False
            # Cancellation cannot stop the thread: hold the lock until it is done, or
            # `close()` would close the connection under a running statement (a lost
            # write, or a segfault). The wait is one statement (busy_timeout bounds it).
            while not work.done():
                try:
                    await asyncio.wait({work})  # never cancels `work` itself
                except asyncio.CancelledError:
                    cancelled = True
            if cancelled:
                raise asyncio.CancelledError
            return work.result()

    async def get_twin(self, twin_id: str) -> TwinRecord | None:
        """One twin, or None."""
        return await self._run(lambda c: _get_twin(c, twin_id))

    async def list_twins(
        self, *, tenant: str | None = None, status: TwinStatus | None = None
    ) -> list[TwinRecord]:
        """Twins ordered by id."""
        sql = f"SELECT {_TWIN_COLUMNS} FROM registry_twin WHERE 1=1"  # noqa: S608 - constants
        params: list[str] = []
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY id"
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [_twin_from_row(row) for row in rows]

    async def existing_ids(self, ids: Collection[str]) -> set[str]:
        """Which of `ids` are registered."""
        return set(await self.tenants_of(ids))

    async def tenants_of(self, ids: Collection[str]) -> dict[str, str]:
        """Registered id → its tenant, for those of `ids` that are registered."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}

        def _query(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), 500):  # stay under SQLite's variable limit
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT id, tenant FROM registry_twin WHERE id IN ({marks})"  # noqa: S608
                found.update((row[0], row[1]) for row in conn.execute(sql, chunk))
            return found

        return await self._run(_query)

    async def change_twin(self, twin_id: str, mutate: TwinMutation, reason: str) -> TwinChange:
        """Read, mutate and write one twin in one immediate transaction."""

        def _change(conn: sqlite3.Connection) -> TwinChange:
            with _immediate(conn):
                before = _get_twin(conn, twin_id)
                after = mutate(before)
                change = TwinChange(before, after)
                if change.changed:
                    conn.execute(
                        f"INSERT INTO registry_twin ({_TWIN_COLUMNS})"  # noqa: S608 - constants
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                        " tenant = excluded.tenant, status = excluded.status,"
                        " metadata = excluded.metadata, interfaces = excluded.interfaces,"
                        " dependencies = excluded.dependencies, source = excluded.source,"
                        " updated_at = excluded.updated_at",
                        _twin_to_row(after),
                    )
                    if before is None or before.status != after.status:
                        conn.execute(
                            "INSERT INTO registry_twin_status_history"
                            " (twin_id, from_status, to_status, reason, at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (
                                twin_id,
                                before.status if before else None,
                                after.status,
                                reason,
                                _ts(after.updated_at),
                            ),
                        )
                return change

        return await self._run(_change)

    async def delete_twin(self, twin_id: str) -> TwinRecord | None:
        """Remove the twin and its history."""

        def _delete(conn: sqlite3.Connection) -> TwinRecord | None:
            with _immediate(conn):
                before = _get_twin(conn, twin_id)
                conn.execute("DELETE FROM registry_twin WHERE id = ?", (twin_id,))
                conn.execute(
                    "DELETE FROM registry_twin_status_history WHERE twin_id = ?", (twin_id,)
                )
                return before

        return await self._run(_delete)

    async def status_history(self, twin_id: str) -> list[StatusChange]:
        """Status changes, oldest first."""
        rows = await self._run(
            lambda c: c.execute(
                "SELECT twin_id, from_status, to_status, reason, at"
                " FROM registry_twin_status_history WHERE twin_id = ? ORDER BY seq",
                (twin_id,),
            ).fetchall()
        )
        return [
            StatusChange(twin_id=r[0], from_status=r[1], to_status=r[2], reason=r[3], at=_dt(r[4]))
            for r in rows
        ]

    async def get_service(self, service_id: str) -> ServiceRecord | None:
        """One service, or None."""
        return await self._run(lambda c: _get_service(c, service_id))

    async def list_services(self, *, category: str | None = None) -> list[ServiceRecord]:
        """Services ordered by id."""
        sql = f"SELECT {_SERVICE_COLUMNS} FROM registry_service"  # noqa: S608 - constants
        params: list[str] = []
        if category is not None:
            sql += " WHERE category = ?"
            params.append(category)
        rows = await self._run(lambda c: c.execute(sql + " ORDER BY id", params).fetchall())
        return [_service_from_row(row) for row in rows]

    async def change_service(self, service_id: str, mutate: ServiceMutation) -> ServiceChange:
        """Read, mutate and write one service in one immediate transaction."""

        def _change(conn: sqlite3.Connection) -> ServiceChange:
            with _immediate(conn):
                before = _get_service(conn, service_id)
                after = mutate(before)
                change = ServiceChange(before, after)
                if change.changed:
                    conn.execute(
                        f"INSERT OR REPLACE INTO registry_service ({_SERVICE_COLUMNS})"  # noqa: S608
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            after.id,
                            after.name,
                            after.category,
                            after.tenant,
                            after.twin_id,
                            json.dumps(after.interfaces),
                            after.health,
                            after.health_detail,
                            _ts(after.registered_at),
                            _ts(after.updated_at),
                        ),
                    )
                return change

        return await self._run(_change)


class _immediate:  # noqa: N801 - reads as a statement: `with _immediate(conn):`
    """`BEGIN IMMEDIATE` … `COMMIT`, or `ROLLBACK` when the block raises."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _get_twin(conn: sqlite3.Connection, twin_id: str) -> TwinRecord | None:
    row = conn.execute(
        f"SELECT {_TWIN_COLUMNS} FROM registry_twin WHERE id = ?",  # noqa: S608 - constants
        (twin_id,),
    ).fetchone()
    return None if row is None else _twin_from_row(row)


def _get_service(conn: sqlite3.Connection, service_id: str) -> ServiceRecord | None:
    row = conn.execute(
        f"SELECT {_SERVICE_COLUMNS} FROM registry_service WHERE id = ?",  # noqa: S608
        (service_id,),
    ).fetchone()
    return None if row is None else _service_from_row(row)


def _twin_to_row(twin: TwinRecord) -> tuple[Any, ...]:
    return (
        twin.id,
        twin.name,
        twin.tenant,
        twin.status,
        json.dumps(twin.metadata),
        json.dumps(twin.interfaces.model_dump(mode="json")),
        json.dumps(twin.dependencies.model_dump(mode="json")),
        twin.source,
        _ts(twin.created_at),
        _ts(twin.updated_at),
    )


def _twin_from_row(row: tuple[Any, ...]) -> TwinRecord:
    return TwinRecord(
        id=row[0],
        name=row[1],
        tenant=row[2],
        status=row[3],
        metadata=json.loads(row[4]),
        interfaces=json.loads(row[5]),
        dependencies=json.loads(row[6]),
        source=row[7],
        created_at=_dt(row[8]),
        updated_at=_dt(row[9]),
    )


def _service_from_row(row: tuple[Any, ...]) -> ServiceRecord:
    return ServiceRecord(
        id=row[0],
        name=row[1],
        category=row[2],
        tenant=row[3],
        twin_id=row[4],
        interfaces=json.loads(row[5]),
        health=row[6],
        health_detail=row[7],
        registered_at=_dt(row[8]),
        updated_at=_dt(row[9]),
    )


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _dt(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
