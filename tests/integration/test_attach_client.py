"""`RemoteEngine` against a stand-in service built from the attach wire contract.

The stand-in speaks /work/notes/attach-wire.md (docs/attach.md): a session, an SSE
state stream whose frames `dtp_console.attach.wire` encodes from real `DeviceState`
objects, and the command routes answering with the contract's status codes. It
lets each test make the service misbehave (cut the stream, send a hostile frame).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from dtp_console.api.config import ApiConfig
from dtp_console.api.server import ApiServer
from dtp_console.attach.client import AttachError, RemoteEngine
from dtp_console.attach.wire import config_to_wire, encode_device, encode_plant_summary, map_etag
from dtp_console.config import load_config
from dtp_console.config.writer import ConfigWriteError, DeviceMapConflictError
from dtp_console.events import Bus, LogLine, StoreHealth, Subscription
from dtp_console.state import DeviceState, PlantState
from dtp_console.view import ConsoleEngine
from tests.support.api import TOKENS, served, token_entries
from tests.support.mosquitto import TlsFiles

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLANT = "Old Plant"
OPERATOR, VIEWER = "standin-operator-token", "standin-viewer-token"


def _frame(event: str, body: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


class StandIn:
    """The service side of the contract, in-process, with knobs to misbehave."""

    def __init__(self) -> None:
        self.config = load_config(ROOT / "config" / "console.yaml")
        self.map = dict(self.config.plants[0].device_map)
        self.plant = PlantState(PLANT)
        self.plant.counters.received = 10
        self.plant.counters.count("forwarded", 10)
        self.device = DeviceState("ati_amr_001", "tugger-05-old", x=1000.0, y=2000.0)
        self.device.vendor_x, self.device.vendor_y = 1.0, 2.0
        self.device.last_message_at = time.monotonic() - 1.0
        self.plant.devices[self.device.vendor_id] = self.device
        self.pushed: asyncio.Queue[bytes] = asyncio.Queue()
        self.streams = 0
        self.cut = asyncio.Event()
        self.puts: list[dict[str, Any]] = []
        self.twin_calls: list[tuple[str, str, str]] = []
        self.after_snapshot: bytes = b""
        """Written right after every snapshot (a service that breaks the protocol each time)."""
        self.redirect_state: str | None = None
        """Answer the state route with a redirect there (a service, or a proxy, that moved)."""

    def role(self, request: web.Request) -> str:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token == OPERATOR:
            return "operator"
        if token == VIEWER:
            return "viewer"
        raise web.HTTPUnauthorized(
            text='{"error": "a bearer token is required"}', content_type="application/json"
        )

    def snapshot(self) -> dict[str, Any]:
        devices = {d.vendor_id: encode_device(d) for d in self.plant.devices.values()}
        return {
            "mono": time.monotonic(),
            "wall": time.time(),
            "plants": {PLANT: {"plant": encode_plant_summary(self.plant), "devices": devices}},
            "auth": {},
            "twinzo_url": "http://127.0.0.1:1",
            "platform": None,
            "stores": None,
        }

    async def session(self, request: web.Request) -> web.Response:
        role = self.role(request)
        body = {
            "protocol": 1,
            "engine": {"host": "standin", "pid": 1, "started_at": time.time(), "version": "x"},
            "principal": {"label": f"{role}-label", "role": role},
            "read_only": "viewer token: read-only" if role == "viewer" else None,
            "config": config_to_wire(self.config),
            "config_path": "/srv/console.yaml",
            "plants": [p.name for p in self.config.plants],
            "device_maps": {PLANT: {"map": self.map, "etag": map_etag(self.map)}},
        }
        return web.json_response(body)

    async def state(self, request: web.Request) -> web.StreamResponse:
        self.role(request)
        self.streams += 1
        if self.redirect_state is not None:
            raise web.HTTPFound(self.redirect_state)
        self.cut.clear()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_frame("snapshot", self.snapshot()) + self.after_snapshot)
        while not self.cut.is_set():
            getting = asyncio.ensure_future(self.pushed.get())
            cutting = asyncio.ensure_future(self.cut.wait())
            await asyncio.wait({getting, cutting}, return_when=asyncio.FIRST_COMPLETED)
            cutting.cancel()
            if not getting.done():
                getting.cancel()
                break
            await response.write(getting.result())
        return response

    async def put_map(self, request: web.Request) -> web.Response:
        if self.role(request) == "viewer":
            return web.json_response({"error": "operator role required"}, status=403)
        body = await request.json()
        self.puts.append(body)
        if request.headers.get("If-Match") != map_etag(self.map):
            conflict = {
                "error": "conflict",
                "message": "the map changed meanwhile",
                "current": self.map,
                "etag": map_etag(self.map),
                "keys": ["ati_amr_001"],
            }
            return web.json_response(conflict, status=412)
        if "bad" in body["mapping"]:
            return web.json_response({"error": "invalid", "message": "bad id"}, status=422)
        if "disk" in body["mapping"]:
            return web.json_response({"error": "write_failed", "message": "disk full"}, status=503)
        self.map = dict(body["mapping"])
        return web.json_response({"mapping": self.map, "etag": map_etag(self.map)})

    async def put_affine(self, request: web.Request) -> web.Response:
        self.role(request)
        body = await request.json()
        answer = {
            "plant": PLANT,
            "values": body["values"],
            "written": "/srv/c.yaml",
            "applied": True,
        }
        return web.json_response(answer)

    async def twins(self, request: web.Request) -> web.Response:
        self.role(request)
        now = "2026-01-01T00:00:00Z"
        twin = {
            "id": "dt:Lift_001",
            "name": "Lift",
            "tenant": "plant-a",
            "status": "active",
            "created_at": now,
            "updated_at": now,
        }
        if request.method != "GET":
            self.twin_calls.append(
                (request.method, request.match_info.get("twin_id", ""), request.query_string)
            )
            twin = {**twin, "status": "deprecated"}
        if "twin_id" in request.match_info:
            if request.match_info["twin_id"] != "dt:Lift_001":
                return web.json_response({"error": "no twin"}, status=404)
            return web.json_response({"twin": twin, "status_history": []})
        return web.json_response({"twins": [twin]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/console/session", self.session)
        app.router.add_get("/api/console/state", self.state)
        app.router.add_put("/api/console/plants/{plant}/device-map", self.put_map)
        app.router.add_put("/api/console/plants/{plant}/affine", self.put_affine)
        app.router.add_get("/api/registry/twins", self.twins)
        app.router.add_route("*", "/api/registry/twins/{twin_id:.+}", self.twins)
        return app


class Rig:
    def __init__(self, standin: StandIn, url: str) -> None:
        self.standin, self.url = standin, url

    async def attach(self, token: str = OPERATOR) -> tuple[RemoteEngine, Subscription]:
        engine = await RemoteEngine.open(self.url, token)
        return engine, engine.subscribe(maxsize=1000)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    standin = StandIn()
    async with served(standin.app()) as url:
        try:
            yield Rig(standin, url)
        finally:
            standin.cut.set()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def _running(engine: RemoteEngine, work: Callable[[], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        await work()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_replica_follows_snapshot_and_deltas_and_events_reach_the_bus(rig: Rig) -> None:
    engine, lines = await rig.attach()
    assert [p.name for p in engine.plants] == ["Old Plant", "HiTech Plant", "VDA Plant"]
    assert engine.link.state == "connecting"
    assert engine.config.logging.file is None  # the service's log path is not ours

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        device = engine.state.plants[PLANT].devices["ati_amr_001"]
        assert (device.x, device.y) == (1000.0, 2000.0)
        age = device.message_age_s(time.monotonic())
        assert age is not None
        assert 0.9 < age < 3.0  # the service's monotonic time moved onto ours
        counters = {"received": 11, "outcomes": {"forwarded": 11}}
        devices = {"ati_amr_001": {"x": 1500.0}}
        delta = {
            "mono": time.monotonic(),
            "plants": {PLANT: {"plant": {"counters": counters}, "devices": devices}},
        }
        rig.standin.pushed.put_nowait(_frame("delta", delta))
        rig.standin.pushed.put_nowait(
            _frame("log", {"ts": 1.0, "level": "WARN", "text": "[red]x[/red]", "plant": PLANT})
        )
        rig.standin.pushed.put_nowait(_frame("store", {"name": "sqlite", "role": "r", "ok": True}))
        await _until(lambda: engine.state.plants[PLANT].devices["ati_amr_001"].x == 1500.0)
        assert engine.state.plants[PLANT].counters.received == 11
        await _until(lambda: lines.queue.qsize() >= 3)
        events = list(lines.drain())
        assert any(isinstance(e, LogLine) and e.text == "[red]x[/red]" for e in events)
        assert any(isinstance(e, StoreHealth) and e.name == "sqlite" for e in events)
        assert engine.store_health["sqlite"].ok is True  # the badges read this, not the bus
        maps = {"device_maps": {PLANT: {"map": {"n": "m"}, "etag": map_etag({"n": "m"})}}}
        rig.standin.pushed.put_nowait(_frame("maps", maps))
        await _until(lambda: engine.device_map(PLANT) == {"n": "m"})

    await _running(engine, work)


async def test_a_cut_stream_keeps_the_picture_goes_down_and_comes_back(rig: Rig) -> None:
    engine, lines = await rig.attach()

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        rig.standin.device.x = 7777.0
        rig.standin.cut.set()
        await _until(lambda: engine.link.state == "down")
        assert engine.link.detail  # why, and when it retries
        assert engine.state.plants[PLANT].devices["ati_amr_001"].x == 1000.0  # the last picture
        with pytest.raises(ConnectionError, match="not connected"):
            await engine.save_device_map(PLANT, {"a": "b"})
        await _until(lambda: engine.link.state == "up")
        assert engine.state.plants[PLANT].devices["ati_amr_001"].x == 7777.0  # fresh snapshot
        assert engine.reconnects == 1
        texts = [e.text for e in lines.drain() if isinstance(e, LogLine)]
        assert any("down" in t for t in texts)
        assert any("up again" in t for t in texts)

    await _running(engine, work)


async def test_a_redirected_stream_is_not_followed_with_the_token(rig: Rig) -> None:
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=404)

    other = web.Application()
    other.router.add_get("/{tail:.*}", elsewhere)
    async with served(other) as url:
        rig.standin.redirect_state = f"{url}/steal"
        engine, _lines = await rig.attach()

        async def work() -> None:
            await _until(lambda: engine.link.state == "down" and rig.standin.streams >= 1)
            assert "302" in engine.link.detail, engine.link.detail
            await asyncio.sleep(0.3)
            assert seen == [], "the client followed the redirect"

        await _running(engine, work)


@pytest.mark.parametrize(
    "frame",
    [
        b"event: delta\ndata: " + b"x" * (9 * 1024 * 1024) + b"\n\n",  # past the line bound
        b"event: delta\ndata: [1, 2]\n\n",  # not an object
        b'event: delta\ndata: {"mono": 1, "plants": {"Old Plant": 5}}\n\n',
        b"event: delta\ndata: \xff\xfe\n\n",  # binary
    ],
    ids=["huge", "array", "wrong-shape", "binary"],
)
async def test_a_hostile_state_frame_drops_the_link_and_reconnects(rig: Rig, frame: bytes) -> None:
    engine, _ = await rig.attach()

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        rig.standin.pushed.put_nowait(frame)
        await _until(lambda: engine.link.state == "down")
        await _until(lambda: engine.link.state == "up")
        assert rig.standin.streams == 2

    await _running(engine, work)


async def test_a_bad_log_event_is_skipped_and_counted_not_fatal(rig: Rig) -> None:
    engine, _ = await rig.attach()

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        rig.standin.pushed.put_nowait(b"event: log\ndata: nope\n\n")
        rig.standin.pushed.put_nowait(_frame("store", {"no": "name"}))
        await _until(lambda: engine.bad_events == 2)
        assert engine.link.state == "up"

    await _running(engine, work)


async def test_commands_fail_as_the_engines_do(rig: Rig) -> None:
    engine, _ = await rig.attach()

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        opened = engine.device_map(PLANT)
        assert opened is not None
        saved = await engine.save_device_map(PLANT, {**opened, "new_1": "new-login"}, opened)
        assert saved["new_1"] == "new-login"
        assert engine.device_map(PLANT) == saved
        with pytest.raises(DeviceMapConflictError) as conflict:
            await engine.save_device_map(PLANT, {"x": "y"}, opened)  # opened is stale now
        assert conflict.value.current == saved
        assert conflict.value.keys == ["ati_amr_001"]
        with pytest.raises(ValueError, match="bad id"):
            await engine.save_device_map(PLANT, {"bad": "x"}, saved)
        with pytest.raises(ConfigWriteError, match="disk full"):
            await engine.save_device_map(PLANT, {"disk": "x"}, saved)
        affine = await engine.save_affine(PLANT, {"a": 1.0, "tx": 5.0}, reason="test")
        assert affine.applied
        assert affine.written == Path("/srv/c.yaml")
        point = engine.capture_point(PLANT, "ati_amr_001", 10.0, 20.0, "p1")
        assert (point.vendor_x, point.vendor_y) == (1.0, 2.0)
        with pytest.raises(ValueError, match="no position"):
            engine.capture_point(PLANT, "nobody", 1.0, 1.0, "p2")

    await _running(engine, work)


async def test_a_viewer_is_read_only_and_refused(rig: Rig) -> None:
    engine, _ = await rig.attach(VIEWER)
    assert engine.read_only == "viewer token: read-only"

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        with pytest.raises(PermissionError, match="operator role required"):
            await engine.save_device_map(PLANT, {"a": "b"}, engine.device_map(PLANT))

    await _running(engine, work)


async def test_the_registry_goes_over_its_routes(rig: Rig) -> None:
    engine, _ = await rig.attach()

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        twins = engine.twins
        assert twins is not None
        assert [t.id for t in await twins.list_twins()] == ["dt:Lift_001"]
        assert (await twins.deprecate("dt:Lift_001")).status == "deprecated"
        await twins.delete("dt:Lift_001")
        assert rig.standin.twin_calls == [
            ("DELETE", "dt:Lift_001", "soft=true"),
            ("DELETE", "dt:Lift_001", "soft=false"),
        ]
        from dtp_console.registry.errors import TwinNotFoundError

        with pytest.raises(TwinNotFoundError):
            await twins.get("dt:Nope")

    await _running(engine, work)


async def test_a_refused_token_is_an_attach_error(rig: Rig) -> None:
    with pytest.raises(AttachError, match="401"):
        await RemoteEngine.open(rig.url, "wrong-token")


def test_a_remote_engine_is_a_console_engine() -> None:
    """mypy (strict, over tests/) checks this assignment: the App takes either engine."""

    def typed(engine: RemoteEngine) -> ConsoleEngine:
        return engine

    assert typed is not None


async def test_tls_is_verified_by_default_and_a_ca_file_is_trusted(tls_files: TlsFiles) -> None:
    config = ApiConfig(
        listen="127.0.0.1:0",
        tls={"cert_file": tls_files.cert, "key_file": tls_files.key},
        tokens=token_entries(),
    )
    # An API serving no console engine: its session route answers 404 once TLS is through.
    async with ApiServer(config, bus=Bus(), registry=lambda: None) as server:
        token = TOKENS["viewer-a"][0]
        with pytest.raises(AttachError, match="certificate"):
            await RemoteEngine.open(server.url, token)
        trusted = ssl.create_default_context(cafile=str(tls_files.ca))
        with pytest.raises(AttachError, match="HTTP 404"):
            await RemoteEngine.open(server.url, token, tls=trusted)


async def test_an_unexpected_error_is_counted_logged_and_the_link_retried(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dtp_console.attach.replica import apply_frame as real

    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            msg = "a defect"
            raise RuntimeError(msg)
        real(*args, **kwargs)

    monkeypatch.setattr("dtp_console.attach.client.apply_frame", flaky)
    engine, lines = await rig.attach()

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        assert engine.crashes == 1
        texts = [e.text for e in lines.drain() if isinstance(e, LogLine)]
        assert any("unexpected RuntimeError('a defect')" in t for t in texts)

    await _running(engine, work)


async def test_a_service_that_goes_silent_is_a_lost_link(rig: Rig) -> None:
    # The stand-in sends no heartbeat: with a short idle bound the link must drop.
    engine = await RemoteEngine.open(rig.url, OPERATOR, idle_s=0.5)

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        await _until(lambda: engine.link.state == "down")
        assert "nothing from the service for 0.5s" in engine.link.detail
        await _until(lambda: rig.standin.streams >= 2)

    await _running(engine, work)


async def test_a_service_that_breaks_every_link_is_retried_ever_more_slowly(rig: Rig) -> None:
    rig.standin.after_snapshot = b"event: delta\ndata: [1]\n\n"
    engine, _ = await rig.attach()

    async def work() -> None:
        await _until(lambda: rig.standin.streams >= 3)
        assert engine.backoff.failures >= 2  # a snapshot alone does not reset the backoff
        assert engine.link.state == "down"

    await _running(engine, work)
