"""`/api/portal/stream` over real HTTP: each event kind, tenants, resume, slow clients, files."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dtp_console.api.config import ApiConfig
from dtp_console.api.server import ApiServer
from dtp_console.events import Bus, TwinUpdated
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.model import ServiceSpec, TwinRecord, TwinSpec
from dtp_console.registry.runner import run_registry
from dtp_console.registry.service import RegistryService
from tests.support.api import TOKENS, ApiRig, api_rig, auth, read_events, token_entries

pytestmark = pytest.mark.integration

STREAM = "/api/portal/stream"


def _spec(twin_id: str, tenant: str = "plant-a", **extra: Any) -> TwinSpec:
    return TwinSpec(id=twin_id, name=twin_id, tenant=tenant, **extra)


@contextlib.asynccontextmanager
async def _stream(rig: ApiRig, label: str, query: str = "", **headers: str) -> Any:
    async with rig.session.get(
        rig.url + STREAM + query, headers={**auth(label), **headers}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        yield resp


async def _attached(rig: ApiRig, count: int) -> None:
    async with asyncio.timeout(5):
        while rig.server.hub.stats.clients < count:
            await asyncio.sleep(0.01)


async def test_each_event_kind_arrives_with_an_id(tmp_path: Path) -> None:
    async with api_rig(tmp_path) as rig, _stream(rig, "viewer-a") as resp:
        await _attached(rig, 1)
        await rig.registry.register(_spec("dt:L1"))
        await rig.registry.activate("dt:L1")
        await rig.registry.deprecate("dt:L1")
        await rig.registry.delete("dt:L1")
        await rig.registry.register_service(
            ServiceSpec(id="svc:ui", name="ui", category="ui", tenant="plant-a")
        )
        events = await read_events(resp, 5)
    assert [e.event for e in events] == [
        "twin.update",
        "twin.update",
        "twin.delete",
        "twin.delete",
        "service.update",
    ]
    assert events[0].data["created"] is True
    assert events[1].data["twin"]["status"] == "active"
    assert (events[2].data["hard"], events[2].data["twin"]["status"]) == (False, "deprecated")
    assert events[3].data["hard"] is True
    assert events[4].data["service"]["id"] == "svc:ui"
    ids = [e.id for e in events]
    assert all(ids) and len(set(ids)) == 5
    seqs = [int(str(i).rpartition("-")[2]) for i in ids]
    assert seqs == sorted(seqs)


async def test_a_token_never_sees_another_tenants_events(tmp_path: Path) -> None:
    async with (
        api_rig(tmp_path) as rig,
        _stream(rig, "viewer-a") as only_a,
        _stream(rig, "admin-all", "?tenant=plant-b") as only_b,
    ):
        await _attached(rig, 2)
        await rig.registry.register(_spec("dt:B1", "plant-b"))
        await rig.registry.register_service(
            ServiceSpec(id="svc:b", name="b", category="ui", tenant="plant-b")
        )
        await rig.registry.register(_spec("dt:A1"))
        seen_a = await read_events(only_a, 1)
        seen_b = await read_events(only_b, 2)
        status, _ = await rig.call("GET", STREAM + "?tenant=plant-b", "viewer-a")
    assert [(e.event, e.data["twin"]["id"]) for e in seen_a] == [("twin.update", "dt:A1")]
    assert [e.event for e in seen_b] == ["twin.update", "service.update"]
    assert status == 403


async def test_the_stream_hides_dependencies_on_twins_of_tenants_a_token_cannot_see(
    tmp_path: Path,
) -> None:
    # The registry flags dependencies over every tenant (a fleet may use a shared lift);
    # a plant-b token must not learn from the flag that dt:secret-a exists in plant-a.
    deps = {"static": ["dt:secret-a", "dt:none"]}
    async with (
        api_rig(tmp_path) as rig,
        _stream(rig, "operator-b") as only_b,
        _stream(rig, "admin-all", "?tenant=plant-b") as everyone,
    ):
        await _attached(rig, 2)
        await rig.registry.register(_spec("dt:secret-a"))
        await rig.registry.register(_spec("dt:probe", "plant-b", dependencies=deps))
        await rig.registry.deprecate("dt:probe")  # twin.delete (soft): flagged as well
        (seen_b, soft_b) = await read_events(only_b, 2)
        (seen_all, soft_all) = await read_events(everyone, 2)
        # A client resuming from the replay buffer gets its own view too (after event 1,
        # dt:secret-a's registration, which it never sees).
        after_first = rig.server.hub.last_id.rpartition("-")[0] + "-1"
        async with _stream(rig, "operator-b", **{"Last-Event-ID": after_first}) as resumed:
            (again_b, _) = await read_events(resumed, 2)
    for event in (seen_b, soft_b, again_b):
        assert event.data["twin"]["unknown_dependencies"] == ["dt:secret-a", "dt:none"]
    for event in (seen_all, soft_all):
        assert event.data["twin"]["unknown_dependencies"] == ["dt:none"]
    assert (seen_b.id, soft_b.id, again_b.id) == (seen_all.id, soft_all.id, seen_all.id)


async def test_last_event_id_resumes_from_the_replay_buffer(tmp_path: Path) -> None:
    async with api_rig(tmp_path, stream_replay=3) as rig:
        async with _stream(rig, "viewer-a") as resp:
            await _attached(rig, 1)
            await rig.registry.register(_spec("dt:L1"))
            (first,) = await read_events(resp, 1)
        for n in (2, 3):
            await rig.registry.register(_spec(f"dt:L{n}"))
        await rig.registry.register(_spec("dt:B", "plant-b"))  # buffered, not for this token
        assert first.id is not None
        async with _stream(rig, "viewer-a", **{"Last-Event-ID": first.id}) as resp:
            resumed = await read_events(resp, 2)
        assert [e.data["twin"]["id"] for e in resumed] == ["dt:L2", "dt:L3"]
        # Older than the buffer holds (3 events): the client is told to re-list.
        await rig.registry.register(_spec("dt:L4"))
        async with _stream(rig, "viewer-a", **{"Last-Event-ID": first.id}) as resp:
            gap = await read_events(resp, 3)
        assert gap[0].event == "stream.gap"
        assert [e.data["twin"]["id"] for e in gap[1:]] == ["dt:L3", "dt:L4"]
        # An id from another process run is never misread as a position.
        async with _stream(rig, "viewer-a", **{"Last-Event-ID": "abc-2"}) as resp:
            other = await read_events(resp, 1)
        assert other[0].event == "stream.gap"


async def test_an_idle_stream_gets_heartbeat_comments(tmp_path: Path) -> None:
    async with api_rig(tmp_path, stream_heartbeat_s=0.1) as rig, _stream(rig, "viewer-a") as resp:
        lines: list[bytes] = []
        async with asyncio.timeout(5):
            while b": heartbeat\n" not in lines:
                lines.append(await resp.content.readline())
    assert lines[0] == b"retry: 3000\n"


def _big_twin(n: int) -> TwinRecord:
    now = dt.datetime.now(dt.UTC)
    return TwinRecord(
        id=f"dt:Big_{n}",
        name="big",
        tenant="plant-a",
        status="active",
        metadata={"blob": "x" * 100_000},
        created_at=now,
        updated_at=now,
    )


async def test_a_slow_client_is_cut_off_and_the_others_get_everything(tmp_path: Path) -> None:
    count = 160  # ≈16 MB of frames: more than any socket buffer between here and the slow one
    async with api_rig(tmp_path, stream_queue=16) as rig:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        host, port = rig.server.address or ("", 0)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        token = TOKENS["viewer-a"][0]
        writer.write(
            f"GET {STREAM} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        await writer.drain()
        async with _stream(rig, "viewer-a") as fast:
            await _attached(rig, 2)
            reading = asyncio.create_task(read_events(fast, count, timeout=30))
            started = time.monotonic()
            for n in range(count):
                rig.bus.publish(TwinUpdated(twin=_big_twin(n)))
                await asyncio.sleep(0.002)
            published_s = time.monotonic() - started
            got = await reading
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        stats = rig.server.hub.stats
    assert [e.data["twin"]["id"] for e in got] == [f"dt:Big_{n}" for n in range(count)]
    assert stats.cut_off == 1
    assert stats.events == count
    assert published_s < 30  # publishing never waited on the slow reader (bounded, not timed)
    del reader


async def test_a_twin_file_edit_is_on_the_stream_within_a_second(tmp_path: Path) -> None:
    root = tmp_path / "twins"
    (root / "lift").mkdir(parents=True)
    twin_file = root / "lift" / "twin.yaml"
    twin_file.write_text('"@id": "dt:Lift_001"\ntenant: plant-a\nname: Lift\n', encoding="utf-8")
    bus = Bus()
    registry: dict[str, RegistryService | None] = {"service": None}
    ready, stop = asyncio.Event(), asyncio.Event()
    config = RegistryConfig(twins_root=root, sqlite_path=tmp_path / "reg.db", debounce_ms=50)
    api = ApiConfig(listen="127.0.0.1:0", tokens=token_entries())
    server = ApiServer(api, bus=bus, registry=lambda: registry["service"])

    def _opened(service: RegistryService | None) -> None:
        registry["service"] = service

    async with server, aiohttp.ClientSession() as session:
        worker = asyncio.create_task(
            run_registry(config, bus, stop=stop, ready=ready, on_open=_opened)
        )
        await asyncio.wait_for(ready.wait(), 10)
        async with session.get(server.url + STREAM, headers=auth("viewer-a")) as resp:
            while server.hub.stats.clients < 1:
                await asyncio.sleep(0.01)
            edited = time.monotonic()
            twin_file.write_text(
                '"@id": "dt:Lift_001"\ntenant: plant-a\nname: Lift two\n', encoding="utf-8"
            )
            (event,) = await read_events(resp, 1, timeout=5)
            took = time.monotonic() - edited
        stop.set()
        await asyncio.wait_for(worker, 10)
    assert (event.event, event.data["twin"]["name"]) == ("twin.update", "Lift two")
    assert took < 1.0, f"{took:.3f} s"
