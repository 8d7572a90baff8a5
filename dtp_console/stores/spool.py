"""A bounded per-store spool: callers submit without waiting, a flush task writes batches.

`submit()` is synchronous and never blocks: the record joins a queue. The
flush task writes up to `batch_size` records at a time — at once when a batch
is full, otherwise after `flush_interval_s`. A failed write puts the batch back
at the front and retries after a jittered exponential backoff. The spool keeps
at most `max_records` (queued plus in flight); beyond that the oldest are
dropped, counted and logged. At every moment
`submitted == written + dropped + pending`: nothing is silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from dtp_console.backoff import Backoff
from dtp_console.events import OpsLog
from dtp_console.stores.protocols import StoreError
from dtp_console.urls import mask_url

__all__ = [
    "Spool",
    "SpoolStats",
    "reason_of",
    "sleep_until",
]

_T = TypeVar("_T")


async def sleep_until(event: asyncio.Event, seconds: float) -> None:
    """Wait for `event`, at most `seconds` (a spool's flush interval or backoff)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A snapshot of a spool's counters."""

    name: str
    pending: int
    """Queued or in flight: not written yet, not dropped."""
    submitted: int
    written: int
    retries: int
    """Failed write attempts (each retried later)."""
    dropped: int
    """Records dropped because the spool was full, or still pending at shutdown."""
    last_error: str | None
    last_success: float | None
    """Epoch seconds of the last successful write."""
    kind: str = "memory"
    """`memory` or `disk`."""
    replayed: int = 0
    """Records found on disk at start (part of `submitted`)."""
    torn: int = 0
    """Unreadable records skipped (part of `dropped`)."""
    torn_writes: int = 0
    """Torn last writes found at start (rolled back by SQLite)."""
    on_disk: int = 0
    """Records in the spool file now."""
    bytes_on_disk: int = 0
    """Size of the spool file and its WAL."""
    oldest_age_s: float | None = None
    """Seconds the oldest unwritten record has waited (disk spool)."""
    disk_error: str | None = None
    """Why the spool file cannot be written now."""
    path: str | None = None
    """The spool file (disk spool)."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready counters (the stats JSON's `stores.spools` entries)."""
        return {
            "kind": self.kind,
            "replayed": self.replayed,
            "torn": self.torn,
            "torn_writes": self.torn_writes,
            "on_disk": self.on_disk,
            "bytes_on_disk": self.bytes_on_disk,
            "oldest_age_s": None if self.oldest_age_s is None else round(self.oldest_age_s, 3),
            "disk_error": self.disk_error,
            "path": self.path,
            "pending": self.pending,
            "submitted": self.submitted,
            "written": self.written,
            "retries": self.retries,
            "dropped": self.dropped,
            "last_error": self.last_error,
            "last_success": self.last_success,
        }


def reason_of(exc: BaseException) -> str:
    """One masked line saying why a write failed."""
    if isinstance(exc, StoreError):
        return mask_url(str(exc))
    return mask_url(f"{type(exc).__name__}: {exc}".splitlines()[0])


class Spool(Generic[_T]):
    """Bounded queue of records for one store, written in batches by `run()`."""

    durable = False

    def __init__(
        self,
        name: str,
        write: Callable[[list[_T]], Awaitable[None]],
        log: OpsLog,
        *,
        max_records: int = 100_000,
        batch_size: int = 5_000,
        flush_interval_s: float = 0.5,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._write = write
        self._log = log
        self._max = max_records
        self._batch_size = max(1, min(batch_size, max_records))
        self._flush_interval = flush_interval_s
        self._backoff = Backoff(retry_initial_s, retry_max_s, rng)
        self._queue: deque[_T] = deque()
        self._inflight = 0
        self._nonempty = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = asyncio.Event()
        self.submitted = 0
        """Records handed to `submit()`."""
        self.written = 0
        """Records the store accepted."""
        self.retries = 0
        """Failed write attempts."""
        self.dropped = 0
        """Records dropped (spool full, or unwritten at shutdown)."""
        self.last_error: str | None = None
        """Reason of the last failed write."""
        self.last_success: float | None = None
        """Epoch seconds of the last successful write."""

    @property
    def pending(self) -> int:
        """Records queued or in flight."""
        return len(self._queue) + self._inflight

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
        )

    def submit(self, record: _T) -> None:
        """Queue one record (never blocks; drops the oldest when the spool is full)."""
        self.submitted += 1
        self._queue.append(record)
        self._after_submit()

    def submit_many(self, records: Iterable[_T]) -> None:
        """Queue several records."""
        before = len(self._queue)
        self._queue.extend(records)
        self.submitted += len(self._queue) - before
        self._after_submit()

    def _after_submit(self) -> None:
        over = self.pending - self._max
        if over > 0:
            self._drop(over, "spool full")
        if self._queue and not self._nonempty.is_set():
            self._nonempty.set()
        if len(self._queue) >= self._batch_size and not self._full.is_set():
            self._full.set()

    def _drop(self, count: int, why: str) -> None:
        count = min(count, len(self._queue))
        for _ in range(count):
            self._queue.popleft()
        self.dropped += count
        self._log.limited(
            "WARN",
            f"spool-drop:{self.name}",
            f"store {self.name}: {why} ({self._max} records), dropped {count} oldest "
            f"({self.dropped} dropped so far)",
        )

    async def run(self, stop: asyncio.Event, drain_timeout_s: float = 5.0) -> None:
        """Write batches until `stop` is set, then drain for up to `drain_timeout_s`."""
        watcher = asyncio.create_task(self._watch(stop), name=f"spool-{self.name}-stop")
        try:
            await self._loop()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self.drain(drain_timeout_s)

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping.set()
        self._nonempty.set()
        self._full.set()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self._queue:
                self._nonempty.clear()
                await self._nonempty.wait()
                continue
            if len(self._queue) < self._batch_size:
                self._full.clear()
                await sleep_until(self._full, self._flush_interval)
                if self._stopping.is_set():
                    return
            if not await self.flush_once():
                await sleep_until(self._stopping, self._backoff.next())

    async def flush_once(self) -> bool:
        """Write one batch; False (batch back at the front) when the store failed."""
        if not self._queue:
            return True
        batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
        self._inflight = len(batch)
        try:
            await self._write(batch)
        except Exception as exc:
            self._inflight = 0
            self._queue.extendleft(reversed(batch))
            self._fail(exc)
            return False
        except BaseException:  # cancelled mid-write: keep the batch for a later attempt
            self._inflight = 0
            self._queue.extendleft(reversed(batch))
            raise
        self._inflight = 0
        self.written += len(batch)
        self.last_success = time.time()
        if self._backoff.failures:
            self._log.emit(
                "INFO",
                f"store {self.name} writes again after {self._backoff.failures} failed "
                f"attempt(s); {self.pending} still spooled",
            )
        self._backoff.reset()
        self.last_error = None
        return True

    def _fail(self, exc: BaseException) -> None:
        self.retries += 1
        self.last_error = reason_of(exc)
        self._log.limited(
            "WARN",
            f"spool-fail:{self.name}",
            f"store {self.name} write failed: {self.last_error}; "
            f"{self.pending} record(s) spooled, retrying with backoff",
        )

    async def drain(self, timeout_s: float) -> None:
        """Write what is queued, one attempt per batch, within `timeout_s`; count the rest."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._queue:
                    if not await self.flush_once():
                        break
        except TimeoutError:
            self.last_error = f"shutdown drain timed out after {timeout_s:g}s"
        left = len(self._queue)
        if left:
            self._queue.clear()
            self.dropped += left
            self._log.emit(
                "FAIL",
                f"store {self.name}: {left} spooled record(s) not written at shutdown "
                f"({self.last_error or 'no time left'})",
            )
