"""One behaviour suite for both repositories: SQLite, and the PostgreSQL running here.

PostgreSQL: a throwaway database with a random name per test session, created
through the `postgres` database on 127.0.0.1:5432 (trust auth) and dropped
afterwards; `DTP_TEST_PG_DSN` points elsewhere. Skipped, saying why, only when
that server cannot be reached.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from dtp_console.events import Bus
from dtp_console.registry.errors import IllegalTransitionError, TwinNotFoundError
from dtp_console.registry.model import Dependencies, Interfaces, ServiceRecord, TwinRecord, TwinSpec
from dtp_console.registry.postgres_repo import PostgresRepository
from dtp_console.registry.repository import TwinChange, TwinRepository
from dtp_console.registry.service import RegistryService
from dtp_console.registry.sqlite_repo import SqliteRepository

pytestmark = pytest.mark.integration

ADMIN_DSN = os.environ.get("DTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def _dsn_for(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    name = f"dtp_registry_test_{secrets.token_hex(6)}"

    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_DSN.rsplit('@', 1)[-1]}: {exc}")
    try:
        yield _dsn_for(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class _Backend:
    make: Callable[[], TwinRepository]
    dsn: str | None = None  # PostgreSQL only: to empty the tables


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> _Backend:
    if request.param == "sqlite":
        return _Backend(lambda: SqliteRepository(tmp_path / "registry.sqlite3"))
    dsn: str = request.getfixturevalue("pg_dsn")
    return _Backend(lambda: PostgresRepository(dsn), dsn)


@pytest.fixture
async def repo(backend: _Backend) -> AsyncIterator[TwinRepository]:
    repository = backend.make()
    await repository.open()
    if backend.dsn is not None:  # one database per session: each test starts empty
        conn = await asyncpg.connect(backend.dsn)
        try:
            await conn.execute(
                "TRUNCATE registry_twin, registry_twin_status_history, registry_service"
            )
        finally:
            await conn.close()
    try:
        yield repository
    finally:
        await repository.close()


async def _put(repo: TwinRepository, record: TwinRecord, reason: str = "r") -> TwinChange:
    return await repo.change_twin(record.id, lambda _before: record, reason)


def _record(twin_id: str = "dt:Lift_001", **changes: object) -> TwinRecord:
    base = TwinRecord(
        id=twin_id,
        name="Lift",
        tenant="demo",
        status="instantiated",
        metadata={"domain": ["m"], "nested": {"floors": [1, 2, 3]}, "ratio": 0.5},
        interfaces=Interfaces(api="http://localhost:8081", data_streams=["MQTT:dtp/lift/alerts"]),
        dependencies=Dependencies(static=["dt:Room1_001"], dynamic=["dt:X"]),
        source="/twins/lift/twin.yaml",
        created_at=T0,
        updated_at=T0,
    )
    return base.model_copy(update=changes)


async def test_round_trip_keeps_every_field(repo: TwinRepository) -> None:
    written = _record()
    change = await repo.change_twin(written.id, lambda _before: written, "registered")
    assert change.created
    assert change.changed
    read = await repo.get_twin(written.id)
    assert read == written
    assert read is not None
    assert read.created_at.tzinfo is not None
    assert await repo.get_twin("dt:Nope") is None


async def test_unchanged_mutation_writes_nothing(repo: TwinRepository) -> None:
    await repo.change_twin("dt:Lift_001", lambda _b: _record(), "registered")
    later = T0 + dt.timedelta(hours=1)
    change = await repo.change_twin(
        "dt:Lift_001", lambda _b: _record(updated_at=later), "registered"
    )
    assert not change.changed
    stored = await repo.get_twin("dt:Lift_001")
    assert stored is not None
    assert stored.updated_at == T0  # timestamps alone are not a change


async def test_status_history_records_each_change_in_order(repo: TwinRepository) -> None:
    steps = [("instantiated", "registered"), ("active", "activate"), ("deprecated", "gone")]
    for minute, (status, reason) in enumerate(steps):
        at = T0 + dt.timedelta(minutes=minute)
        await _put(repo, _record(status=status, updated_at=at), reason)
    await repo.change_twin("dt:Lift_001", lambda b: b or _record(), "no-op")
    history = await repo.status_history("dt:Lift_001")
    assert [(h.from_status, h.to_status, h.reason) for h in history] == [
        (None, "instantiated", "registered"),
        ("instantiated", "active", "activate"),
        ("active", "deprecated", "gone"),
    ]
    assert history[2].at == T0 + dt.timedelta(minutes=2)


async def test_a_refused_mutation_changes_nothing(repo: TwinRepository) -> None:
    await repo.change_twin("dt:Lift_001", lambda _b: _record(), "registered")

    def _refuse(_before: TwinRecord | None) -> TwinRecord:
        raise IllegalTransitionError("dt:Lift_001", "active", "instantiated", [])

    with pytest.raises(IllegalTransitionError):
        await repo.change_twin("dt:Lift_001", _refuse, "x")
    assert await repo.get_twin("dt:Lift_001") == _record()
    # The connection is usable after the rollback.
    await repo.change_twin("dt:B", lambda _b: _record("dt:B"), "registered")
    assert await repo.existing_ids(["dt:Lift_001", "dt:B", "dt:C"]) == {"dt:Lift_001", "dt:B"}


async def test_list_filters_and_orders(repo: TwinRepository) -> None:
    for twin_id, tenant, status in [
        ("dt:C", "t1", "active"),
        ("dt:A", "t1", "deprecated"),
        ("dt:B", "t2", "active"),
    ]:
        await _put(repo, _record(twin_id, tenant=tenant, status=status))
    assert [t.id for t in await repo.list_twins()] == ["dt:A", "dt:B", "dt:C"]
    assert [t.id for t in await repo.list_twins(tenant="t1")] == ["dt:A", "dt:C"]
    assert [t.id for t in await repo.list_twins(status="active")] == ["dt:B", "dt:C"]
    assert [t.id for t in await repo.list_twins(tenant="t1", status="active")] == ["dt:C"]
    assert await repo.list_twins(tenant="none") == []


async def test_delete_removes_twin_and_history(repo: TwinRepository) -> None:
    await repo.change_twin("dt:Lift_001", lambda _b: _record(), "registered")
    removed = await repo.delete_twin("dt:Lift_001")
    assert removed == _record()
    assert await repo.get_twin("dt:Lift_001") is None
    assert await repo.status_history("dt:Lift_001") == []
    assert await repo.delete_twin("dt:Lift_001") is None


async def test_existing_ids_handles_many(repo: TwinRepository) -> None:
    for i in range(3):
        await _put(repo, _record(f"dt:{i}"))
    asked = [f"dt:{i}" for i in range(1200)]  # more than SQLite's variable limit per query
    assert await repo.existing_ids(asked) == {"dt:0", "dt:1", "dt:2"}
    assert await repo.existing_ids([]) == set()


async def test_tenants_of_names_each_registered_ids_tenant(repo: TwinRepository) -> None:
    await _put(repo, _record("dt:A", tenant="t1"))
    await _put(repo, _record("dt:B", tenant="t2"))
    asked = ["dt:A", "dt:B", "dt:Ghost", "dt:A", *(f"dt:x{i}" for i in range(600))]
    assert await repo.tenants_of(asked) == {"dt:A": "t1", "dt:B": "t2"}
    assert await repo.tenants_of([]) == {}


async def test_services_round_trip(repo: TwinRepository) -> None:
    service = ServiceRecord(
        id="svc:lift-ui",
        name="Lift UI",
        category="ui",
        twin_id="dt:Lift_001",
        interfaces={"api": "http://localhost:8081", "data_streams": ["MQTT:a/b"]},
        registered_at=T0,
        updated_at=T0,
    )
    change = await repo.change_service(service.id, lambda _b: service)
    assert change.changed
    assert await repo.get_service(service.id) == service
    healthy = service.model_copy(update={"health": "healthy", "updated_at": T0 + dt.timedelta(1)})
    await repo.change_service(service.id, lambda _b: healthy)
    assert await repo.list_services() == [healthy]
    assert await repo.list_services(category="ui") == [healthy]
    assert await repo.list_services(category="api") == []


async def test_twenty_concurrent_registrations_of_one_id_end_in_one_row(
    repo: TwinRepository,
) -> None:
    service = RegistryService(repo, Bus())
    specs = [
        TwinSpec(id="dt:Race_001", name=f"writer {i}", declared_status="active") for i in range(20)
    ]
    results = await asyncio.gather(*(service.register(spec) for spec in specs))
    assert sum(r.created for r in results) == 1
    twins = await repo.list_twins()
    assert [t.id for t in twins] == ["dt:Race_001"]
    assert twins[0].name in {spec.name for spec in specs}
    history = await repo.status_history("dt:Race_001")
    assert [(h.from_status, h.to_status) for h in history] == [(None, "active")]


async def test_concurrent_lifecycle_moves_stay_legal(repo: TwinRepository) -> None:
    service = RegistryService(repo, Bus())
    await service.register(TwinSpec(id="dt:L", name="l"))
    outcomes = await asyncio.gather(
        *(service.deprecate("dt:L") for _ in range(10)), return_exceptions=True
    )
    assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
    history = await repo.status_history("dt:L")
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, "instantiated"),
        ("instantiated", "deprecated"),
    ]
    with pytest.raises(TwinNotFoundError):
        await service.deprecate("dt:Unknown")


async def test_schema_creation_is_idempotent(backend: _Backend, repo: TwinRepository) -> None:
    await repo.change_twin("dt:Kept", lambda _b: _record("dt:Kept"), "r")
    others = [backend.make() for _ in range(3)]
    await asyncio.gather(*(other.open() for other in others))  # concurrent opens
    try:
        for other in others:
            assert [t.id for t in await other.list_twins()] == ["dt:Kept"]
    finally:
        for other in others:
            await other.close()


async def test_postgres_stores_documents_as_jsonb(pg_dsn: str) -> None:
    repository = PostgresRepository(pg_dsn)
    await repository.open()
    try:
        conn = await asyncpg.connect(pg_dsn)
        try:
            rows = await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_name LIKE 'registry_%' AND data_type = 'jsonb'"
            )
            tables = {r["table_name"] for r in rows}
            history = await conn.fetchval("SELECT to_regclass('registry_twin_status_history')")
        finally:
            await conn.close()
        jsonb = {(r["table_name"], r["column_name"]) for r in rows}
        assert {
            ("registry_twin", "metadata"),
            ("registry_twin", "interfaces"),
            ("registry_twin", "dependencies"),
            ("registry_service", "interfaces"),
        } <= jsonb, tables
        assert history is not None
    finally:
        await repository.close()
    assert "<dsn masked>" in repr(repository)


async def test_postgres_unreachable_is_a_clear_error() -> None:
    from dtp_console.registry.errors import RegistryError

    repository = PostgresRepository("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(RegistryError, match="cannot connect to the registry's PostgreSQL"):
        await repository.open()
