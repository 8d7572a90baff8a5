"""Every embedded database is opened with the one set of PRAGMAs (`dtp_console.sqlite_conn`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dtp_console.registry.sqlite_repo import SqliteRepository
from dtp_console.sqlite_conn import BUSY_TIMEOUT_MS, connect_sqlite
from dtp_console.stores.sqlite import SqliteStore


def _pragmas(conn: sqlite3.Connection) -> dict[str, object]:
    return {
        name: conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
    }


_EXPECTED = {
    "journal_mode": "wal",
    "busy_timeout": BUSY_TIMEOUT_MS,
    "foreign_keys": 1,
    "synchronous": 1,
}


async def test_the_store_and_the_registry_open_their_files_alike(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a" / "store.db")
    repo = SqliteRepository(tmp_path / "b" / "registry.db")
    await store.open()
    await repo.open()
    try:
        assert store._conn is not None
        assert repo._conn is not None
        assert _pragmas(store._conn) == _EXPECTED
        assert _pragmas(repo._conn) == _EXPECTED
    finally:
        await store.close()
        await repo.close()


def test_a_caller_may_ask_for_another_synchronous_level(tmp_path: Path) -> None:
    conn = connect_sqlite(tmp_path / "spool.db", synchronous="full")
    try:
        assert _pragmas(conn) == {**_EXPECTED, "synchronous": 2}
    finally:
        conn.close()
