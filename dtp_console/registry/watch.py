"""Watch the twins folder and keep the registry in step with it.

Built on `watchfiles` (inotify, debounced in Rust). The watcher is armed before
the first full scan, so nothing changed during that scan is missed. Each batch
of changes re-reads only the affected files (a compose file change re-reads
its folder's twin file, a moved folder its whole subtree), then syncs the
difference: created or edited files re-register, deleted ones deprecate their
twin. Problems go to the bus as `WARN` log lines, each once while it lasts.

inotify watches a folder created under the root only once it has seen the folder
appear, so what happens inside it before then is never reported (the folder's
own event is, and its batch reads what is there by then). Every folder a batch
names is therefore read once more a debounce later, when its watch is in place.
As the last resort — a lost event, a full kernel queue — a full scan every
`resync_s` seconds corrects the registry, logs how many twins it corrected and
counts them in `corrected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path

from watchfiles import Change, awatch

from dtp_console.events import Bus, OpsLog
from dtp_console.registry.compose import COMPOSE_FILE_NAMES
from dtp_console.registry.discovery import TWIN_FILE_NAMES, Problem, ScanResult, TwinCatalog
from dtp_console.registry.service import RegistryService, SyncReport

__all__ = ["TwinWatcher"]

_RELEVANT = frozenset(TWIN_FILE_NAMES) | frozenset(COMPOSE_FILE_NAMES)

#: A folder's second look comes a debounce after its batch, and never sooner than this.
_SETTLE_MIN_S = 0.1


def _relevant(_change: Change, path: str) -> bool:
    """Twin and compose files, and anything without a suffix (folders moved or removed)."""
    name = Path(path).name
    return name in _RELEVANT or "." not in name


class TwinWatcher:
    """Scans the root once, then applies every change under it until cancelled."""

    def __init__(
        self,
        service: RegistryService,
        root: Path,
        bus: Bus,
        *,
        debounce_ms: int = 200,
        resync_s: float = 60.0,
        on_report: Callable[[SyncReport], None] | None = None,
    ) -> None:
        self._service = service
        self._catalog = TwinCatalog(root)
        self._log = OpsLog(bus, window_s=0)
        self._debounce_ms = debounce_ms
        self._resync_s = resync_s
        self._on_report = on_report
        self._reported: set[Problem] = set()
        self._recheck: dict[Path, float] = {}
        """Folder → when (loop time) to read it once more."""
        self.ready = asyncio.Event()
        """Set once the watch is armed and the first scan is registered."""
        self.last: ScanResult | None = None
        """The latest scan."""
        self._registered: ScanResult | None = None
        """The latest scan plus the twins kept registered though their file no longer parses."""
        self.batches = 0
        """Change batches handled since the start."""
        self.rechecks = 0
        """Folders read once more after their batch (see the module docstring)."""
        self.resyncs = 0
        """Full resyncs done since the start."""
        self.corrected = 0
        """Twins a resync had to correct: changes the watcher missed."""

    @property
    def root(self) -> Path:
        """The watched folder (absolute)."""
        return self._catalog.root

    async def run(self) -> None:
        """Watch until cancelled; `FileNotFoundError` when the root does not exist."""
        if not self.root.is_dir():
            msg = f"twins folder {self.root} does not exist"
            raise FileNotFoundError(msg)
        stop = asyncio.Event()
        changes = awatch(
            self.root,
            watch_filter=_relevant,
            debounce=self._debounce_ms,
            step=min(50, self._debounce_ms),
            stop_event=stop,
        )
        # awatch sets up inotify synchronously in its first step: start it, let it
        # take that step, and only then scan, so no change can fall in between.
        pending = asyncio.ensure_future(anext(changes))
        try:
            await asyncio.sleep(0)
            if pending.done():
                pending.result()
            scan = await asyncio.to_thread(self._catalog.scan)
            self._report(await self._service.sync(scan))
            self._remember(scan)
            self.ready.set()
            loop = asyncio.get_running_loop()
            resync_at = loop.time() + self._resync_s if self._resync_s > 0 else math.inf
            while True:
                due = min([resync_at, *self._recheck.values()])
                if not pending.done() and due > loop.time():
                    timeout = None if due == math.inf else due - loop.time()
                    await asyncio.wait({pending}, timeout=timeout)
                if pending.done():
                    batch = pending.result()
                    pending = asyncio.ensure_future(anext(changes))
                    await self._apply(Path(path) for _, path in batch)
                    self.batches += 1
                now = loop.time()
                if any(at <= now for at in self._recheck.values()):
                    await self._recheck_due(now)
                if resync_at <= now:
                    await self._resync()
                    resync_at = loop.time() + self._resync_s
        finally:
            stop.set()
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
            await changes.aclose()

    async def _apply(self, paths: Iterable[Path]) -> None:
        """Re-read `paths`, sync the difference, and plan a second look at their folders."""

        def _read(paths: list[Path]) -> tuple[ScanResult, list[Path]]:
            return self._catalog.update(paths), [p for p in paths if p.is_dir()]

        scan, folders = await asyncio.to_thread(_read, list(paths))
        self._report(await self._service.sync(scan, previous=self._registered))
        self._remember(scan)
        # A folder named again later is looked at again later: its newest watch counts.
        at = asyncio.get_running_loop().time() + max(self._debounce_ms / 1000, _SETTLE_MIN_S)
        for folder in folders:
            self._recheck[folder] = at

    async def _recheck_due(self, now: float) -> None:
        """Read the folders whose second look is due (their watch is in place by now)."""
        due = [folder for folder, at in self._recheck.items() if at <= now]
        for folder in due:
            del self._recheck[folder]
        self.rechecks += len(due)
        scan = await asyncio.to_thread(self._catalog.update, due)
        self._report(await self._service.sync(scan, previous=self._registered))
        self._remember(scan)

    async def _resync(self) -> None:
        """Scan everything and sync it against the registry itself; log what it corrected."""
        scan = await asyncio.to_thread(self._catalog.scan)
        report = await self._service.sync(scan)
        self._report(report)
        self._remember(scan)
        self.resyncs += 1
        fixed = len(report.created) + len(report.updated) + len(report.deprecated)
        if fixed:
            self.corrected += fixed
            twins = "twin" if fixed == 1 else "twins"
            self._log.emit("INFO", f"registry: resync corrected {fixed} {twins} the watcher missed")

    def _remember(self, scan: ScanResult) -> None:
        """Take `scan` as the latest, and as what the next sync is compared to.

        A twin whose file stops parsing keeps its registration, but the scan no longer
        has it: compared to the bare scan, the file's later deletion would go unseen and
        the twin stay active for good. So it is carried over, as it was registered.
        """
        self.last = scan
        before = self._registered
        kept = (
            {}
            if before is None
            else {
                twin_id: path
                for twin_id, path in before.sources.items()
                if twin_id not in scan.twins and path in scan.invalid
            }
        )
        if before is None or not kept:
            self._registered = scan
            return
        self._registered = dataclasses.replace(
            scan,
            twins={**scan.twins, **{twin_id: before.twins[twin_id] for twin_id in kept}},
            sources={**scan.sources, **kept},
        )

    def _report(self, report: SyncReport) -> None:
        """Log new problems once, and what the sync changed."""
        current = set(report.scan.problems) | set(report.failed)
        for problem in sorted(current - self._reported, key=str):
            self._log.emit("WARN", f"registry: {problem}")
        self._reported = current
        for twin_id in report.deprecated:
            self._log.emit("INFO", f"registry: deprecated {twin_id} (its file is gone)")
        if self._on_report is not None:
            self._on_report(report)
