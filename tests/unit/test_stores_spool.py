"""The spool: never blocks, batches, retries with backoff, bounds itself and counts every drop.

The writer here is a fake that fails on demand — only for the spool's own
behaviour; the adapters are tested against real stores.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.spool import Spool


class FlakyWriter:
    """Records batches; raises `StoreError` while `down` is set."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.down = False
        self.attempts = 0

    async def __call__(self, batch: list[int]) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.down:
            raise StoreError("postgres write observations: connection refused")
        self.batches.append(list(batch))

    @property
    def written(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


def _spool(writer: FlakyWriter, bus: Bus, **kw: float) -> Spool[int]:
    options: dict[str, float] = {
        "max_records": 100,
        "batch_size": 10,
        "flush_interval_s": 0.01,
        "retry_initial_s": 0.01,
        "retry_max_s": 0.02,
        **kw,
    }
    return Spool(
        "observations:test",
        writer,
        OpsLog(bus, window_s=60),
        max_records=int(options["max_records"]),
        batch_size=int(options["batch_size"]),
        flush_interval_s=options["flush_interval_s"],
        retry_initial_s=options["retry_initial_s"],
        retry_max_s=options["retry_max_s"],
        rng=random.Random(1),
    )


def _add_up(spool: Spool[int]) -> None:
    assert spool.submitted == spool.written + spool.dropped + spool.pending


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_submit_is_synchronous_and_batches_in_order() -> None:
    writer, bus = FlakyWriter(), Bus()
    spool = _spool(writer, bus)
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop))
    for i in range(35):
        spool.submit(i)
    await _until(lambda: spool.written == 35)
    assert writer.written == list(range(35))
    assert max(len(b) for b in writer.batches) <= 10
    stop.set()
    await task
    assert (spool.pending, spool.dropped, spool.retries) == (0, 0, 0)
    _add_up(spool)


async def test_failures_are_retried_with_backoff_and_nothing_is_lost() -> None:
    writer, bus = FlakyWriter(), Bus()
    logs = bus.subscribe()
    spool = _spool(writer, bus)
    writer.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop))
    spool.submit_many(range(25))
    await _until(lambda: spool.retries >= 3)
    assert spool.written == 0
    assert spool.pending == 25
    assert spool.last_error == "postgres write observations: connection refused"
    _add_up(spool)
    writer.down = False
    await _until(lambda: spool.written == 25)
    assert writer.written == list(range(25))  # the failed batch went back to the front
    assert spool.last_error is None
    stop.set()
    await task
    _add_up(spool)
    lines = [e.render() for e in logs.drain() if isinstance(e, LogLine)]
    assert any(line.startswith("WARN store observations:test write failed") for line in lines)
    assert any("writes again after" in line for line in lines)


async def test_bound_drops_oldest_and_counts_them() -> None:
    writer, bus = FlakyWriter(), Bus()
    logs = bus.subscribe()
    spool = _spool(writer, bus, max_records=50)
    writer.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop))
    spool.submit_many(range(30))
    await _until(lambda: spool.retries >= 1)
    for i in range(30, 80):
        spool.submit(i)
    assert spool.pending == 50
    assert spool.dropped == 30
    _add_up(spool)
    writer.down = False
    await _until(lambda: spool.pending == 0)
    assert writer.written == list(range(30, 80))  # the oldest were dropped, the newest kept
    stop.set()
    await task
    _add_up(spool)
    drops = [e.render() for e in logs.drain() if isinstance(e, LogLine) and "dropped" in e.text]
    assert drops and drops[0].startswith("WARN store observations:test: spool full (50 records)")


async def test_shutdown_drains_what_it_can_and_counts_the_rest() -> None:
    writer, bus = FlakyWriter(), Bus()
    logs = bus.subscribe()
    spool = _spool(writer, bus, flush_interval_s=10.0)
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop))
    spool.submit_many(range(5))  # waits for the flush interval …
    await asyncio.sleep(0.01)
    stop.set()  # … but the drain writes them
    await task
    assert writer.written == list(range(5))

    down = FlakyWriter()
    down.down = True
    spool = _spool(down, bus, flush_interval_s=10.0)
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop, drain_timeout_s=0.5))
    spool.submit_many(range(7))
    await asyncio.sleep(0.01)
    stop.set()
    await task
    assert (spool.written, spool.dropped, spool.pending) == (0, 7, 0)
    _add_up(spool)
    fails = [e.render() for e in logs.drain() if isinstance(e, LogLine) and e.level == "FAIL"]
    assert fails == [
        "FAIL store observations:test: 7 spooled record(s) not written at shutdown "
        "(postgres write observations: connection refused)"
    ]


async def test_a_slow_writer_never_blocks_submit() -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def slow(batch: list[int]) -> None:
        await gate.wait()
        seen.extend(batch)

    bus = Bus()
    spool: Spool[int] = Spool("events:slow", slow, OpsLog(bus), max_records=1_000, batch_size=100)
    stop = asyncio.Event()
    task = asyncio.create_task(spool.run(stop))
    for i in range(5_000):  # no await: the caller is never suspended
        spool.submit(i)
    assert spool.pending == 1_000
    assert spool.dropped == 4_000
    gate.set()
    await _until(lambda: spool.pending == 0)
    stop.set()
    await task
    assert len(seen) == 1_000
    _add_up(spool)
