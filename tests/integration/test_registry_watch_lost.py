"""Watch mode when inotify loses a change: the registry still converges.

inotify watches a folder created under the root only once it has seen it
appear, so a file written or deleted in the new folder before then is never
reported; a kernel queue that overflows drops events too. Real inotify loses
them only now and then (a loaded machine), so these tests put a stand-in for
`watchfiles.awatch` in its place — same contract: an async iterator of batches,
each a set of `(Change, path)` — that yields exactly the batches a test feeds
it, and leaves out the change it "lost".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from watchfiles import Change

from dtp_console.events import Bus, LogLine, Subscription
from dtp_console.registry import watch as watch_module
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.runner import run_registry
from dtp_console.registry.service import RegistryService, SyncReport
from dtp_console.registry.sqlite_repo import SqliteRepository
from dtp_console.registry.watch import TwinWatcher

pytestmark = pytest.mark.integration

#: The registry is stale "forever" when not right within this (the recheck takes ~0.1 s).
PATIENCE_S = 5.0

Batch = set[tuple[Change, str]]


class LossyInotify:
    """Stands in for `watchfiles.awatch`: yields the batches fed to it, nothing else."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[Batch] = asyncio.Queue()
        self.armed = 0

    def __call__(
        self,
        *_paths: Path,
        watch_filter: Callable[[Change, str], bool] | None = None,
        stop_event: asyncio.Event | None = None,
        **_options: object,
    ) -> AsyncIterator[Batch]:
        self.armed += 1
        return self._batches(watch_filter)

    async def _batches(
        self, watch_filter: Callable[[Change, str], bool] | None
    ) -> AsyncIterator[Batch]:
        while True:
            batch = await self.batches.get()
            yield {(c, p) for c, p in batch if watch_filter is None or watch_filter(c, p)}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _twin(twin_id: str) -> str:
    return f'"@id": {twin_id}\nmetadata:\n  status: active\n'


class Rig:
    def __init__(self, tmp_path: Path, inotify: LossyInotify) -> None:
        self.root = tmp_path / "twins"
        self.tmp_path = tmp_path
        self.inotify = inotify
        self.after_batch: Callable[[SyncReport], None] = lambda _report: None
        self.service: RegistryService
        self.watcher: TwinWatcher
        self.events: Subscription
        self.lines: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def read(self) -> list[str]:
        self.lines.extend(e.render() for e in self.events.drain() if isinstance(e, LogLine))
        return self.lines

    async def status(self, twin_id: str) -> str | None:
        twin = await self.service.find(twin_id)
        return None if twin is None else twin.status

    async def eventually(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while not await check():
            assert self.task is not None and not self.task.done(), "the watcher died"
            if time.monotonic() > deadline:
                stats = {k: getattr(self.watcher, k, "-") for k in _STATS}
                pytest.fail(f"{what}: not within {PATIENCE_S}s; {stats}; log: {self.read()[-5:]}")
            await asyncio.sleep(0.02)

    async def is_(self, twin_id: str, status: str | None) -> bool:
        return await self.status(twin_id) == status


_STATS = ("batches", "rechecks", "resyncs", "corrected")


@pytest.fixture
async def lossy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    inotify = LossyInotify()
    monkeypatch.setattr(watch_module, "awatch", inotify)
    rig = Rig(tmp_path, inotify)
    _write(rig.root / "anchor" / "twin.yaml", _twin("dt:Anchor_001"))
    repo = SqliteRepository(tmp_path / "registry.sqlite3")
    await repo.open()

    async def _start(**options: object) -> Rig:
        bus = Bus()
        rig.events = bus.subscribe()
        rig.service = RegistryService(repo, bus)
        rig.watcher = TwinWatcher(
            rig.service,
            rig.root,
            bus,
            debounce_ms=30,
            on_report=lambda report: rig.after_batch(report),
            **options,  # type: ignore[arg-type]
        )
        rig.task = asyncio.create_task(rig.watcher.run())
        await asyncio.wait_for(rig.watcher.ready.wait(), PATIENCE_S)
        assert inotify.armed == 1, "the stand-in replaced watchfiles"
        assert await rig.status("dt:Anchor_001") == "active"
        return rig

    try:
        yield _start
    finally:
        if rig.task is not None:
            rig.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rig.task
        await repo.close()


async def test_a_deletion_lost_in_a_new_folder_is_caught_by_the_second_look(
    lossy: Callable[..., Awaitable[Rig]],
) -> None:
    # The churn test's failure: `churnNN` recreated, its twin file written and read
    # with the folder's batch, then deleted before inotify watched the new folder.
    rig = await lossy()
    folder = rig.root / "fresh"
    _write(folder / "twin.yaml", _twin("dt:Fresh_001"))

    def _delete_unseen(report: SyncReport) -> None:
        if "dt:Fresh_001" in report.created:
            (folder / "twin.yaml").unlink()  # no event: the folder is not watched yet

    rig.after_batch = _delete_unseen
    await rig.inotify.batches.put({(Change.added, str(folder))})
    await rig.eventually(lambda: rig.is_("dt:Fresh_001", "deprecated"), "the lost deletion")
    assert await rig.status("dt:Anchor_001") == "active"


async def test_a_file_written_unseen_in_a_new_folder_is_caught_by_the_second_look(
    lossy: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await lossy()
    folder = rig.root / "fresh"
    folder.mkdir()

    def _write_unseen(report: SyncReport) -> None:
        if not (folder / "twin.yaml").exists():
            _write(folder / "twin.yaml", _twin("dt:Fresh_001"))  # no event either

    rig.after_batch = _write_unseen
    await rig.inotify.batches.put({(Change.added, str(folder))})
    await rig.eventually(lambda: rig.is_("dt:Fresh_001", "active"), "the unseen file")


async def test_a_recreated_folder_with_fewer_files_drops_the_missing_ones(
    lossy: Callable[..., Awaitable[Rig]],
) -> None:
    # `rm -r lift; mkdir lift` with only the folder's events seen: the old file's twin goes.
    rig = await lossy()
    lift = _write(rig.root / "lift" / "twin.yaml", _twin("dt:Lift_001"))
    await rig.inotify.batches.put({(Change.added, str(lift))})
    await rig.eventually(lambda: rig.is_("dt:Lift_001", "active"), "the lift registers")
    lift.unlink()
    await rig.inotify.batches.put({(Change.deleted, str(lift.parent))})
    await rig.eventually(lambda: rig.is_("dt:Lift_001", "deprecated"), "the lift's twin goes")


async def test_a_file_deleted_after_it_stopped_parsing_deprecates_its_twin(
    lossy: Callable[..., Awaitable[Rig]],
) -> None:
    # Also the churn test's failure: a rewrite read half-written (an empty file) keeps the
    # twin registered; the file's deletion next must still deprecate it. No event is lost.
    rig = await lossy(resync_s=0)
    pump = _write(rig.root / "pump" / "twin.yaml", _twin("dt:Pump_001"))
    await rig.inotify.batches.put({(Change.added, str(pump))})
    await rig.eventually(lambda: rig.is_("dt:Pump_001", "active"), "the pump registers")
    pump.write_text("", encoding="utf-8")
    await rig.inotify.batches.put({(Change.modified, str(pump))})
    await rig.eventually(lambda: _true(any("empty" in x for x in rig.read())), "the warning")
    assert await rig.status("dt:Pump_001") == "active", "a broken file keeps its twin"
    pump.unlink()
    await rig.inotify.batches.put({(Change.deleted, str(pump))})
    await rig.eventually(lambda: rig.is_("dt:Pump_001", "deprecated"), "the pump's twin goes")


async def test_a_resync_corrects_what_no_event_reported_and_says_so_once(
    lossy: Callable[..., Awaitable[Rig]],
) -> None:
    # An overflowed kernel queue: the deletion and the edit never arrive at all.
    rig = await lossy(resync_s=0.5)
    _write(rig.root / "pump" / "twin.yaml", _twin("dt:Pump_001"))
    await rig.inotify.batches.put({(Change.added, str(rig.root / "pump"))})
    await rig.eventually(lambda: rig.is_("dt:Pump_001", "active"), "the pump registers")
    await rig.eventually(lambda: _true(rig.watcher.resyncs >= 1), "a first resync")
    assert rig.watcher.corrected == 0, "nothing to correct yet"

    # Both right after a resync, so the next one finds both.
    (rig.root / "anchor" / "twin.yaml").unlink()
    _write(rig.root / "pump" / "twin.yaml", '"@id": dt:Pump_001\nname: Renamed pump\n')
    await rig.eventually(lambda: rig.is_("dt:Anchor_001", "deprecated"), "the lost deletion")
    pump = await rig.service.find("dt:Pump_001")
    assert pump is not None and pump.name == "Renamed pump"
    resyncs = rig.watcher.resyncs
    await rig.eventually(lambda: _true(rig.watcher.resyncs >= resyncs + 2), "more resyncs")

    assert rig.watcher.corrected == 2
    said = [line for line in rig.read() if "resync corrected" in line]
    assert len(said) == 1, said
    assert "registry: resync corrected 2 twins the watcher missed" in said[0]
    assert rig.watcher.batches == 1


async def test_resync_off_scans_only_once(lossy: Callable[..., Awaitable[Rig]]) -> None:
    rig = await lossy(resync_s=0)
    (rig.root / "anchor" / "twin.yaml").unlink()  # lost, and nothing looks again
    await asyncio.sleep(0.5)
    assert rig.watcher.resyncs == 0
    assert await rig.status("dt:Anchor_001") == "active"


async def _true(value: bool) -> bool:
    return value


async def test_the_console_worker_resyncs_every_resync_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "awatch", LossyInotify())  # reports nothing at all
    root = tmp_path / "twins"
    lift = _write(root / "lift" / "twin.yaml", _twin("dt:Lift_001"))
    config = RegistryConfig(
        twins_root=root, sqlite_path=tmp_path / "reg.sqlite3", debounce_ms=50, resync_s=1
    )
    bus = Bus()
    events = bus.subscribe()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_registry(config, bus, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), PATIENCE_S)
        lift.unlink()
        seen: list[str] = []
        deadline = time.monotonic() + PATIENCE_S
        while not any("resync corrected 1 twin the watcher missed" in x for x in seen):
            assert time.monotonic() < deadline, f"no resync within {PATIENCE_S}s: {seen}"
            assert not task.done()
            seen += [e.render() for e in events.drain() if isinstance(e, LogLine)]
            await asyncio.sleep(0.05)
        assert any("deprecated dt:Lift_001" in x for x in seen), seen
    finally:
        stop.set()
        await asyncio.wait_for(task, PATIENCE_S)
