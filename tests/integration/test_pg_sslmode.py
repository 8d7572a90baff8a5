"""`sslmode` reaches asyncpg for the postgres store and the registry (real PostgreSQL).

The local server (127.0.0.1:5432, trust auth) has TLS off, so `require` must
fail with a clear reason and `disable` must connect: the setting, not the DSN's
default `prefer`, decides.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from dtp_console.registry.errors import RegistryError
from dtp_console.registry.postgres_repo import PostgresRepository
from dtp_console.stores.config import PostgresConfig
from dtp_console.stores.postgres import PostgresStore
from dtp_console.stores.protocols import StoreError

pytestmark = pytest.mark.integration

DSN = os.environ.get("DTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def scratch_dsn() -> AsyncIterator[str]:
    """A throwaway database on a server without TLS (the schema writes go there)."""
    try:
        conn = await asyncpg.connect(DSN, timeout=3, ssl="disable")
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable: {type(exc).__name__}")
    name = f"dtp_ssl_{uuid.uuid4().hex[:12]}"
    try:
        if await conn.fetchval("SHOW ssl") != "off":
            pytest.skip("the test server has TLS on")
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_the_store_uses_the_configured_sslmode(scratch_dsn: str) -> None:
    strict = PostgresStore(PostgresConfig(dsn=SecretStr(scratch_dsn), sslmode="require"))
    with pytest.raises(StoreError, match="postgres connect:"):
        await strict.open()
    plain = PostgresStore(PostgresConfig(dsn=SecretStr(scratch_dsn), sslmode="disable"))
    await plain.open()
    try:
        await plain.ping()
    finally:
        await plain.close()


async def test_the_registry_uses_the_configured_sslmode(scratch_dsn: str) -> None:
    with pytest.raises(RegistryError, match="cannot connect to the registry's PostgreSQL"):
        await PostgresRepository(scratch_dsn, sslmode="verify-full").open()
    repo = PostgresRepository(scratch_dsn, sslmode="disable")
    await repo.open()
    await repo.close()
