"""`dtp_console.pg.open_pool` against the local PostgreSQL: the locked schema step, failures.

The stores and the registry open their pools through it, so what is pinned here
holds for both: concurrent starts serialise their schema creation on the
advisory lock, and a failing schema step closes the pool and reports without
the DSN.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dtp_console.pg import PgOpenError, PoolSettings, open_pool

pytestmark = pytest.mark.integration

ADMIN_DSN = os.environ.get("DTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_LOCK = 0x7465_7374_706F_6F6C  # any key: this test's own


async def _admin(sql: str, *args: object) -> object:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    name = f"dtp_pool_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_DSN.rsplit('@', 1)[-1]}: {exc}")
    try:
        yield name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _settings(database: str) -> PoolSettings:
    # A password in the DSN (trust auth ignores it) that must never reach a message.
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgres@", "postgres:test-pw-xyz@", 1)
    return PoolSettings(f"{base}/{database}", max_size=2, timeout=5)


async def test_concurrent_opens_run_their_schema_steps_one_at_a_time(database: str) -> None:
    spans: list[tuple[float, float]] = []

    async def migrate(conn: Any) -> None:
        start = time.monotonic()
        await conn.execute("CREATE TABLE IF NOT EXISTS pool_probe (id int)")
        await asyncio.sleep(0.2)
        spans.append((start, time.monotonic()))

    pools = await asyncio.gather(
        *(open_pool(_settings(database), _LOCK, migrate) for _ in range(3))
    )
    try:
        spans.sort()
        assert len(spans) == 3
        assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
    finally:
        for pool in pools:
            await pool.close()


async def test_a_failing_schema_step_closes_the_pool_and_names_no_dsn(database: str) -> None:
    async def migrate(conn: Any) -> None:
        await conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(PgOpenError) as info:
        await open_pool(_settings(database), _LOCK, migrate)
    assert info.value.phase == "schema"
    assert "no_such_table" in info.value.reason
    assert "SQLSTATE 42P01" in info.value.reason
    assert "test-pw-xyz" not in str(info.value)
    # The pool's connections are gone (none of ours is left on the database).
    left = await _admin(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    assert left == 0


async def test_a_refused_connection_is_a_connect_error() -> None:
    settings = PoolSettings("postgresql://postgres:test-pw-xyz@127.0.0.1:1/x", timeout=3)

    async def migrate(_conn: Any) -> None:
        raise AssertionError("never reached")

    with pytest.raises(PgOpenError) as info:
        await open_pool(settings, _LOCK, migrate)
    assert (info.value.phase, info.value.reason) == ("connect", "connection refused")
    assert repr(settings) == "PoolSettings(<dsn masked>)"
