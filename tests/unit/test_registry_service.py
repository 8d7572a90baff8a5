"""The registry service on the embedded SQLite repository: lifecycle, events, sync."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dtp_console.events import Bus, Event, ServiceUpdated, Subscription, TwinDeleted, TwinUpdated
from dtp_console.registry.discovery import TwinCatalog, scan
from dtp_console.registry.errors import (
    IllegalTransitionError,
    ServiceNotFoundError,
    TwinNotFoundError,
)
from dtp_console.registry.model import Dependencies, Interfaces, ServiceSpec, TwinSpec
from dtp_console.registry.service import RegistryService
from dtp_console.registry.sqlite_repo import SqliteRepository


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def events(bus: Bus) -> Subscription:
    return bus.subscribe()


@pytest.fixture
async def service(tmp_path: Path, bus: Bus) -> AsyncIterator[RegistryService]:
    repo = SqliteRepository(tmp_path / "var" / "registry.sqlite3")
    await repo.open()
    try:
        yield RegistryService(repo, bus, clock=_Clock())
    finally:
        await repo.close()


def _drain(events: Subscription) -> list[Event]:
    return list(events.drain())


def _spec(twin_id: str = "dt:Lift_001", **changes: object) -> TwinSpec:
    base = TwinSpec(id=twin_id, name="Lift", metadata={"domain": ["m"]})
    return base.model_copy(update=changes)


async def test_register_creates_then_upserts_and_publishes_only_changes(
    service: RegistryService, events: Subscription
) -> None:
    first = await service.register(_spec())
    assert (first.created, first.changed) == (True, True)
    assert first.twin.status == "instantiated"
    [created] = _drain(events)
    assert isinstance(created, TwinUpdated)
    assert created.kind == "twin.update"
    assert (created.created, created.previous_status, created.twin.id) == (
        True,
        None,
        "dt:Lift_001",
    )

    again = await service.register(_spec())
    assert (again.created, again.changed) == (False, False)
    assert _drain(events) == []  # nothing changed, nothing published

    renamed = await service.register(_spec(name="Goods lift"))
    assert renamed.changed
    assert renamed.twin.created_at == first.twin.created_at
    assert renamed.twin.updated_at > first.twin.updated_at
    [updated] = _drain(events)
    assert isinstance(updated, TwinUpdated)
    assert updated.twin.name == "Goods lift"
    assert not updated.created
    assert len(await service.list_twins()) == 1


async def test_lifecycle_moves_and_refuses_illegal_ones(
    service: RegistryService, events: Subscription
) -> None:
    await service.register(_spec())
    _drain(events)
    active = await service.activate("dt:Lift_001")
    assert active.status == "active"
    [event] = _drain(events)
    assert isinstance(event, TwinUpdated)
    assert event.previous_status == "instantiated"

    with pytest.raises(IllegalTransitionError, match="cannot go from active to instantiated"):
        await service.set_status("dt:Lift_001", "instantiated")
    assert _drain(events) == []
    assert (await service.get("dt:Lift_001")).status == "active"

    soft = await service.deprecate("dt:Lift_001")
    assert soft.status == "deprecated"
    [deleted] = _drain(events)
    assert isinstance(deleted, TwinDeleted)
    assert (deleted.kind, deleted.hard, deleted.twin.status) == ("twin.delete", False, "deprecated")

    assert (await service.deprecate("dt:Lift_001")).status == "deprecated"
    assert _drain(events) == []  # already deprecated: a no-op

    assert (await service.activate("dt:Lift_001")).status == "active"  # re-activation
    history = [(h.from_status, h.to_status) for h in await service.history("dt:Lift_001")]
    assert history == [
        (None, "instantiated"),
        ("instantiated", "active"),
        ("active", "deprecated"),
        ("deprecated", "active"),
    ]


async def test_re_registration_revives_a_deprecated_twin(service: RegistryService) -> None:
    await service.register(_spec(declared_status="active"))
    await service.deprecate("dt:Lift_001")
    result = await service.register(_spec())
    assert result.twin.status == "active"
    assert result.changed


async def test_unknown_twin_is_a_clear_error(service: RegistryService) -> None:
    with pytest.raises(TwinNotFoundError, match="no twin 'dt:Nope' is registered"):
        await service.get("dt:Nope")
    with pytest.raises(TwinNotFoundError):
        await service.activate("dt:Nope")
    with pytest.raises(TwinNotFoundError):
        await service.delete("dt:Nope")
    assert await service.find("dt:Nope") is None


async def test_hard_delete_removes_the_twin_and_publishes(
    service: RegistryService, events: Subscription
) -> None:
    await service.register(_spec())
    _drain(events)
    removed = await service.delete("dt:Lift_001")
    assert removed.id == "dt:Lift_001"
    [event] = _drain(events)
    assert isinstance(event, TwinDeleted)
    assert event.hard
    assert await service.find("dt:Lift_001") is None
    assert await service.history("dt:Lift_001") == []


async def test_unknown_dependencies_are_allowed_and_flagged(service: RegistryService) -> None:
    deps = Dependencies(static=["dt:Lift_001"], dynamic=["dt:Ghost_001"])
    fleet = await service.register(_spec("dt:Fleet_001", dependencies=deps))
    assert fleet.unknown_dependencies == ["dt:Lift_001", "dt:Ghost_001"]
    await service.register(_spec("dt:Lift_001"))
    listed = {t.id: t.unknown_dependencies for t in await service.list_twins()}
    assert listed == {"dt:Fleet_001": ["dt:Ghost_001"], "dt:Lift_001": []}
    assert (await service.get("dt:Fleet_001")).unknown_dependencies == ["dt:Ghost_001"]


async def test_patch_interfaces_and_dependencies(
    service: RegistryService, events: Subscription
) -> None:
    await service.register(_spec())
    _drain(events)
    patched = await service.patch(
        "dt:Lift_001",
        interfaces=Interfaces(api="http://lift:1", data_streams=["MQTT:a/b"]),
        dependencies=Dependencies(static=["dt:Room1_001"]),
    )
    assert patched.interfaces.api == "http://lift:1"
    assert patched.dependencies.static == ["dt:Room1_001"]
    assert patched.unknown_dependencies == ["dt:Room1_001"]
    assert len(_drain(events)) == 1
    await service.patch("dt:Lift_001", interfaces=patched.interfaces)
    assert _drain(events) == []


async def test_list_filters_by_tenant_and_status(service: RegistryService) -> None:
    await service.register(_spec("dt:A", tenant="t1", declared_status="active"))
    await service.register(_spec("dt:B", tenant="t1"))
    await service.register(_spec("dt:C", tenant="t2", declared_status="active"))
    assert [t.id for t in await service.list_twins(tenant="t1")] == ["dt:A", "dt:B"]
    assert [t.id for t in await service.list_twins(status="active")] == ["dt:A", "dt:C"]
    assert [t.id for t in await service.list_twins(tenant="t1", status="active")] == ["dt:A"]


async def test_services_register_and_health_updates_publish(
    service: RegistryService, events: Subscription
) -> None:
    spec = ServiceSpec(
        id="svc:lift-ui",
        name="Lift UI",
        category="ui",
        twin_id="dt:Lift_001",
        interfaces={"api": "http://localhost:8081"},
    )
    created = await service.register_service(spec)
    assert created.health == "unknown"
    [event] = _drain(events)
    assert isinstance(event, ServiceUpdated)
    assert (event.kind, event.previous_health) == ("service.update", None)

    healthy = await service.update_health("svc:lift-ui", "healthy", "200 OK in 12 ms")
    assert (healthy.health, healthy.health_detail) == ("healthy", "200 OK in 12 ms")
    assert healthy.registered_at == created.registered_at
    [event] = _drain(events)
    assert isinstance(event, ServiceUpdated)
    assert event.previous_health == "unknown"

    await service.update_health("svc:lift-ui", "healthy", "200 OK in 12 ms")
    assert _drain(events) == []
    assert [s.id for s in await service.list_services(category="ui")] == ["svc:lift-ui"]
    assert await service.list_services(category="bridge") == []
    with pytest.raises(ServiceNotFoundError):
        await service.update_health("svc:nope", "degraded")


def _file(root: Path, folder: str, twin_id: str, extra: str = "") -> Path:
    path = root / folder / "twin.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'"@id": {twin_id}\nmetadata:\n  status: active\n{extra}', encoding="utf-8")
    return path


async def test_sync_registers_good_files_and_deprecates_deleted_ones(
    service: RegistryService, tmp_path: Path, events: Subscription
) -> None:
    root = tmp_path / "twins"
    a = _file(root, "a", "dt:A")
    b = _file(root, "b", "dt:B")
    _file(root, "c", "dt:C", "dependencies:\n  static: [dt:A, dt:Zed]\n")
    report = await service.sync(scan(root))
    assert report.ok
    assert sorted(report.created) == ["dt:A", "dt:B", "dt:C"]
    assert report.unknown_dependencies == {"dt:C": ["dt:Zed"]}
    assert "3 new" in report.summary()

    b.unlink()
    a.write_text("metadata: [broken\n", encoding="utf-8")  # broken: keeps its last good twin
    _drain(events)
    report = await service.sync(scan(root))
    assert not report.ok
    assert report.deprecated == ["dt:B"]
    assert report.unchanged == 1
    assert (await service.get("dt:A")).status == "active"
    assert (await service.get("dt:B")).status == "deprecated"
    [event] = _drain(events)
    assert isinstance(event, TwinDeleted)
    assert event.reason == "file deleted"


async def test_sync_deprecates_an_id_its_file_no_longer_defines(
    service: RegistryService, tmp_path: Path
) -> None:
    root = tmp_path / "twins"
    path = _file(root, "a", "dt:Old")
    catalog = TwinCatalog(root)
    first = catalog.scan()
    await service.sync(first)
    _file(root, "a", "dt:New")
    second = catalog.update([path])
    report = await service.sync(second, previous=first)
    assert report.created == ["dt:New"]
    assert report.deprecated == ["dt:Old"]
    history = await service.history("dt:Old")
    assert "no longer defines it" in history[-1].reason


async def test_sync_of_a_missing_root_deprecates_nothing(
    service: RegistryService, tmp_path: Path
) -> None:
    root = tmp_path / "twins"
    _file(root, "a", "dt:A")
    await service.sync(scan(root))
    report = await service.sync(scan(tmp_path / "elsewhere"))
    assert report.deprecated == []
    assert not report.ok
    root_moved = tmp_path / "moved"
    root.rename(root_moved)
    assert (await service.sync(scan(root))).deprecated == []
    assert (await service.get("dt:A")).status == "active"


async def test_duplicate_ids_register_the_winner_only(
    service: RegistryService, tmp_path: Path
) -> None:
    root = tmp_path / "twins"
    winner = _file(root, "a", "dt:Dup", "name: first\n")
    loser = _file(root, "b", "dt:Dup", "name: second\n")
    report = await service.sync(scan(root))
    assert not report.ok
    twin = await service.get("dt:Dup")
    assert (twin.name, twin.source) == ("first", str(winner))
    [problem] = report.scan.errors
    assert problem.path == loser
    assert str(winner) in problem.reason
