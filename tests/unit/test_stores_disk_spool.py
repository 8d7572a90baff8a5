"""The disk spool: on disk after a tick, replayed in order after a restart or a crash,
bounded in records and bytes, torn and unwritable files counted and survived.

The writer is a fake that fails on demand (the spool's own behaviour); the
spool file is a real SQLite file, the crash a real `os._exit` of a child process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from dtp_console.cli import main
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.stores import codec
from dtp_console.stores.disk_spool import (
    DiskSpool,
    check_spool_dir,
    read_spool_files,
    wal_torn,
)
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import BlobPut, EventRecord, GraphChange, Observation, Signal
from dtp_console.stores.uuid7 import uuid7, uuid7_ms

SIG = uuid.UUID("0190a3b2-0000-7000-8000-000000000001")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _obs(i: int) -> Observation:
    return Observation(SIG, T0 + dt.timedelta(seconds=i), float(i))


class FlakyWriter:
    """Records batches; raises `StoreError` while `down` is set."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.down = False

    async def __call__(self, batch: list[Any]) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise StoreError("postgres write observations: connection refused")
        self.batches.append(list(batch))

    @property
    def values(self) -> list[float | None]:
        return [r.value_double for b in self.batches for r in b]


def _spool(path: Path, writer: FlakyWriter, bus: Bus, **kw: Any) -> DiskSpool[Any]:
    options: dict[str, Any] = {
        "max_records": 10_000,
        "batch_size": 10,
        "flush_interval_s": 0.01,
        "retry_initial_s": 0.01,
        "retry_max_s": 0.02,
        **kw,
    }
    return DiskSpool("observations:test", writer, OpsLog(bus, window_s=60), path, **options)


def _balanced(spool: DiskSpool[Any]) -> None:
    assert spool.submitted == spool.written + spool.dropped + spool.pending


def _rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        count: int = conn.execute("SELECT coalesce(sum(n - skip), 0) FROM spool").fetchone()[0]
        return count
    finally:
        conn.close()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


def test_uuid7_is_version_7_time_ordered_and_unique() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids)  # monotonic within one millisecond too
    assert len(set(ids)) == len(ids)
    # A clock that steps back does not make an id sort before the earlier ones.
    behind = uuid7(now_ns=1_700_000_000_000_000_000)
    assert behind > ids[-1] and uuid7_ms(behind) >= uuid7_ms(ids[-1])


def test_codec_round_trips_every_record_and_refuses_garbage() -> None:
    records = [
        Signal(SIG, "room1 temperature", "°C"),
        Observation(SIG, T0, None, "ok ✓ [b]x[/b]", {"q": [1, 2]}, "src\x1b[31m"),
        EventRecord(T0, 3, "bridge:x", {"nested": {"a": [1, "é"]}}),
        GraphChange("prune_dependencies", ("dt:A", [("dt:B", "static")])),
        GraphChange("merge_twin", ("dt:A", "A", "demo", "active", None)),
        BlobPut("twins/dt-A/x.yaml", b"\x00\xffbytes", "application/yaml", "twin-file:x"),
    ]
    for record in records:
        assert codec.decode(codec.encode(record)) == record
    for junk in (b"", b"[]", b'["z"]', b'["o", 1]', b"\xff\xfe", b'["g", "x", "drop_all", []]'):
        with pytest.raises(ValueError, match="not a spool record"):
            codec.decode(junk)


async def test_records_reach_disk_then_store_and_leave_the_file(tmp_path: Path) -> None:
    bus, writer = Bus(), FlakyWriter()
    path = tmp_path / "s" / "observations.sqlite3"
    spool = _spool(path, writer, bus)
    await spool.open()
    writer.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop, drain_timeout_s=1))
    spool.submit_many(_obs(i) for i in range(25))
    await _until(lambda: spool.on_disk == 25)
    assert _rows(path) == 25  # on disk while the store is down
    assert (spool.oldest_age_s() or 0) >= 0
    _balanced(spool)
    writer.down = False
    await _until(lambda: spool.pending == 0)
    assert writer.values == [float(i) for i in range(25)]
    assert _rows(path) == 0  # deleted once acknowledged
    stop.set()
    await task
    _balanced(spool)
    assert spool.stats().as_dict()["kind"] == "disk"


async def test_restart_replays_what_was_on_disk_first_in_order(tmp_path: Path) -> None:
    bus, writer = Bus(), FlakyWriter()
    path = tmp_path / "observations.sqlite3"
    first = _spool(path, writer, bus)
    await first.open()
    writer.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop, drain_timeout_s=0.05))
    first.submit_many(_obs(i) for i in range(40))
    await _until(lambda: first.on_disk == 40)
    stop.set()
    await task
    assert first.pending == 40 and first.dropped == 0  # kept on disk, not dropped
    _balanced(first)

    writer.down = False
    second = _spool(path, writer, bus, cache_records=0)
    await second.open()
    assert second.replayed == 40 and second.submitted == 40
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop, drain_timeout_s=1))
    second.submit_many(_obs(i) for i in range(40, 45))
    await _until(lambda: second.pending == 0)
    stop.set()
    await task
    assert writer.values == [float(i) for i in range(45)]  # the old ones first, once each
    assert second.written == 45
    _balanced(second)


async def test_tiny_budget_drops_the_oldest_counts_them_and_keeps_running(
    tmp_path: Path,
) -> None:
    bus, writer = Bus(), FlakyWriter()
    seen = bus.subscribe()
    path = tmp_path / "observations.sqlite3"
    spool = _spool(path, writer, bus, max_records=30, max_bytes=100_000)
    await spool.open()
    writer.down = True
    # (No flusher meanwhile: a batch in flight is never dropped, which would make
    # "the oldest" depend on timing here.)
    for i in range(100):
        spool.submit(_obs(i))
        if i % 10 == 9:
            assert await spool.persist_once()
    assert spool.on_disk == 30 and spool.pending == 30
    assert spool.dropped == 70
    _balanced(spool)
    assert await spool.persist_once()  # the drops leave the file with the next transaction
    assert _rows(path) == 30
    writer.down = False
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop, drain_timeout_s=1))
    await _until(lambda: spool.pending == 0)
    assert writer.values == [float(i) for i in range(70, 100)]  # the newest survived
    stop.set()
    await task
    _balanced(spool)
    lines = [e.text for e in seen.drain() if isinstance(e, LogLine)]
    assert any("spool full" in t and "dropped" in t for t in lines)


async def test_byte_budget_drops_the_oldest(tmp_path: Path) -> None:
    bus, writer = Bus(), FlakyWriter()
    path = tmp_path / "observations.sqlite3"
    chunk = len(codec.encode_many([_obs(1)]))  # one record per transaction: one chunk each
    spool = _spool(path, writer, bus, max_bytes=chunk * 5 + 2)
    await spool.open()
    for i in range(1, 9):
        spool.submit(_obs(i))
        assert await spool.persist_once()
    assert spool.on_disk == 5
    assert spool.dropped == 3
    _balanced(spool)
    assert await spool.flush_once()
    assert writer.values == [4.0, 5.0, 6.0, 7.0, 8.0]  # the oldest went
    _balanced(spool)
    await spool.close()


_CRASH = """
import asyncio, datetime as dt, os, sys, uuid
from pathlib import Path
from dtp_console.events import Bus, OpsLog
from dtp_console.stores.disk_spool import DiskSpool
from dtp_console.stores.records import Observation

async def main():
    async def down(batch):
        raise OSError("store down")
    spool = DiskSpool("observations:test", down, OpsLog(Bus()), Path(sys.argv[1]))
    await spool.open()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sig = uuid.UUID("0190a3b2-0000-7000-8000-000000000001")
    for batch in range(int(sys.argv[2])):
        spool.submit_many(
            Observation(sig, t0 + dt.timedelta(seconds=batch * 100 + i), float(batch * 100 + i))
            for i in range(100)
        )
        assert await spool.persist_once()
    os._exit(0)  # as kill -9: no close, no checkpoint, the WAL stays

asyncio.run(main())
"""


def _crash_writer(path: Path, batches: int) -> None:
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRASH), str(path), str(batches)],
        check=True,
        timeout=60,
    )


def _tear(path: Path) -> None:
    """Cut the WAL's last frame short (a write torn by a crash)."""
    wal = Path(f"{path}-wal")
    size = wal.stat().st_size
    assert size > 0
    with wal.open("r+b") as handle:
        handle.truncate(size - 1000)


async def test_torn_last_write_is_detected_counted_and_the_rest_replayed(tmp_path: Path) -> None:
    path = tmp_path / "observations.sqlite3"
    _crash_writer(path, 3)
    assert not wal_torn(path)
    _tear(path)
    assert wal_torn(path)
    bus, writer = Bus(), FlakyWriter()
    spool = _spool(path, writer, bus, batch_size=1000)
    await spool.open()
    assert spool.torn_writes == 1
    assert spool.replayed == 200  # the torn third batch is rolled back, the two before kept
    await spool.flush_once()
    assert writer.values == [float(i) for i in range(spool.replayed)]
    _balanced(spool)
    await spool.close()


async def test_corrupt_row_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "observations.sqlite3"
    _crash_writer(path, 4)  # four chunks of 100 records
    conn = sqlite3.connect(path)
    conn.execute("UPDATE spool SET body = x'00ff' WHERE seq = 101")  # garbage, CRC off
    conn.execute("UPDATE spool SET crc = crc + 1 WHERE seq = 201")  # a flipped bit
    conn.commit()
    conn.close()
    bus, writer = Bus(), FlakyWriter()
    spool = _spool(path, writer, bus, batch_size=1000)
    await spool.open()
    assert spool.replayed == 400
    assert await spool.flush_once()
    assert spool.torn == 200 and spool.dropped == 200 and spool.written == 200
    assert writer.values == [float(i) for i in (*range(100), *range(300, 400))]
    _balanced(spool)
    assert _rows(path) == 0
    await spool.close()


async def test_disk_full_later_is_a_disk_error_records_still_flow(tmp_path: Path) -> None:
    bus, writer = Bus(), FlakyWriter()
    seen = bus.subscribe()
    path = tmp_path / "observations.sqlite3"
    spool = _spool(path, writer, bus)
    await spool.open()
    assert spool._conn is not None
    pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL from now on
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop, drain_timeout_s=1))
    spool.submit_many(_obs(i) for i in range(500))
    await _until(lambda: spool.disk_error is not None)
    assert "full" in (spool.disk_error or "")
    await _until(lambda: spool.pending == 0)  # written to the store from memory
    assert writer.values == [float(i) for i in range(500)]
    _balanced(spool)
    stop.set()
    await task
    lines = [e.text for e in seen.drain() if isinstance(e, LogLine)]
    assert any(e.startswith("store observations:test: cannot write spool") for e in lines)


def test_check_spool_dir_names_the_problem(tmp_path: Path) -> None:
    assert check_spool_dir(tmp_path / "new" / "spool") is None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    problem = check_spool_dir(blocker / "spool")
    assert problem is not None and str(blocker) in problem


def test_read_spool_files_reports_depth_age_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_writer(tmp_path / "var" / "spool" / "postgres" / "observations.sqlite3", 2)
    monkeypatch.chdir(tmp_path)
    found = read_spool_files(Path("var/spool"))  # relative, as the default is
    entry = found["observations:postgres"]
    assert entry["depth"] == 200 and entry["bytes_on_disk"] > 0
    assert entry["oldest_age_s"] is not None and entry["oldest_age_s"] >= 0


def test_check_shows_each_spool_depth_age_and_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _crash_writer(tmp_path / "var" / "spool" / "postgres" / "observations.sqlite3", 3)
    config = tmp_path / "console.yaml"
    config.write_text(
        "stores:\n"
        f"  sqlite_path: {tmp_path / 'var' / 'platform.sqlite3'}\n"
        f"  blob_dir: {tmp_path / 'var' / 'blobs'}\n"
    )
    assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("observations:postgres")]
    depth, age, size = row.split()[1:]
    assert depth == "300" and age.endswith("s") and int(size) > 0
    assert main(["check", "--json", "-c", str(config)]) == 0
    rows = json.loads(capsys.readouterr().out)
    [postgres] = [r for r in rows if r["name"] == "postgres"]
    assert postgres["spool"]["observations:postgres"]["depth"] == 300
