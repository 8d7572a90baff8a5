"""The PostgreSQL repository (asyncpg): JSONB documents, a status history table.

The schema is created idempotently by `dtp_console.pg.open_pool` (under an
advisory lock, so two consoles starting at once do not race on the catalog).
Each write takes a transaction-scoped advisory lock on its id, reads, applies
the caller's pure mutation and writes with `INSERT … ON CONFLICT DO UPDATE`:
concurrent registrations of one id end in one row and a correct history.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from dtp_console.pg import PgOpenError, PoolSettings, open_pool
from dtp_console.registry.errors import RegistryError
from dtp_console.registry.lifecycle import TwinStatus
from dtp_console.registry.model import ServiceRecord, StatusChange, TwinRecord
from dtp_console.registry.repository import (
    ServiceChange,
    ServiceMutation,
    TwinChange,
    TwinMutation,
)

__all__ = ["PostgresRepository"]

#: Advisory lock key serialising schema creation (any constant unique to this schema).
_SCHEMA_LOCK = 0x7477696E_72656701

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry_twin (
    id text PRIMARY KEY,
    name text NOT NULL,
    tenant text NOT NULL,
    status text NOT NULL CHECK (status IN ('instantiated', 'active', 'deprecated')),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    interfaces jsonb NOT NULL DEFAULT '{}'::jsonb,
    dependencies jsonb NOT NULL DEFAULT '{}'::jsonb,
    source text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS registry_twin_tenant ON registry_twin (tenant, status);
CREATE TABLE IF NOT EXISTS registry_twin_status_history (
    seq bigserial PRIMARY KEY,
    twin_id text NOT NULL,
    from_status text,
    to_status text NOT NULL,
    reason text NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS registry_twin_status_history_twin
    ON registry_twin_status_history (twin_id, seq);
CREATE TABLE IF NOT EXISTS registry_service (
    id text PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL,
    tenant text NOT NULL,
    twin_id text,
    interfaces jsonb NOT NULL DEFAULT '{}'::jsonb,
    health text NOT NULL,
    health_detail text NOT NULL,
    registered_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
"""

_TWIN_COLUMNS = (
    "id, name, tenant, status, metadata, interfaces, dependencies, source, created_at, updated_at"
)
_SERVICE_COLUMNS = (
    "id, name, category, tenant, twin_id, interfaces, health, health_detail,"
    " registered_at, updated_at"
)
_UPSERT_TWIN = f"""
INSERT INTO registry_twin ({_TWIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, tenant = EXCLUDED.tenant, status = EXCLUDED.status,
    metadata = EXCLUDED.metadata, interfaces = EXCLUDED.interfaces,
    dependencies = EXCLUDED.dependencies, source = EXCLUDED.source,
    updated_at = EXCLUDED.updated_at
"""  # noqa: S608 - column names are constants
_UPSERT_SERVICE = f"""
INSERT INTO registry_service ({_SERVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, category = EXCLUDED.category, tenant = EXCLUDED.tenant,
    twin_id = EXCLUDED.twin_id, interfaces = EXCLUDED.interfaces, health = EXCLUDED.health,
    health_detail = EXCLUDED.health_detail, updated_at = EXCLUDED.updated_at
"""  # noqa: S608 - column names are constants


async def _create_schema(conn: Any) -> None:
    await conn.execute(_SCHEMA)


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


class PostgresRepository:
    """`TwinRepository` on PostgreSQL."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        sslmode: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self._settings = PoolSettings(
            dsn,
            sslmode=sslmode,
            ca_file=ca_file,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
        )
        self._pool: Any = None

    def __repr__(self) -> str:
        return "PostgresRepository(<dsn masked>)"

    async def open(self) -> None:
        """Connect a pool and create the schema if missing."""
        if self._pool is not None:
            return
        try:
            self._pool = await open_pool(self._settings, _SCHEMA_LOCK, _create_schema)
        except PgOpenError as exc:
            what = "connect to" if exc.phase == "connect" else "create the schema of"
            msg = f"cannot {what} the registry's PostgreSQL: {exc.reason}"
            raise RegistryError(msg) from None

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _ready(self) -> Any:
        if self._pool is None:
            msg = "the PostgreSQL repository is not open"
            raise RuntimeError(msg)
        return self._pool

    async def get_twin(self, twin_id: str) -> TwinRecord | None:
        """One twin, or None."""
        row = await self._ready().fetchrow(
            f"SELECT {_TWIN_COLUMNS} FROM registry_twin WHERE id = $1",  # noqa: S608
            twin_id,
        )
        return None if row is None else _twin_from_row(row)

    async def list_twins(
        self, *, tenant: str | None = None, status: TwinStatus | None = None
    ) -> list[TwinRecord]:
        """Twins ordered by id."""
        rows = await self._ready().fetch(
            f"SELECT {_TWIN_COLUMNS} FROM registry_twin"  # noqa: S608 - constants
            " WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR status = $2)"
            " ORDER BY id",
            tenant,
            status,
        )
        return [_twin_from_row(row) for row in rows]

    async def existing_ids(self, ids: Collection[str]) -> set[str]:
        """Which of `ids` are registered."""
        return set(await self.tenants_of(ids))

    async def tenants_of(self, ids: Collection[str]) -> dict[str, str]:
        """Registered id → its tenant, for those of `ids` that are registered."""
        if not ids:
            return {}
        rows = await self._ready().fetch(
            "SELECT id, tenant FROM registry_twin WHERE id = ANY($1::text[])", list(ids)
        )
        return {row["id"]: row["tenant"] for row in rows}

    async def change_twin(self, twin_id: str, mutate: TwinMutation, reason: str) -> TwinChange:
        """Lock the id, read, mutate, upsert, and record a status change."""
        async with self._ready().acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"twin:{twin_id}"
            )
            row = await conn.fetchrow(
                f"SELECT {_TWIN_COLUMNS} FROM registry_twin WHERE id = $1",  # noqa: S608
                twin_id,
            )
            before = None if row is None else _twin_from_row(row)
            after = mutate(before)
            change = TwinChange(before, after)
            if change.changed:
                await conn.execute(_UPSERT_TWIN, *_twin_to_row(after))
                if before is None or before.status != after.status:
                    await conn.execute(
                        "INSERT INTO registry_twin_status_history"
                        " (twin_id, from_status, to_status, reason, at)"
                        " VALUES ($1, $2, $3, $4, $5)",
                        twin_id,
                        before.status if before else None,
                        after.status,
                        reason,
                        after.updated_at,
                    )
            return change

    async def delete_twin(self, twin_id: str) -> TwinRecord | None:
        """Remove the twin and its history."""
        async with self._ready().acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"twin:{twin_id}"
            )
            row = await conn.fetchrow(
                f"DELETE FROM registry_twin WHERE id = $1 RETURNING {_TWIN_COLUMNS}",  # noqa: S608
                twin_id,
            )
            await conn.execute(
                "DELETE FROM registry_twin_status_history WHERE twin_id = $1", twin_id
            )
            return None if row is None else _twin_from_row(row)

    async def status_history(self, twin_id: str) -> list[StatusChange]:
        """Status changes, oldest first."""
        rows = await self._ready().fetch(
            "SELECT twin_id, from_status, to_status, reason, at"
            " FROM registry_twin_status_history WHERE twin_id = $1 ORDER BY seq",
            twin_id,
        )
        return [StatusChange.model_validate(dict(row)) for row in rows]

    async def get_service(self, service_id: str) -> ServiceRecord | None:
        """One service, or None."""
        row = await self._ready().fetchrow(
            f"SELECT {_SERVICE_COLUMNS} FROM registry_service WHERE id = $1",  # noqa: S608
            service_id,
        )
        return None if row is None else ServiceRecord.model_validate(dict(row))

    async def list_services(self, *, category: str | None = None) -> list[ServiceRecord]:
        """Services ordered by id."""
        rows = await self._ready().fetch(
            f"SELECT {_SERVICE_COLUMNS} FROM registry_service"  # noqa: S608 - constants
            " WHERE ($1::text IS NULL OR category = $1) ORDER BY id",
            category,
        )
        return [ServiceRecord.model_validate(dict(row)) for row in rows]

    async def change_service(self, service_id: str, mutate: ServiceMutation) -> ServiceChange:
        """Lock the id, read, mutate and upsert one service."""
        async with self._ready().acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"service:{service_id}"
            )
            row = await conn.fetchrow(
                f"SELECT {_SERVICE_COLUMNS} FROM registry_service WHERE id = $1",  # noqa: S608
                service_id,
            )
            before = None if row is None else ServiceRecord.model_validate(dict(row))
            after = mutate(before)
            change = ServiceChange(before, after)
            if change.changed:
                await conn.execute(
                    _UPSERT_SERVICE,
                    after.id,
                    after.name,
                    after.category,
                    after.tenant,
                    after.twin_id,
                    after.interfaces,
                    after.health,
                    after.health_detail,
                    after.registered_at,
                    after.updated_at,
                )
            return change


def _twin_to_row(twin: TwinRecord) -> tuple[Any, ...]:
    return (
        twin.id,
        twin.name,
        twin.tenant,
        twin.status,
        twin.metadata,
        twin.interfaces.model_dump(mode="json"),
        twin.dependencies.model_dump(mode="json"),
        twin.source,
        twin.created_at,
        twin.updated_at,
    )


def _twin_from_row(row: Any) -> TwinRecord:
    return TwinRecord.model_validate(dict(row))
