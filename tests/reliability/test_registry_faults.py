"""Registry faults: files churning under a scan and a watch, a file turned folder, unreadable files.

One bad or vanishing file never stops the others: it is reported (a problem
naming the file, or a deprecation when the twin's file is gone), every other
twin still registers, and neither the scan nor the watcher crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dtp_console.events import Bus, LogLine, Subscription
from dtp_console.registry.discovery import ScanResult, TwinCatalog, scan
from dtp_console.registry.service import RegistryService
from dtp_console.registry.sqlite_repo import SqliteRepository
from dtp_console.registry.watch import TwinWatcher

pytestmark = pytest.mark.integration

PATIENCE_S = 10.0


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _twin(twin_id: str, name: str = "") -> str:
    named = f"name: {name}\n" if name else ""
    return f'"@id": {twin_id}\n{named}metadata:\n  status: active\n'


class Rig:
    """A watcher on `root` over a SQLite registry; its log lines are collected."""

    def __init__(
        self, root: Path, service: RegistryService, watcher: TwinWatcher, events: Subscription
    ) -> None:
        self.root = root
        self.service = service
        self.watcher = watcher
        self._events = events
        self.lines: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def read(self) -> list[str]:
        self.lines.extend(e.render() for e in self._events.drain() if isinstance(e, LogLine))
        return self.lines

    async def status(self, twin_id: str) -> str | None:
        twin = await self.service.find(twin_id)
        return None if twin is None else twin.status

    async def eventually(
        self, check: Callable[[], Awaitable[bool]], what: str, detail: object = None
    ) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while not await check():
            assert self.task is not None and not self.task.done(), "the watcher died"
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{what}: not within {PATIENCE_S}s; {detail or ''}; "
                    f"{self.watcher.batches} batches, {self.watcher.rechecks} folder rechecks, "
                    f"{self.watcher.resyncs} resyncs ({self.watcher.corrected} corrected); "
                    f"log: {self.read()[-5:]}"
                )
            await asyncio.sleep(0.02)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    root = tmp_path / "twins"
    _write(root / "anchor" / "twin.yaml", _twin("dt:Anchor_001"))
    repo = SqliteRepository(tmp_path / "registry.sqlite3")
    await repo.open()
    bus = Bus()
    events = bus.subscribe()
    service = RegistryService(repo, bus)
    # No resync: what the watcher's own events and folder rechecks do is what is tested.
    watcher = TwinWatcher(service, root, bus, debounce_ms=30, resync_s=0)
    rig = Rig(root, service, watcher, events)
    rig.task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.ready.wait(), PATIENCE_S)
        assert await rig.status("dt:Anchor_001") == "active"
        yield rig
    finally:
        rig.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rig.task
        await repo.close()


def _churn(root: Path, seconds: float, seed: int) -> dict[int, str | None]:
    """Create, rewrite and delete 12 twin files at random for `seconds`; the final state."""
    rng = random.Random(seed)
    final: dict[int, str | None] = dict.fromkeys(range(12))
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        step += 1
        index = rng.randrange(12)
        path = root / f"churn{index:02d}" / "twin.yaml"
        action = rng.random()
        if action < 0.25 and path.exists():
            path.unlink()
            final[index] = None
        elif action < 0.3 and path.parent.exists():
            shutil.rmtree(path.parent)
            final[index] = None
        else:
            name = f"v{step}"
            _write(path, _twin(f"dt:Churn{index:02d}_001", name))
            final[index] = name
        if step % 5 == 0:
            time.sleep(0.002)
    return final


async def test_rapid_churn_while_scanning_and_watching(rig: Rig) -> None:
    scans: list[ScanResult] = []
    churner = asyncio.create_task(asyncio.to_thread(_churn, rig.root, 1.5, seed=11))
    # Full scans race the churn (files vanish or are half-written between listing and reading).
    while not churner.done():
        scans.append(await asyncio.to_thread(scan, rig.root))
    final = await churner
    assert len(scans) >= 3
    for result in scans:
        assert "dt:Anchor_001" in result.twins, "a churning neighbour never hides a stable twin"
        for problem in result.errors:
            # Only files caught mid-change: gone between listing and reading, or half-written.
            assert "churn" in str(problem.path), problem
    settled = scan(rig.root)
    assert settled.ok, settled.problems
    alive = {i: name for i, name in final.items() if name is not None}
    assert set(settled.twins) == {"dt:Anchor_001"} | {f"dt:Churn{i:02d}_001" for i in alive}

    behind: list[str] = []

    async def _in_step() -> bool:
        behind.clear()
        for index, name in final.items():
            twin = await rig.service.find(f"dt:Churn{index:02d}_001")
            seen = None if twin is None else (twin.status, twin.name)
            if name is None:
                if twin is not None and twin.status != "deprecated":
                    behind.append(f"churn{index:02d}: file gone, registry {seen}")
            elif twin is None or twin.status != "active" or twin.name != name:
                behind.append(f"churn{index:02d}: file {name!r}, registry {seen}")
        return not behind

    # A `churnNN` removed and recreated is watched only once inotify saw it appear;
    # what happened in it before then is caught by the folder's recheck a debounce later.
    await rig.eventually(_in_step, "the registry matches the files after the churn", behind)
    assert await rig.status("dt:Anchor_001") == "active"
    assert rig.watcher.batches >= 1
    assert rig.watcher.rechecks >= 1, "recreated folders were looked at again"


async def test_twin_file_replaced_by_a_directory(rig: Rig) -> None:
    path = _write(rig.root / "lift" / "twin.yaml", _twin("dt:Lift_001"))
    await rig.eventually(lambda: _is(rig, "dt:Lift_001", "active"), "the lift registers")
    path.unlink()
    path.mkdir()
    _write(path / "notes.txt", "not a twin")
    await rig.eventually(lambda: _is(rig, "dt:Lift_001", "deprecated"), "the lift deprecates")
    assert "INFO registry: deprecated dt:Lift_001 (its file is gone)" in rig.read()
    # The watcher carries on: a new twin registers, and a full scan copes with the folder.
    _write(rig.root / "door" / "twin.yaml", _twin("dt:Door_001"))
    await rig.eventually(lambda: _is(rig, "dt:Door_001", "active"), "the door registers")
    result = scan(rig.root)
    assert set(result.twins) == {"dt:Anchor_001", "dt:Door_001"}
    assert result.ok
    # And back again: a file in its place re-registers the twin.
    shutil.rmtree(path)
    _write(path, _twin("dt:Lift_001", "back"))
    await rig.eventually(lambda: _is(rig, "dt:Lift_001", "active"), "the lift comes back")


async def _is(rig: Rig, twin_id: str, status: str) -> bool:
    return await rig.status(twin_id) == status


def _make_unreadable(path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make `path` unreadable; the words the reported problem must contain."""
    if how == "chmod 000":
        path.chmod(0)
        return "Permission denied"
    if how == "not UTF-8":
        path.write_bytes(b'"@id": dt:Bad_001\nname: \xff\xfe\n')
        return "cannot read"
    # EACCES as a non-root user gets it, for a root test run (root ignores mode bits).
    # Twin files are opened with os.open (bounded, non-blocking reads): refuse that one.
    real_open = os.open

    def _open(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(file).name == path.name and Path(file).parent.name == path.parent.name:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", _open)
    return "Permission denied"


UNREADABLE = [
    pytest.param(
        "chmod 000",
        marks=pytest.mark.skipif(
            os.geteuid() == 0, reason="root reads files whatever their mode (see the EACCES case)"
        ),
    ),
    "EACCES",
    "not UTF-8",
]


@pytest.mark.parametrize("how", UNREADABLE)
async def test_unreadable_file_is_reported_and_the_others_register(
    rig: Rig, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _write(rig.root / "bad" / "twin.yaml", _twin("dt:Bad_001"))
    expected = _make_unreadable(bad, how, monkeypatch)
    try:
        # A full scan: the bad file is a problem naming it; the others are twins.
        _write(rig.root / "good" / "twin.yaml", _twin("dt:Good_001"))
        result = TwinCatalog(rig.root).scan()
        [problem] = result.errors
        assert problem.path == bad.resolve() or problem.path == bad
        assert "cannot read" in problem.reason and expected in problem.reason, problem
        assert set(result.twins) == {"dt:Anchor_001", "dt:Good_001"}
        # The watcher: the same problem becomes one WARN line, the good twin registers.
        await rig.eventually(lambda: _is(rig, "dt:Good_001", "active"), "the good twin")

        def _warned() -> bool:
            return any(
                line.startswith("WARN registry: ") and str(bad) in line and expected in line
                for line in rig.read()
            )

        await rig.eventually(_async(_warned), "the unreadable file is reported")
        assert await rig.status("dt:Bad_001") is None
        _write(rig.root / "later" / "twin.yaml", _twin("dt:Later_001"))
        await rig.eventually(lambda: _is(rig, "dt:Later_001", "active"), "a later twin")
    finally:
        if how == "chmod 000":
            bad.chmod(0o600)


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def _check() -> bool:
        return check()

    return _check
