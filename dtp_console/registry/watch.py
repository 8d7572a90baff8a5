"""Watch the twins folder and keep the registry in step with it.

Built on `watchfiles` (inotify, debounced in Rust). The watcher is armed before
the first full scan, so nothing changed during that scan is missed. Each batch
of changes re-reads only the affected files (a compose file change re-reads
its folder's twin file, a moved folder its whole subtree), then syncs the
difference: created or edited files re-register, deleted ones deprecate their
twin. Problems go to the bus as `WARN` log lines, each once while it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from dtp_console.events import Bus, OpsLog
from dtp_console.registry.compose import COMPOSE_FILE_NAMES
from dtp_console.registry.discovery import TWIN_FILE_NAMES, Problem, ScanResult, TwinCatalog
from dtp_console.registry.service import RegistryService, SyncReport

__all__ = ["TwinWatcher"]

_RELEVANT = frozenset(TWIN_FILE_NAMES) | frozenset(COMPOSE_FILE_NAMES)


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
        on_report: Callable[[SyncReport], None] | None = None,
    ) -> None:
        self._service = service
        self._catalog = TwinCatalog(root)
        self._log = OpsLog(bus, window_s=0)
        self._debounce_ms = debounce_ms
        self._on_report = on_report
        self._reported: set[Problem] = set()
        self.ready = asyncio.Event()
        """Set once the watch is armed and the first scan is registered."""
        self.last: ScanResult | None = None
        """The latest scan."""
        self.batches = 0
        """Change batches handled since the start."""

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
            self.last = scan
            self.ready.set()
            while True:
                batch = await pending
                pending = asyncio.ensure_future(anext(changes))
                paths = [Path(path) for _, path in batch]
                scan = await asyncio.to_thread(self._catalog.update, paths)
                self._report(await self._service.sync(scan, previous=self.last))
                self.last = scan
                self.batches += 1
        finally:
            stop.set()
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
            await changes.aclose()

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
