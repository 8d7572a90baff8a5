"""Wiring for the console's runtime and the CLI: open the registry, run it as a worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from dtp_console.events import Bus, OpsLog
from dtp_console.registry.backends import open_repository
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.discovery import TwinCatalog
from dtp_console.registry.repository import TwinRepository
from dtp_console.registry.service import RegistryService, SyncReport

__all__ = ["open_registry", "run_registry"]


@asynccontextmanager
async def open_registry(
    config: RegistryConfig, bus: Bus, *, repository: TwinRepository | None = None
) -> AsyncIterator[RegistryService]:
    """A `RegistryService` on the configured (or given) repository, closed on exit."""
    repo = repository if repository is not None else open_repository(config)
    await repo.open()
    try:
        yield RegistryService(repo, bus)
    finally:
        await repo.close()


async def run_registry(
    config: RegistryConfig,
    bus: Bus,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    on_open: Callable[[RegistryService | None], None] | None = None,
) -> None:
    """The registry worker: scan and register, then watch (if configured).

    Returns when `stop` is set; raises what broke it (an unreachable database, …)
    so a supervisor can restart it. `ready` is set once the first scan is registered.
    """
    work = asyncio.create_task(_serve(config, bus, ready, on_open), name="registry")
    if stop is None:
        await work
        return
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    if not work.cancelled():
        work.result()


async def _serve(
    config: RegistryConfig,
    bus: Bus,
    ready: asyncio.Event | None,
    on_open: Callable[[RegistryService | None], None] | None = None,
) -> None:
    from dtp_console.registry.watch import TwinWatcher  # watchfiles only when watching

    log = OpsLog(bus, window_s=0)
    summarised = False

    def _summary(report: SyncReport) -> None:
        nonlocal summarised
        if not summarised:
            log.emit("INFO", f"registry: {report.summary()}")
            summarised = True

    async with open_registry(config, bus) as service:
        if on_open is not None:
            on_open(service)  # the console's UI acts on the same service
        if config.watch and config.twins_root.is_dir():
            watcher = TwinWatcher(
                service,
                config.twins_root,
                bus,
                debounce_ms=config.debounce_ms,
                resync_s=config.resync_s,
                on_report=_summary,
            )
            task = asyncio.create_task(watcher.run(), name="registry-watch")
            waiter = asyncio.create_task(watcher.ready.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if ready is not None and watcher.ready.is_set():
                    ready.set()
                await task
            finally:
                waiter.cancel()
                task.cancel()
            return
        report = await service.sync(await asyncio.to_thread(TwinCatalog(config.twins_root).scan))
        for problem in [*report.scan.problems, *report.failed]:
            log.emit("WARN", f"registry: {problem}")
        _summary(report)
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()  # keep the repository open for the console until stopped
