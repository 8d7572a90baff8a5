"""Per-token dependency flags (`api.visibility`) and the stream hub's views of one event."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection

import orjson
import pytest

from dtp_console.api.stream import OwnerLookup, StreamEvent, StreamHub
from dtp_console.api.tokens import Principal
from dtp_console.api.visibility import unknown_to, visible_to
from dtp_console.events import Bus, LogLine, OpsLog, TwinDeleted, TwinUpdated
from dtp_console.registry.model import Dependencies, TwinRecord

_NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PLANT_B = Principal("operator-b", "operator", frozenset({"plant-b"}))
BOTH = Principal("operator-ab", "operator", frozenset({"plant-a", "plant-b"}))
EVERYONE = Principal("admin", "admin", frozenset({"*"}))
#: What the registry knows: dt:lift is plant-a's, dt:own is plant-b's, dt:none is nobody's.
OWNERS = {"dt:lift": "plant-a", "dt:own": "plant-b"}


def _probe() -> TwinRecord:
    """A plant-b twin as the registry flags it (over every tenant)."""
    return TwinRecord(
        id="dt:probe",
        name="probe",
        tenant="plant-b",
        status="active",
        dependencies=Dependencies(static=["dt:lift", "dt:none"], dynamic=["dt:own"]),
        unknown_dependencies=["dt:none"],
        created_at=_NOW,
        updated_at=_NOW,
    )


def test_a_dependency_on_an_unseen_tenant_is_unknown_to_a_restricted_token() -> None:
    twin = _probe()
    assert unknown_to(PLANT_B, twin, OWNERS) == ["dt:lift", "dt:none"]
    assert unknown_to(BOTH, twin, OWNERS) == ["dt:none"]
    assert unknown_to(EVERYONE, twin, OWNERS) == ["dt:none"]
    # No owners (the lookup failed): hide everything rather than reveal anything.
    assert unknown_to(PLANT_B, twin, None) == ["dt:lift", "dt:none", "dt:own"]
    assert unknown_to(EVERYONE, twin, None) == ["dt:none"]
    assert visible_to(BOTH, twin, OWNERS) is twin


async def _hub_run(
    events: list[TwinUpdated | TwinDeleted], lookup: OwnerLookup, log: OpsLog | None = None
) -> tuple[StreamHub, list[StreamEvent]]:
    bus = Bus()
    hub = StreamHub(bus, replay=10, queue_size=10, max_clients=10, owners=lookup, log=log)
    attached = hub.attach(EVERYONE, None, None, lambda: None)
    assert attached is not None
    client, _ = attached
    task = asyncio.create_task(hub.run())
    for event in events:
        bus.publish(event)
    got = [await asyncio.wait_for(client.queue.get(), 5) for _ in events]
    await hub.close(task)
    return hub, [item for item in got if item is not None]


def _unknown(frame: bytes) -> list[str]:
    data = frame.split(b"\ndata: ", 1)[1]
    unknown: list[str] = orjson.loads(data)["twin"]["unknown_dependencies"]
    return unknown


async def test_the_hub_encodes_one_view_per_grant_set_with_one_lookup_per_batch() -> None:
    asked: list[set[str]] = []

    async def lookup(ids: Collection[str]) -> dict[str, str]:
        asked.append(set(ids))
        return {i: OWNERS[i] for i in ids if i in OWNERS}

    twin = _probe()
    hub, (updated, soft) = await _hub_run(
        [TwinUpdated(twin=twin), TwinDeleted(twin=twin, hard=False)], lookup
    )
    assert asked == [{"dt:lift", "dt:own"}]  # both events in one batch: one query
    for item in (updated, soft):
        assert _unknown(item.frame_for(EVERYONE)) == ["dt:none"]
        assert _unknown(item.frame_for(PLANT_B)) == ["dt:lift", "dt:none"]
        assert item.frame_for(BOTH) is item.frame  # same answer: the shared frame
        assert item.frame_for(PLANT_B) is item.frame_for(PLANT_B)  # cached
        assert item.frame_for(PLANT_B).split(b"\n")[0] == item.frame.split(b"\n")[0]  # same id
    assert hub.stats.owner_lookups == 1


async def test_a_failed_lookup_is_counted_and_hides_every_dependency() -> None:
    async def lookup(_ids: Collection[str]) -> dict[str, str]:
        raise OSError("registry down")

    log_bus = Bus()
    lines = log_bus.subscribe()
    hub, (item,) = await _hub_run([TwinUpdated(twin=_probe())], lookup, OpsLog(log_bus))
    assert _unknown(item.frame_for(PLANT_B)) == ["dt:lift", "dt:none", "dt:own"]
    assert _unknown(item.frame_for(EVERYONE)) == ["dt:none"]
    assert hub.stats.owner_lookups_failed == 1
    (line,) = [e for e in lines.drain() if isinstance(e, LogLine)]
    assert line.level == "WARN"
    assert "OSError: registry down" in line.text


@pytest.mark.parametrize("deps", [Dependencies(), Dependencies(static=["dt:none"])])
async def test_an_event_without_found_dependencies_needs_no_lookup(deps: Dependencies) -> None:
    async def lookup(_ids: Collection[str]) -> dict[str, str]:
        raise AssertionError("no lookup expected")

    twin = _probe().model_copy(update={"dependencies": deps, "unknown_dependencies": deps.all()})
    hard = TwinDeleted(twin=_probe().model_copy(update={"unknown_dependencies": []}), hard=True)
    hub, items = await _hub_run([TwinUpdated(twin=twin), hard], lookup)
    assert [i.frame_for(PLANT_B) is i.frame for i in items] == [True, True]
    assert hub.stats.owner_lookups == 0
