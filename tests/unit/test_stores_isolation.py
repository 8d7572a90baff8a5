"""One store failing never takes the others (or the console) down, and its losses are counted.

The broken store here is a fake on purpose: it stands for a driver bug (an
exception outside `StoreError`) that no real server can be made to produce.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

from dtp_console.events import Bus, Event, LogLine, OpsLog
from dtp_console.headless import stores_stats_line
from dtp_console.state import EngineState
from dtp_console.stores.config import StoresConfig
from dtp_console.stores.plan import StorePlan, plan_stores
from dtp_console.stores.protocols import GraphStore, StoreError
from dtp_console.stores.records import EventRecord
from dtp_console.stores.service import StoreService

SECRET = "Gr4ph-Pw-88"


class BrokenStore:
    """Opens with an unexpected exception quoting a URI with user info; every write fails."""

    name = "neo4j"

    def __init__(self, open_error: Exception | None = None) -> None:
        self.open_error = open_error

    async def open(self) -> None:
        if self.open_error is not None:
            raise self.open_error

    async def close(self) -> None:
        raise RuntimeError(f"close failed for bolt://neo:{SECRET}@graph.example.com:7687")

    async def ping(self) -> None:
        raise StoreError(f"neo4j ping: cannot reach bolt://neo:{SECRET}@graph.example.com")

    async def probe(self) -> None:
        await self.ping()

    async def write_events(self, batch: Sequence[EventRecord]) -> None:
        raise StoreError("neo4j write events: connection refused")


def _config(tmp_path: Path, **extra: object) -> StoresConfig:
    return StoresConfig.model_validate(
        {
            "sqlite_path": str(tmp_path / "platform.sqlite3"),
            "blob_dir": str(tmp_path / "blobs"),
            "probe_timeout_s": 2.0,
            **extra,
        }
    )


def _plan_with(config: StoresConfig, broken: BrokenStore, role: str) -> StorePlan:
    plan = plan_stores(config)
    if role == "relationships":
        plan.relationships = cast("GraphStore", broken)  # a graph store that fails before use
    else:
        plan.events = broken
    plan.roles["sqlite"].remove(role)
    plan.add(broken, role)
    return plan


def _lines(bus_lines: Iterable[Event]) -> list[LogLine]:
    return [e for e in bus_lines if isinstance(e, LogLine)]


async def test_a_store_whose_open_raises_anything_is_a_logged_red_badge(tmp_path: Path) -> None:
    config = _config(tmp_path)
    uri = f"bolt://neo:{SECRET}@graph.example.com:7687"
    broken = BrokenStore(RuntimeError(f"URI userinfo is not supported. Given URI: '{uri}'"))
    bus = Bus()
    feed = bus.subscribe()
    service = StoreService(
        config, bus, OpsLog(bus, 60.0), plan=_plan_with(config, broken, "relationships")
    )
    async with service:  # before: the RuntimeError escaped and stopped the console (rc=1)
        health = {h.name: h for h in await service.check_health()}
    assert not health["neo4j"].ok
    assert health["sqlite"].ok
    assert health["folder"].ok
    lines = _lines(feed.drain())
    failed = [line for line in lines if line.level == "FAIL" and "neo4j" in line.text]
    assert failed
    assert "failed to open: RuntimeError" in failed[0].text
    for line in lines:
        assert SECRET not in line.render()
    assert SECRET not in str(health["neo4j"].error)
    assert any("close failed" in line.text for line in lines)


async def test_spool_drops_are_in_the_stats_dict_the_stats_json_and_the_stores_line(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, spool_max=2)
    bus = Bus()
    service = StoreService(
        config, bus, OpsLog(bus, 60.0), plan=_plan_with(config, BrokenStore(), "events")
    )
    now = dt.datetime.now(dt.UTC)
    for n in range(5):
        service.submit_event(EventRecord(ts=now, severity=1, source="test", body={"n": n}))
    stats = service.stats_dict()
    assert stats["dropped"] == 3
    assert stats["spools"]["events:neo4j"]["dropped"] == 3
    assert stats["spools"]["events:neo4j"]["pending"] == 2
    assert stats["spools"]["events:neo4j"]["submitted"] == 5
    line = stores_stats_line(stats)
    assert line.startswith("STATS stores: drop 3 pend 2")
    assert "events:neo4j wr 0 pend 2 drop 3 retry 0" in line
    state = EngineState()
    assert state.as_dict()["stores"] is None
    state.store_stats = service.stats_dict
    assert state.as_dict()["stores"]["spools"]["events:neo4j"]["dropped"] == 3
