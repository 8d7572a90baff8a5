"""A disk-backed spool: every record in SQLite (WAL) before it is written to its store.

Same surface as `Spool` (submit without waiting, a flush task writing batches,
retries with backoff, the same counters), with the records kept in one SQLite
file per store and role (`<spool_dir>/<store>/<role>.sqlite3`):

- `submit()` appends to memory and wakes the persist task, which on the next
  loop tick writes everything submitted meanwhile as one chunk row (the
  records as one JSON array, a CRC32, the count) in one transaction, in the
  spool's own worker thread (the event loop never waits on an fsync);
- records leave the file only after the store acknowledged them (a chunk
  written in part keeps a `skip` count of the records done);
- on start, what is in the file is replayed first, in order (`replayed`);
- beyond `max_records` or `max_bytes` the oldest are dropped — counted, logged;
- a chunk whose CRC or contents do not check is skipped, its records counted
  (`torn`); a WAL file whose last frame was cut short (a
  torn last write) is counted in `torn_writes` and SQLite rolls it back;
- a spool file that cannot be written any more (read-only, disk full) is
  `disk_error` (a red badge and a log line): records then wait in memory,
  within the same bounds, and still go to the store.

Accounting: `submitted` counts what was handed to `submit()` plus what was on
disk at start (`replayed`), so `submitted == written + dropped + pending` holds
across restarts; records still pending at shutdown stay on disk, not dropped.
A record dropped for the bound but already in the file is deleted with the next
transaction; a crash before that replays it once more (every write is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import struct
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from dtp_console.backoff import Backoff
from dtp_console.events import OpsLog
from dtp_console.sqlite_conn import connect_sqlite
from dtp_console.stores.codec import decode_many, encode_many
from dtp_console.stores.spool import SpoolStats, reason_of, sleep_until

__all__ = [
    "DiskSpool",
    "SpoolDiskError",
    "check_spool_dir",
    "read_spool_files",
    "spool_path",
    "wal_torn",
]

_T = TypeVar("_T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    skip INTEGER NOT NULL DEFAULT 0,
    ts REAL NOT NULL,
    crc INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""
#: One pending change to the file: ("del", seq, 0) or ("skip", seq, records done).
_Op = tuple[str, int, int]
_WAL_HEADER = 32
_WAL_FRAME_HEADER = 24


class SpoolDiskError(Exception):
    """The spool file cannot be opened or written; `str()` names the path and why."""


def spool_path(root: Path, store: str, role: str) -> Path:
    """Where the spool of `role` for `store` lives."""
    return Path(root) / store / f"{role}.sqlite3"


def check_spool_dir(root: Path) -> str | None:
    """Why spools cannot be kept under `root` (read-only, full, not a folder); None when
    they can. Creates the folder; writes, syncs and removes a small probe file."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
        for existing in sorted(root.glob("*/*.sqlite3")):
            if not os.access(existing, os.R_OK | os.W_OK) or not os.access(
                existing.parent, os.W_OK
            ):
                return f"{existing}: not writable"
    except OSError as exc:
        return f"{exc.filename or root}: {exc.strerror or exc}"
    return None


def read_spool_files(root: Path, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Depth, oldest record age and bytes of every spool file under `root`, read-only
    (for `check`): `{"<role>:<store>": {...}}`."""
    now = time.time() if now is None else now
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(root).glob("*/*.sqlite3")):
        key = f"{path.stem}:{path.parent.name}"
        size = sum(
            Path(f"{path}{suffix}").stat().st_size
            for suffix in ("", "-wal")
            if Path(f"{path}{suffix}").exists()
        )
        entry: dict[str, Any] = {"path": str(path), "bytes_on_disk": size}
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                depth, oldest = conn.execute(
                    "SELECT coalesce(sum(n - skip), 0), min(ts) FROM spool"
                ).fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            entry["error"] = _why(exc)
        else:
            entry["depth"] = depth
            entry["oldest_age_s"] = None if oldest is None else round(max(0.0, now - oldest), 3)
        found[key] = entry
    return found


def wal_torn(path: Path) -> bool:
    """Whether `path`'s WAL file ends in a partial frame (a write cut short)."""
    wal = Path(f"{path}-wal")
    try:
        size = wal.stat().st_size
        if size <= _WAL_HEADER:
            return False
        with wal.open("rb") as handle:
            header = handle.read(_WAL_HEADER)
    except OSError:
        return False
    page_size: int = struct.unpack(">I", header[8:12])[0]
    if page_size < 512:
        return False
    return (size - _WAL_HEADER) % (_WAL_FRAME_HEADER + page_size) != 0


@dataclass(slots=True)
class _Piece(Generic[_T]):
    """Records `start .. end` of the chunk row `seq` (`n` records, `size` bytes)."""

    seq: int
    n: int
    start: int
    end: int
    records: list[_T] | None
    """The whole chunk's records when still in memory."""
    ts: float
    size: int

    def __len__(self) -> int:
        return self.end - self.start

    def take(self, k: int) -> _Piece[_T]:
        """Split off the first `k` records as a piece of their own."""
        head = _Piece(
            self.seq, self.n, self.start, self.start + k, self.records, self.ts, self.size
        )
        self.start += k
        return head

    def done_op(self) -> _Op:
        """What to change in the file once this piece is written or dropped."""
        return ("del", self.seq, 0) if self.end >= self.n else ("skip", self.seq, self.end)


class DiskSpool(Generic[_T]):
    """Records for one store in one SQLite file, written to the store in batches by `run()`."""

    durable = True

    def __init__(
        self,
        name: str,
        write: Callable[[list[_T]], Awaitable[None]],
        log: OpsLog,
        path: Path,
        *,
        max_records: int = 1_000_000,
        max_bytes: int = 256 << 20,
        batch_size: int = 5_000,
        flush_interval_s: float = 0.5,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        cache_records: int = 50_000,
        sync: Literal["normal", "full"] = "normal",
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.path = Path(path)
        self._write = write
        self._log = log
        self._max = max_records
        self._max_bytes = max_bytes
        self._batch_size = max(1, min(batch_size, max_records))
        self._flush_interval = flush_interval_s
        self._backoff = Backoff(retry_initial_s, retry_max_s, rng)
        self._disk_backoff = Backoff(retry_initial_s, retry_max_s, rng)
        self._cache_max = cache_records
        self._sync = sync
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spool-{name}")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._unsaved: deque[_T] = deque()
        self._unsaved_since: float | None = None
        self._persisting = 0
        self._queue: deque[_Piece[_T]] = deque()
        self._queued = 0
        self._disk_bytes = 0
        """Bytes of the chunk rows in the file."""
        self._inflight: list[_Piece[_T]] = []
        self._inflight_n = 0
        self._memory_inflight = 0
        self._cached = 0
        self._next_seq = 1
        self._ops: list[_Op] = []
        self._last_read: tuple[int, list[Any] | None] | None = None
        self._dirty = asyncio.Event()
        self._nonempty = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = asyncio.Event()
        self.submitted = 0
        """Records handed to `submit()`, plus those found on disk at start."""
        self.written = 0
        self.retries = 0
        self.dropped = 0
        """Records dropped: over the bound, unreadable on disk, or unsaved at shutdown."""
        self.replayed = 0
        """Records found on disk at start (written before the last stop or crash)."""
        self.torn = 0
        """Rows skipped because their bytes did not check (CRC) or decode."""
        self.torn_writes = 0
        """Torn last writes found at start (a WAL frame cut short, rolled back by SQLite)."""
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.disk_error: str | None = None
        """Why the spool file cannot be written now; None while it can."""

    # -- lifetime -----------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def open(self) -> None:
        """Open (or create) the file and load what it holds; `SpoolDiskError` when it cannot."""
        await self._in_thread(self.open_sync)

    def open_sync(self) -> None:
        """`open()` in the calling thread (the start-up check uses it)."""
        torn = wal_torn(self.path)
        try:
            conn = connect_sqlite(self.path, synchronous=self._sync)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolDiskError(f"{self.path}: {_why(exc)}") from None
        try:
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")  # proves the file is writable now
            conn.execute("COMMIT")
            rows = conn.execute(
                "SELECT seq, n, skip, ts, length(body) FROM spool ORDER BY seq"
            ).fetchall()
        except (OSError, sqlite3.Error) as exc:
            conn.close()
            raise SpoolDiskError(f"{self.path}: {_why(exc)}") from None
        self._conn = conn
        if torn:
            self.torn_writes += 1
            self._log.emit(
                "WARN",
                f"store {self.name}: spool {self.path} ended in a torn write (cut short); "
                "SQLite rolled it back, the records before it are replayed",
            )
        for seq, n, skip, ts, size in rows:
            if skip < n:
                self._queue.append(_Piece(seq, n, skip, n, None, ts, size))
            else:
                self._ops.append(("del", seq, 0))
        self._queued = sum(len(piece) for piece in self._queue)
        self._disk_bytes = sum(r[4] for r in rows)
        self._next_seq = (rows[-1][0] + rows[-1][1]) if rows else 1
        self.replayed = self.submitted = self._queued
        if self._queued:
            self._nonempty.set()
            self._log.emit(
                "INFO",
                f"store {self.name}: {self._queued} spooled record(s) found on disk "
                f"({self._disk_bytes} bytes); replaying them first",
            )

    def close_sync(self) -> None:
        """Close the file (checkpoints the WAL)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @property
    def closed(self) -> bool:
        """Whether `close()` ran (after it, nothing more reaches the file)."""
        return self._closed

    async def close(self) -> None:
        """Close the file and the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._in_thread(self.close_sync)
        self._pool.shutdown(wait=False)

    async def save_and_close(self) -> None:
        """For a spool whose `run()` never ran: save what is in memory, then close."""
        if self._closed:
            return
        await self.persist_once()
        self._drop_unsaved("could not be saved to the spool at shutdown")
        await self.close()

    def _drop_unsaved(self, how: str) -> None:
        """At shutdown: what is still only in memory is lost; count it and say why."""
        lost = len(self._unsaved)
        if not lost:
            return
        self._unsaved.clear()
        self.dropped += lost
        why = self.disk_error or self.last_error
        self._log.emit("FAIL", f"store {self.name}: {lost} record(s) {how} ({why})")

    # -- counters -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records not written to the store yet and not dropped (memory and disk)."""
        return (
            len(self._unsaved)
            + self._persisting
            + self._queued
            + self._inflight_n
            + self._memory_inflight
        )

    @property
    def on_disk(self) -> int:
        """Records in the spool file now."""
        return self._queued + self._inflight_n

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Seconds the oldest unwritten record has waited; None when nothing waits."""
        now = time.time() if now is None else now
        stamps = [s.ts for s in self._inflight[:1]] + [s.ts for s in list(self._queue)[:1]]
        if self._unsaved_since is not None:
            stamps.append(self._unsaved_since)
        return max(0.0, now - min(stamps)) if stamps else None

    def file_bytes(self) -> int:
        """Bytes of the spool file and its WAL on disk."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    def stats(self) -> SpoolStats:
        """The counters now."""
        return SpoolStats(
            self.name,
            self.pending,
            self.submitted,
            self.written,
            self.retries,
            self.dropped,
            self.last_error,
            self.last_success,
            kind="disk",
            replayed=self.replayed,
            torn=self.torn,
            torn_writes=self.torn_writes,
            on_disk=self.on_disk,
            bytes_on_disk=self.file_bytes(),
            oldest_age_s=self.oldest_age_s(),
            disk_error=self.disk_error,
            path=str(self.path),
        )

    # -- intake -------------------------------------------------------------------------

    def submit(self, record: _T) -> None:
        """Queue one record (never blocks); it is on disk after the next loop tick."""
        self.submitted += 1
        self._unsaved.append(record)
        self._after_submit()

    def submit_many(self, records: Iterable[_T]) -> None:
        """Queue several records."""
        before = len(self._unsaved)
        self._unsaved.extend(records)
        self.submitted += len(self._unsaved) - before
        self._after_submit()

    def _after_submit(self) -> None:
        if self._unsaved_since is None and self._unsaved:
            self._unsaved_since = time.time()
        self._dirty.set()
        if self.pending > self._max:
            self._enforce_bounds()
        if self.disk_error is not None and self._unsaved:
            self._nonempty.set()  # written from memory while the disk is failing

    def _enforce_bounds(self) -> None:
        over = self.pending - self._max
        count = 0
        # Bytes: whole chunks, oldest first (a chunk's bytes leave the file with its row).
        while self._queue and self._disk_bytes > self._max_bytes:
            piece = self._queue.popleft()
            count += self._dropped_piece(piece)
            over -= len(piece)
        while self._queue and over > 0:
            head = self._queue[0]
            piece = head.take(min(over, len(head)))
            if not len(head):
                self._queue.popleft()
            count += self._dropped_piece(piece)
            over -= len(piece)
        while over > 0 and self._unsaved:
            self._unsaved.popleft()
            over -= 1
            count += 1
        if count:
            self.dropped += count
            self._dirty.set()
            self._log.limited(
                "WARN",
                f"spool-drop:{self.name}",
                f"store {self.name}: spool full ({self._max} records, {self._max_bytes} bytes), "
                f"dropped {count} oldest ({self.dropped} dropped so far)",
            )

    def _dropped_piece(self, piece: _Piece[_T]) -> int:
        self._queued -= len(piece)
        self._done(piece)
        return len(piece)

    def _done(self, piece: _Piece[_T]) -> None:
        """`piece` left the spool (written or dropped): queue the file change."""
        op = piece.done_op()
        if op[0] == "del":
            self._disk_bytes -= piece.size
            if piece.records is not None:
                self._cached -= piece.n
        self._ops.append(op)

    # -- persist (memory → disk) ----------------------------------------------------------

    def _apply_sync(self, conn: sqlite3.Connection, ops: list[_Op]) -> None:
        conn.executemany(
            "DELETE FROM spool WHERE seq = ?", [(seq,) for kind, seq, _ in ops if kind == "del"]
        )
        conn.executemany(
            "UPDATE spool SET skip = max(skip, ?) WHERE seq = ?",
            [(done, seq) for kind, seq, done in ops if kind == "skip"],
        )

    def _persist_sync(self, batch: list[_T], first: int, ops: list[_Op]) -> list[int]:
        """`batch` as chunk rows of at most `batch_size` records, and the pending changes,
        in one transaction; returns each chunk's bytes."""
        conn = self._conn
        if conn is None:
            raise SpoolDiskError(f"{self.path}: spool is not open")
        size = self._batch_size
        now = time.time()
        rows = []
        for i in range(0, len(batch), size):
            body = encode_many(batch[i : i + size])
            rows.append((first + i, len(batch[i : i + size]), now, zlib.crc32(body), body))
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO spool (seq, n, skip, ts, crc, body) VALUES (?, ?, 0, ?, ?, ?)", rows
            )
            self._apply_sync(conn, ops)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return [len(r[4]) for r in rows]

    async def persist_once(self) -> bool:
        """Write what was submitted since the last call to disk; False when the disk failed."""
        if not self._unsaved and not self._ops:
            return True
        batch = list(self._unsaved)
        self._unsaved.clear()
        since, self._unsaved_since = self._unsaved_since, None
        ops, self._ops = self._ops, []
        self._persisting = len(batch)
        first = self._next_seq
        try:
            sizes = await self._in_thread(lambda: self._persist_sync(batch, first, ops))
        except (sqlite3.Error, OSError, SpoolDiskError) as exc:
            self._persisting = 0
            self._unsaved.extendleft(reversed(batch))
            if self._unsaved:
                self._unsaved_since = since
            self._ops = ops + self._ops
            self._disk_failed(exc)
            return False
        finally:
            self._persisting = 0
        self._next_seq += len(batch)
        if self.disk_error is not None:
            self._log.emit("INFO", f"store {self.name}: spool {self.path} writable again")
            self.disk_error = None
            self._disk_backoff.reset()
        if batch:
            ts = since or time.time()
            for k, size in enumerate(sizes):
                chunk = batch[k * self._batch_size : (k + 1) * self._batch_size]
                n = len(chunk)
                cache = self._cached + n <= self._cache_max
                seq = first + k * self._batch_size
                self._queue.append(_Piece(seq, n, 0, n, chunk if cache else None, ts, size))
                if cache:
                    self._cached += n
                self._queued += n
                self._disk_bytes += size
            self._enforce_bounds()
            self._nonempty.set()
            if self._queued >= self._batch_size:
                self._full.set()
        return True

    def _disk_failed(self, exc: BaseException) -> None:
        self.disk_error = f"spool {self.path}: {_why(exc)}"
        self._log.limited(
            "FAIL",
            f"spool-disk:{self.name}",
            f"store {self.name}: cannot write {self.disk_error}; "
            f"{len(self._unsaved)} record(s) wait in memory",
        )
        if self.pending > self._max:
            self._enforce_bounds()
        if self._unsaved:
            self._nonempty.set()

    async def _persist_loop(self) -> None:
        while not self._stopping.is_set():
            await self._dirty.wait()
            self._dirty.clear()
            if not await self.persist_once():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._disk_backoff.next()):
                        await self._stopping.wait()
                self._dirty.set()

    # -- flush (disk → store) -------------------------------------------------------------

    def _load_sync(self, pieces: list[_Piece[_T]]) -> tuple[list[_T], int]:
        """The records of `pieces` (read from the file when not in memory) and how many
        of them could not be read back (a chunk whose CRC or contents do not check)."""
        conn = self._conn
        if conn is None:
            raise SpoolDiskError(f"{self.path}: spool is not open")
        out: list[_T] = []
        bad = 0
        for piece in pieces:
            records: list[Any] | None = piece.records
            if records is None:
                # A chunk read for one batch is likely needed by the next: keep the last one.
                if self._last_read is None or self._last_read[0] != piece.seq:
                    self._last_read = (piece.seq, self._read_chunk(conn, piece))
                records = self._last_read[1]
            if records is None:
                bad += len(piece)
            else:
                out.extend(records[piece.start : piece.end])
        return out, bad

    @staticmethod
    def _read_chunk(conn: sqlite3.Connection, piece: _Piece[Any]) -> list[Any] | None:
        row = conn.execute("SELECT crc, body FROM spool WHERE seq = ?", (piece.seq,)).fetchone()
        if row is None or zlib.crc32(row[1]) != row[0]:
            return None
        try:
            records = decode_many(row[1])
        except ValueError:
            return None
        return records if len(records) == piece.n else None

    def _commit_sync(self, ops: list[_Op]) -> None:
        conn = self._conn
        if conn is None:
            raise SpoolDiskError(f"{self.path}: spool is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._apply_sync(conn, ops)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _take(self) -> list[_Piece[_T]]:
        pieces: list[_Piece[_T]] = []
        left = self._batch_size
        while left and self._queue:
            head = self._queue[0]
            piece = head.take(min(left, len(head)))
            if not len(head):
                self._queue.popleft()
            pieces.append(piece)
            left -= len(piece)
        n = sum(len(p) for p in pieces)
        self._queued -= n
        self._inflight, self._inflight_n = pieces, n
        return pieces

    def _put_back(self, pieces: list[_Piece[_T]]) -> None:
        # A piece split off a chunk goes back whole: merge it with the rest of its chunk.
        for piece in reversed(pieces):
            head = self._queue[0] if self._queue else None
            if head is not None and head.seq == piece.seq and head.start == piece.end:
                head.start = piece.start
            else:
                self._queue.appendleft(piece)
        self._queued += sum(len(p) for p in pieces)
        self._inflight, self._inflight_n = [], 0

    async def flush_once(self) -> bool:
        """Write one batch; False (batch kept, in order) when the store or the disk failed."""
        if not self._queue:
            return await self._flush_memory()
        pieces = self._take()
        n = self._inflight_n
        try:
            batch, bad = await self._in_thread(lambda: self._load_sync(pieces))
        except (sqlite3.Error, OSError, SpoolDiskError) as exc:
            self._put_back(pieces)
            self._fail(exc)
            return False
        except BaseException:
            self._put_back(pieces)
            raise
        try:
            if batch:
                await self._write(batch)
        except Exception as exc:
            self._put_back(pieces)
            self._fail(exc)
            return False
        except BaseException:
            self._put_back(pieces)
            raise
        self._inflight, self._inflight_n = [], 0
        self.written += n - bad
        if bad:
            self.torn += bad
            self.dropped += bad
            self._log.emit(
                "WARN",
                f"store {self.name}: skipped {bad} unreadable record(s) in {self.path} "
                f"({self.torn} so far)",
            )
        for piece in pieces:
            self._done(piece)
        ops, self._ops = self._ops, []
        try:
            await self._in_thread(lambda: self._commit_sync(ops))
        except (sqlite3.Error, OSError, SpoolDiskError) as exc:
            self._ops = ops + self._ops  # retried with the next persist; a crash replays them
            self._disk_failed(exc)
        self._succeeded()
        return True

    async def _flush_memory(self) -> bool:
        """While the disk is failing: write unsaved records straight from memory."""
        if self.disk_error is None or not self._unsaved:
            return True
        batch = [self._unsaved.popleft() for _ in range(min(self._batch_size, len(self._unsaved)))]
        self._memory_inflight = len(batch)
        try:
            await self._write(batch)
        except Exception as exc:
            self._memory_inflight = 0
            self._unsaved.extendleft(reversed(batch))
            self._fail(exc)
            return False
        except BaseException:
            self._memory_inflight = 0
            self._unsaved.extendleft(reversed(batch))
            raise
        self._memory_inflight = 0
        if not self._unsaved:
            self._unsaved_since = None
        self.written += len(batch)
        self._succeeded()
        return True

    def _succeeded(self) -> None:
        self.last_success = time.time()
        if self._backoff.failures:
            self._log.emit(
                "INFO",
                f"store {self.name} writes again after {self._backoff.failures} failed "
                f"attempt(s); {self.pending} still spooled",
            )
        self._backoff.reset()
        self.last_error = None

    def _fail(self, exc: BaseException) -> None:
        self.retries += 1
        self.last_error = reason_of(exc)
        self._log.limited(
            "WARN",
            f"spool-fail:{self.name}",
            f"store {self.name} write failed: {self.last_error}; "
            f"{self.pending} record(s) spooled, retrying with backoff",
        )

    # -- run ----------------------------------------------------------------------------

    def _has_work(self) -> bool:
        return bool(self._queue) or (self.disk_error is not None and bool(self._unsaved))

    async def run(self, stop: asyncio.Event, drain_timeout_s: float = 5.0) -> None:
        """Persist and write batches until `stop`; then drain, keep the rest on disk, close."""
        watcher = asyncio.create_task(self._watch(stop), name=f"spool-{self.name}-stop")
        persister = asyncio.create_task(self._persist_loop(), name=f"spool-{self.name}-disk")
        try:
            await self._loop()
        finally:
            self._stopping.set()
            self._dirty.set()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            # The saver ends by itself once stopping is set, after the save it is in.
            # Cancelling it mid-save would leave records in the file that no counter
            # knows of (and its thread still using the connection the drain then uses).
            with contextlib.suppress(asyncio.CancelledError):
                await persister
        await self.drain(drain_timeout_s)

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping.set()
        self._nonempty.set()
        self._full.set()
        self._dirty.set()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self._has_work():
                self._nonempty.clear()
                await self._nonempty.wait()
                continue
            if self._queued < self._batch_size:
                self._full.clear()
                await sleep_until(self._full, self._flush_interval)
                if self._stopping.is_set():
                    return
            if not await self.flush_once():
                await sleep_until(self._stopping, self._backoff.next())

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: save what is in memory, write what the store takes within
        `timeout_s`, keep the rest on disk for the next start, close the file."""
        try:
            async with asyncio.timeout(timeout_s):
                # Records still arrive while the others stop (the store feed hands over
                # the bus's last events): save and write until nothing is left.
                while True:
                    await self.persist_once()
                    if not self._has_work() or not await self.flush_once():
                        break
        except TimeoutError:
            self.last_error = f"shutdown drain timed out after {timeout_s:g}s"
        if self._ops:
            await self.persist_once()
        self._drop_unsaved("could neither be saved to the spool nor written at shutdown")
        if self.on_disk:
            self._log.emit(
                "INFO",
                f"store {self.name}: {self.on_disk} record(s) kept in {self.path} "
                "for the next start",
            )
        await self.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
