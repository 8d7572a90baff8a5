"""A real `Engine` for tests: the sandbox as twinzo, stores and registry in a temp folder.

`engine_config()` builds a console config around one or more plants on a
broker port (a private mosquitto, or a closed port for "broker down");
`running()` runs the engine until the block ends and always stops it.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from dtp_console.config.model import ConsoleConfig
from dtp_console.runtime import Engine

__all__ = ["ROOT", "TWINZO_SECRETS", "engine_config", "running", "until"]

ROOT = Path(__file__).resolve().parents[2]
#: The twinzo credentials of the config (the sandbox is built with the same).
TWINZO_SECRETS = {"client": "demo", "password": "test-device-pw", "api_key": "test-api-key"}


def engine_config(
    tmp: Path,
    port: int,
    *,
    plants: list[dict[str, Any]] | None = None,
    stores: dict[str, Any] | None = None,
    registry: bool = True,
    sandbox: dict[str, Any] | None = None,
) -> ConsoleConfig:
    """A config whose plants (default: one ATI plant) use 127.0.0.1:`port`.

    Each plant dict is merged over a quick-reconnecting ATI plant; the repo's
    `twins/` are copied under `tmp` for the registry (no watcher); stores are
    the embedded SQLite/folder ones with quick health checks (None: disabled).
    """
    broker = {"host": "127.0.0.1", "port": port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}
    base: dict[str, Any] = {
        "format": "ati_sherpa",
        "twinzo": {"sector_id": 2},
        "min_post_interval_ms": 0,
    }
    chosen = plants or [{"name": "Old Plant", "device_map": {"ati_amr_001": "tugger-05-old"}}]
    merged = []
    for plant in chosen:
        merged.append({**base, **plant, "broker": {**broker, **plant.get("broker", {})}})
    twins = tmp / "twins"
    if registry and not twins.exists():
        shutil.copytree(ROOT / "twins", twins)
    data: dict[str, Any] = {
        "twinzo": {**TWINZO_SECRETS, "flush_interval_ms": 20, "backoff_initial_s": 0.05},
        "sandbox": {"enabled": True, **(sandbox or {})},
        "registry": {
            "enabled": registry,
            "twins_root": str(twins),
            "sqlite_path": str(tmp / "registry.sqlite3"),
            "watch": False,
        },
        "stores": {"enabled": False}
        if stores is None
        else {
            "sqlite_path": str(tmp / "platform.sqlite3"),
            "blob_dir": str(tmp / "blobs"),
            "health_interval_s": 0.2,
            "probe_timeout_s": 2.0,
            "flush_interval_ms": 20,
            "drain_timeout_s": 1.0,
            **stores,
        },
        "plants": merged,
        # Never the fixed default port: tests run engines side by side (HA pairs).
        "api": {"listen": "127.0.0.1:0"},
    }
    return ConsoleConfig.model_validate(data)


@asynccontextmanager
async def running(engine: Engine, *, timeout: float = 15.0) -> AsyncIterator[Engine]:
    """Run `engine` (its `ready` set) for the block; stopped and awaited after it."""
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop), name="test-engine")
    waiter = asyncio.create_task(engine.ready.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # it died starting: raise what killed it
        assert engine.ready.is_set(), f"engine not ready within {timeout}s"
        yield engine
    finally:
        waiter.cancel()
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `check` every 20 ms; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.02)
