"""The embedded SQLite store, and the store service running on the embedded defaults."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dtp_console.events import Bus, LogLine, OpsLog, StoreHealth, TwinDeleted, TwinUpdated
from dtp_console.registry.model import TwinRecord
from dtp_console.simulator.config import GeneratorsConfig
from dtp_console.simulator.generators import TwinGenerators
from dtp_console.stores.config import StoresConfig
from dtp_console.stores.folder import FolderBlobStore
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import EventRecord, Observation, Signal
from dtp_console.stores.service import StoreService
from dtp_console.stores.sqlite import SqliteStore

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SID = uuid.uuid5(uuid.NAMESPACE_URL, "test-signal")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    sqlite = SqliteStore(tmp_path / "var" / "platform.sqlite3")
    await sqlite.open()
    yield sqlite
    await sqlite.close()


async def test_schema_is_idempotent_and_wal(tmp_path: Path, store: SqliteStore) -> None:
    await store.open()  # no-op
    again = SqliteStore(store.path)
    await again.open()  # creating the schema a second time is harmless
    await again.close()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_observations_are_idempotent_on_signal_and_ts(store: SqliteStore) -> None:
    await store.write_signals([Signal(SID, "room1 temperature", "°C")])
    await store.write_signals([Signal(SID, "room 1 temperature", "°C")])  # upsert
    batch = [Observation(SID, T0 + dt.timedelta(seconds=i), 20.0 + i) for i in range(10)]
    await store.write_observations(batch)
    await store.write_observations(batch[5:])  # a retried batch changes nothing
    await store.write_observations([Observation(SID, T0, 99.0, quality={"ok": False})])
    rows = await store.read_observations(SID)
    assert len(rows) == 10
    assert rows[0].ts == T0 + dt.timedelta(seconds=9)  # newest first
    assert rows[-1].value_double == 20.0  # the first write of (SID, T0) stands
    assert [s.name for s in await store.signals()] == ["room 1 temperature"]


async def test_events_keep_severity_source_and_body(store: SqliteStore) -> None:
    await store.write_events(
        [EventRecord(T0, 2, "lift", {"rms": 5.1}), EventRecord(T0, 3, "bridge:x")]
    )
    events = await store.read_events()
    assert [(e.severity, e.source, e.body) for e in events] == [
        (3, "bridge:x", {}),
        (2, "lift", {"rms": 5.1}),
    ]
    with pytest.raises(StoreError, match="CHECK constraint"):
        await store.write_events([EventRecord(T0, 7, "bad")])  # type: ignore[arg-type]


async def test_graph_merges_and_removals(store: SqliteStore) -> None:
    await store.merge_twin("dt:Lift_001", "Lift", "demo", "active", "asset:lift-1")
    await store.merge_twin("dt:Lift_001", "Lift 1", "demo", "active", "asset:lift-1")
    await store.merge_twin("dt:Fleet_001", "Fleet", "demo", "active", None)
    await store.merge_dependency("dt:Fleet_001", "dt:Lift_001", "static")
    await store.merge_dependency("dt:Fleet_001", "dt:Lift_001", "static")
    await store.merge_device("Old Plant", "ati_amr_001", "tugger-05-old")
    await store.merge_device("Old Plant", "ati_amr_001", "tugger-06-old")
    graph = await store.graph_snapshot()
    assert graph["twins"] == [
        ("dt:Fleet_001", "Fleet", "demo", "active"),
        ("dt:Lift_001", "Lift 1", "demo", "active"),
    ]
    assert graph["mirrors"] == [("dt:Lift_001", "asset:lift-1")]
    assert graph["dependencies"] == [("dt:Fleet_001", "dt:Lift_001", "static")]
    assert graph["devices"] == [("Old Plant", "ati_amr_001", "tugger-06-old")]
    await store.remove_twin("dt:Lift_001")
    await store.remove_device("Old Plant", "ati_amr_001")
    graph = await store.graph_snapshot()
    assert [t[0] for t in graph["twins"]] == ["dt:Fleet_001"]
    assert graph["mirrors"] == graph["dependencies"] == graph["devices"] == []


async def test_dependencies_dropped_from_a_twin_file_leave_the_graph(store: SqliteStore) -> None:
    for target in ("dt:Lift_001", "dt:Door_001", "dt:Hvac_001"):
        await store.merge_dependency("dt:Fleet_001", target, "static")
    await store.merge_dependency("dt:Other_001", "dt:Lift_001", "static")
    await store.prune_dependencies("dt:Fleet_001", [("dt:Door_001", "static")])
    graph = await store.graph_snapshot()
    assert graph["dependencies"] == [
        ("dt:Fleet_001", "dt:Door_001", "static"),
        ("dt:Other_001", "dt:Lift_001", "static"),
    ]
    # A target moved from static to dynamic keeps only the dynamic edge.
    await store.merge_dependency("dt:Fleet_001", "dt:Door_001", "dynamic")
    await store.prune_dependencies("dt:Fleet_001", [("dt:Door_001", "dynamic")])
    graph = await store.graph_snapshot()
    assert ("dt:Fleet_001", "dt:Door_001", "dynamic") in graph["dependencies"]
    assert ("dt:Fleet_001", "dt:Door_001", "static") not in graph["dependencies"]
    await store.prune_dependencies("dt:Fleet_001", [])
    graph = await store.graph_snapshot()
    assert graph["dependencies"] == [("dt:Other_001", "dt:Lift_001", "static")]


async def test_probe_reads_back_and_cleans_up(store: SqliteStore) -> None:
    await store.ping()
    await store.probe()
    assert await store.read_events() == []
    assert (await store.graph_snapshot())["twins"] == []


async def test_unusable_path_and_closed_store_are_store_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="SQLite"):
        await SqliteStore(blocker / "db.sqlite3").open()
    with pytest.raises(StoreError, match="not open"):
        await SqliteStore(tmp_path / "db.sqlite3").ping()


# -- the service on the embedded defaults ---------------------------------------------------


def _config(tmp_path: Path, **extra: object) -> StoresConfig:
    return StoresConfig.model_validate(
        {
            "sqlite_path": str(tmp_path / "platform.sqlite3"),
            "blob_dir": str(tmp_path / "blobs"),
            "flush_interval_ms": 10,
            "health_interval_s": 0.05,
            **extra,
        }
    )


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def _twin(twin_id: str, status: str = "active", **extra: object) -> TwinRecord:
    return TwinRecord.model_validate(
        {"id": twin_id, "name": twin_id, "tenant": "demo", "status": status}
        | {"created_at": T0, "updated_at": T0}
        | extra
    )


async def test_service_feeds_the_embedded_stores(tmp_path: Path) -> None:
    bus = Bus()
    health = bus.subscribe()
    config = _config(tmp_path)
    twin_file = tmp_path / "twins" / "lift" / "twin.yaml"
    twin_file.parent.mkdir(parents=True)
    twin_file.write_text('"@id": dt:Lift_001\nname: Lift\n')
    async with StoreService(config, bus, OpsLog(bus)) as service:
        assert service.plan is not None
        assert set(service.spools) == {
            "observations:sqlite",
            "events:sqlite",
            "relationships:sqlite",
            "blobs:folder",
        }
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        generators = TwinGenerators(GeneratorsConfig())
        messages = [m for _ in range(60) for m in generators.step(1.0)]
        for topic, payload in messages:
            service.submit_mqtt(topic, payload)
        service.submit_mqtt("dtp/sensors/room1/temp", b"{broken")
        service.submit_log(
            LogLine(level="FAIL", text="POST failed for tugger-03: 500", plant="HiTech")
        )
        service.submit_log(LogLine(level="OK", text="OK tugger-03"))
        lift = _twin("dt:Lift_001", metadata={"asset_id": "asset:lift-1"})
        fleet = _twin("dt:Fleet_001", dependencies={"static": ["dt:Lift_001"], "dynamic": []})
        service.submit_registry(TwinUpdated(twin=lift, created=True, reason="registered"))
        service.submit_registry(TwinUpdated(twin=fleet, created=True, reason="registered"))
        service.submit_registry(TwinDeleted(twin=fleet, hard=True, reason="delete"))
        service.sync_device_map(
            "Old Plant", {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"}
        )
        service.sync_device_map("Old Plant", {"ati_amr_001": "tugger-05-old"})
        service.archive_twin_file(twin_file)
        await _until(lambda: all(s.pending == 0 for s in service.stats()))
        await _until(lambda: len(service.health) == 2)
        stop.set()
        await runner
        assert service.mapper.rejected == {"malformed JSON": 1}
        assert all(s.dropped == 0 and s.retries == 0 for s in service.stats())
    sqlite = SqliteStore(config.sqlite_path)
    await sqlite.open()
    observations = await sqlite.read_observations(limit=10_000)
    expected = service.mapper.mapped
    assert len(observations) == (
        expected["room_temp"] + expected["lift_vibration"] + 3 * expected["energy"]
    )
    assert {s.name for s in await sqlite.signals()} >= {
        "room1 temperature",
        "Lift_001 vibration RMS",
    }
    events = await sqlite.read_events(limit=10_000)
    by_source = {(e.severity, e.source) for e in events}
    assert (3, "bridge:HiTech") in by_source
    assert (1, "registry") in by_source
    assert sum(1 for e in events if e.severity == 3) == 1
    graph = await sqlite.graph_snapshot()
    assert graph["twins"] == [("dt:Lift_001", "dt:Lift_001", "demo", "active")]
    assert graph["mirrors"] == [("dt:Lift_001", "asset:lift-1")]
    assert graph["dependencies"] == []  # removed with the fleet twin
    assert graph["devices"] == [("Old Plant", "ati_amr_001", "tugger-05-old")]
    await sqlite.close()
    blobs = FolderBlobStore(config.blob_dir)
    keys = await blobs.list_keys()
    maps = [k for k in keys if k.startswith("device-maps/Old-Plant/")]
    assert len(maps) == 2
    assert json.loads(await blobs.get(maps[-1]))["device_map"] == {"ati_amr_001": "tugger-05-old"}
    [archive] = [k for k in keys if k.startswith("twins/")]
    assert archive.startswith("twins/dt-Lift_001/") and archive.endswith(".yaml")
    assert await blobs.get(archive) == twin_file.read_bytes()
    assert (await blobs.manifest(archive)).content_type == "application/yaml"
    results = [e for e in health.drain() if isinstance(e, StoreHealth)]
    assert {(h.name, h.role, h.ok) for h in results} == {
        ("sqlite", "observations,events,relationships", True),
        ("folder", "blobs", True),
    }
    assert all(h.latency_ms is not None and h.last_success for h in results)


async def test_a_twin_update_that_drops_a_dependency_drops_the_edge(tmp_path: Path) -> None:
    bus = Bus()
    config = _config(tmp_path)
    async with StoreService(config, bus, OpsLog(bus)) as service:
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        deps = {"static": ["dt:Lift_001", "dt:Door_001"], "dynamic": ["dt:Hvac_001"]}
        fleet = _twin("dt:Fleet_001", dependencies=deps)
        service.submit_registry(TwinUpdated(twin=fleet, created=True, reason="registered"))
        fewer = _twin("dt:Fleet_001", dependencies={"static": ["dt:Door_001"], "dynamic": []})
        service.submit_registry(TwinUpdated(twin=fewer, created=False, reason="file changed"))
        await _until(lambda: all(s.pending == 0 for s in service.stats()))
        stop.set()
        await runner
    sqlite = SqliteStore(config.sqlite_path)
    await sqlite.open()
    try:
        graph = await sqlite.graph_snapshot()
    finally:
        await sqlite.close()
    assert graph["dependencies"] == [("dt:Fleet_001", "dt:Door_001", "static")]


async def test_health_reports_a_failing_store(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bus = Bus()
    logs = bus.subscribe()
    config = _config(tmp_path, blob_dir=str(blocker / "blobs"))
    async with StoreService(config, bus, OpsLog(bus)) as service:
        [sqlite, folder] = sorted(await service.check_health(), key=lambda h: h.name, reverse=True)
        assert sqlite.ok and sqlite.name == "sqlite"
        assert not folder.ok and folder.error is not None and "blob folder" in folder.error
        assert folder.last_success is None and folder.latency_ms is None
        assert service.health["folder"] == folder
    lines = [e.render() for e in logs.drain() if isinstance(e, LogLine)]
    assert any(line.startswith("WARN store folder (blobs) not reachable") for line in lines)
    assert any(line.startswith("FAIL store folder: blob folder") for line in lines)


async def test_disabled_service_accepts_and_ignores(tmp_path: Path) -> None:
    bus = Bus()
    config = _config(tmp_path, enabled=False)
    async with StoreService(config, bus, OpsLog(bus)) as service:
        service.submit_mqtt("dtp/sensors/room1/temp", b'{"value": 1}')
        service.sync_device_map("p", {"a": "b"})
        assert service.spools == {}
        stop = asyncio.Event()
        stop.set()
        await service.run(stop)
    assert not (tmp_path / "platform.sqlite3").exists()


async def test_events_are_written_once_per_id(store: SqliteStore) -> None:
    event = EventRecord(T0, 1, "registry", {"twin": "dt:Lift_001"})
    await store.write_events([event, event])
    await store.write_events([event])  # a replay after a crash
    assert await store.read_events() == [event]
    other = EventRecord(T0, 1, "registry", {"twin": "dt:Lift_001"})  # same content, new id
    await store.write_events([other])
    assert len(await store.read_events()) == 2


async def test_an_older_event_log_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE event_log (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL,"
        " severity INTEGER NOT NULL, source TEXT NOT NULL, body TEXT NOT NULL)"
    )
    conn.execute(
        "INSERT INTO event_log (ts, severity, source, body) VALUES (?, 0, 'old', '{}')",
        (T0.isoformat(),),
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        event = EventRecord(T0, 2, "new", {})
        await store.write_events([event, event])
        events = await store.read_events()
        assert [e.source for e in events] == ["new", "old"]
        assert events[0].id == event.id
    finally:
        await store.close()


async def test_service_replays_graph_blobs_and_events_after_a_restart(tmp_path: Path) -> None:
    # The outage: a file where the SQLite file's folder should be, so it cannot open.
    blocker = tmp_path / "db"
    blocker.write_text("not a folder")
    config = StoresConfig.model_validate(
        {
            "sqlite_path": str(blocker / "platform.sqlite3"),
            "spool_dir": str(tmp_path / "spool"),
            "blob_dir": str(tmp_path / "blobs"),
            "flush_interval_ms": 10,
            "health_interval_s": 0.05,
            "retry_initial_s": 0.01,
            "retry_max_s": 0.05,
            "drain_timeout_s": 0.1,
        }
    )
    bus = Bus()
    lift = _twin("dt:Lift_001", metadata={"asset_id": "asset:lift-1"})
    fleet = _twin("dt:Fleet_001", dependencies={"static": ["dt:Lift_001"], "dynamic": []})
    async with StoreService(config, bus, OpsLog(bus)) as service:
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        service.submit_registry(TwinUpdated(twin=lift, created=True, reason="registered"))
        service.submit_registry(TwinUpdated(twin=fleet, created=True, reason="registered"))
        service.sync_device_map("Old Plant", {"ati_amr_001": "tugger-05-old"})
        await _until(lambda: service.spools["relationships:sqlite"].stats().on_disk == 6)
        await _until(lambda: service.spools["events:sqlite"].stats().on_disk == 2)
        stop.set()
        await runner
        first = service.stats_dict()
    assert first["pending"] == first["on_disk"] > 0 and first["dropped"] == 0
    blocker.unlink()
    async with StoreService(config, bus, OpsLog(bus)) as service:
        assert service.stats_dict()["replayed"] == first["on_disk"]
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        await _until(lambda: all(s.pending == 0 for s in service.stats()))
        stop.set()
        await runner
        stats = service.stats_dict()
    for spool in stats["spools"].values():
        assert spool["submitted"] == spool["written"] + spool["dropped"] + spool["pending"]
        assert spool["pending"] == 0 and spool["dropped"] == 0
    store = SqliteStore(blocker / "platform.sqlite3")
    await store.open()
    try:
        graph = await store.graph_snapshot()
        assert graph["twins"] == [
            ("dt:Fleet_001", "dt:Fleet_001", "demo", "active"),
            ("dt:Lift_001", "dt:Lift_001", "demo", "active"),
        ]
        assert graph["dependencies"] == [("dt:Fleet_001", "dt:Lift_001", "static")]
        assert graph["devices"] == [("Old Plant", "ati_amr_001", "tugger-05-old")]
        events = await store.read_events()
        registry = [e for e in events if e.source.startswith("registry")]
        assert len(registry) == 2 and len({e.id for e in events}) == len(events)
    finally:
        await store.close()


async def test_an_unusable_spool_later_is_a_red_badge_and_records_still_flow(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("not a folder")  # (the CLI refuses this at start; the service copes)
    bus = Bus()
    lines = bus.subscribe()
    config = _config(tmp_path, spool_dir=str(blocker))
    async with StoreService(config, bus, OpsLog(bus)) as service:
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        service.submit_event(EventRecord(T0, 1, "operator", {"edit": "device map"}))
        await _until(lambda: all(s.pending == 0 for s in service.stats()))
        [health] = [h for h in await service.check_health() if h.name == "sqlite"]
        assert health.spool_error is not None and str(blocker) in health.spool_error
        stop.set()
        await runner
        assert service.plan is not None
        [sqlite] = [s for s in service.plan.stores.values() if isinstance(s, SqliteStore)]
        assert [e.source for e in await sqlite.read_events()] == ["operator"]
    texts = [e.text for e in lines.drain() if isinstance(e, LogLine)]
    assert any("spool unusable" in t and str(blocker) in t for t in texts)


async def test_records_submitted_before_run_are_saved_on_exit(tmp_path: Path) -> None:
    bus = Bus()
    config = _config(tmp_path)
    event = EventRecord(T0, 1, "operator", {"edit": "device map"})
    async with StoreService(config, bus, OpsLog(bus)) as service:
        service.submit_event(event)  # the service stops before its spools ever run
    assert service.spools["events:sqlite"].stats().on_disk == 1
    async with StoreService(config, bus, OpsLog(bus)) as service:
        assert service.spools["events:sqlite"].stats().replayed == 1
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        await _until(lambda: all(s.pending == 0 for s in service.stats()))
        stop.set()
        await runner
        assert service.plan is not None
        [sqlite] = [s for s in service.plan.stores.values() if isinstance(s, SqliteStore)]
        assert await sqlite.read_events() == [event]
