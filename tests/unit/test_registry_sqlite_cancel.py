"""A registry call cancelled mid-statement (shutdown, a handler cancelled) and `close`.

The statement runs in a worker thread that cancellation cannot stop. If the lock
were released at once, `close()` would close the connection under that thread:
a lost write at best, a segfault of the whole console at worst (seen at engine
shutdown while a registry write was in flight).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

from dtp_console.registry.model import TwinRecord
from dtp_console.registry.sqlite_repo import SqliteRepository


def _twin(twin_id: str) -> TwinRecord:
    now = dt.datetime.now(dt.UTC)
    return TwinRecord(
        id=twin_id,
        name=twin_id,
        tenant="plant-a",
        status="instantiated",
        created_at=now,
        updated_at=now,
    )


async def test_close_waits_for_a_cancelled_call_still_running_in_its_thread(
    tmp_path: Path,
) -> None:
    repo = SqliteRepository(tmp_path / "reg.db")
    await repo.open()
    entered = threading.Event()
    release = threading.Event()

    def _slow(_before: TwinRecord | None) -> TwinRecord:
        entered.set()
        release.wait(5)  # inside BEGIN IMMEDIATE, in the worker thread
        return _twin("dt:L1")

    task = asyncio.create_task(repo.change_twin("dt:L1", _slow, "test"))
    assert await asyncio.to_thread(entered.wait, 5)
    task.cancel()
    closing = asyncio.create_task(repo.close())
    await asyncio.sleep(0.2)
    assert not closing.done()  # the statement still owns the connection
    release.set()
    async with asyncio.timeout(5):
        await closing
    assert task.cancelled()
    reopened = SqliteRepository(tmp_path / "reg.db")
    await reopened.open()
    try:
        assert await reopened.get_twin("dt:L1") is not None  # committed, not cut off
    finally:
        await reopened.close()
