"""The UI's door: `Engine` is a `ConsoleEngine`; twin lifecycle moves go through it, logged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dtp_console.commands import LoggedRegistry
from dtp_console.events import LogLine, StoreHealth, TwinDeleted, TwinUpdated
from dtp_console.registry.errors import TwinNotFoundError
from dtp_console.registry.model import TwinSpec
from dtp_console.registry.service import RegistryService
from dtp_console.registry.sqlite_repo import SqliteRepository
from dtp_console.runtime import Engine
from dtp_console.stores.config import StoresConfig
from dtp_console.stores.service import StoreService
from dtp_console.view import ConsoleEngine, RegistryView
from tests.support.engine import engine_config
from tests.support.mosquitto import free_port


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(engine_config(tmp_path, free_port(), registry=False), simulate=False)


@pytest.fixture
async def service(tmp_path: Path, engine: Engine) -> AsyncIterator[RegistryService]:
    repo = SqliteRepository(tmp_path / "registry.sqlite3")
    await repo.open()
    try:
        yield RegistryService(repo, engine.bus)
    finally:
        await repo.close()


def test_the_engine_is_what_the_ui_expects(engine: Engine) -> None:
    door: ConsoleEngine = engine  # mypy checks the structure; this checks it runs
    assert door.plants == engine.plants
    assert door.device_map(engine.plants[0].name) is None  # no bridge before `run`
    assert door.twins is None  # no registry running


async def test_twins_is_one_logged_view_per_running_registry(
    engine: Engine, service: RegistryService
) -> None:
    engine.registry = service
    twins = engine.twins
    assert isinstance(twins, LoggedRegistry)
    assert engine.twins is twins  # same object: the UI reloads only when it changes
    engine.registry = None
    assert engine.twins is None
    engine.registry = service
    assert engine.twins is not twins  # a restarted registry is a new view


async def test_lifecycle_moves_publish_and_log(engine: Engine, service: RegistryService) -> None:
    await service.register(TwinSpec(id="dt:Lift_001", name="Lift", metadata={"domain": ["m"]}))
    engine.registry = service
    seen = engine.subscribe(maxsize=100)
    twins: RegistryView | None = engine.twins
    assert twins is not None
    assert [t.id for t in await twins.list_twins()] == ["dt:Lift_001"]
    assert (await twins.get("dt:Lift_001")).name == "Lift"
    assert await twins.list_services() == []
    assert (await twins.activate("dt:Lift_001", reason="console")).status == "active"
    assert (await twins.deprecate("dt:Lift_001", reason="console")).status == "deprecated"
    assert [c.to_status for c in await twins.history("dt:Lift_001")][-2:] == [
        "active",
        "deprecated",
    ]
    await twins.delete("dt:Lift_001", reason="console [x]")
    events = list(seen.drain())
    lines = [e.render() for e in events if isinstance(e, LogLine)]
    assert lines == [
        "INFO twin dt:Lift_001 activated (console)",
        "INFO twin dt:Lift_001 deprecated (console)",
        "INFO twin dt:Lift_001 deleted (console [x])",
    ]
    # The registry's own events (what the stores record): a deprecation is a soft delete.
    changes = [e for e in events if isinstance(e, TwinUpdated | TwinDeleted)]
    assert [(type(e).__name__, getattr(e, "hard", None)) for e in changes] == [
        ("TwinUpdated", None),
        ("TwinDeleted", False),
        ("TwinDeleted", True),
    ]


async def test_a_refused_move_logs_nothing(engine: Engine, service: RegistryService) -> None:
    engine.registry = service
    seen = engine.subscribe(maxsize=100)
    twins = engine.twins
    assert twins is not None
    with pytest.raises(TwinNotFoundError):
        await twins.deprecate("dt:Nobody\x1b[2J", reason="console")
    assert [e for e in seen.drain() if isinstance(e, LogLine)] == []


def test_store_health_is_the_stores_services_own_latest_check(engine: Engine) -> None:
    """One home: the view hands out the service's dict, never a copy that could drift."""
    assert engine.store_health == {}  # no stores running
    service = StoreService(StoresConfig(enabled=False), engine.bus, engine.log)
    engine.stores = service
    view: ConsoleEngine = engine
    assert view.store_health is service.health
    service.health["sqlite"] = StoreHealth(name="sqlite", role="events", ok=False, error="gone")
    assert view.store_health["sqlite"].error == "gone"
