"""`/api/console/...` over real HTTP against a running console with simulated robots.

The attach service side of issue #21: the session without secrets, the commands
with roles, etags and the config file's comments, and the state stream's snapshot,
deltas, filter, rate and slow-client cut-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dtp_console.attach.wire import PLACEHOLDER, config_from_wire, map_etag
from dtp_console.config import load_config
from dtp_console.events import TwinUpdated
from dtp_console.registry.model import TwinRecord
from dtp_console.runtime import Engine
from tests.support.api import TOKENS, SseEvent, auth, read_events, token_entries
from tests.support.engine import until

pytestmark = pytest.mark.integration

#: Test placeholders (never real credentials) that must not leave the service.
PASSWORD = "attach-test-device-pw-7731"
API_KEY = "attach-test-api-key-7732"

CONFIG = """\
# plant config kept by operators
twinzo: {{client: demo, password: {password}, api_key: {api_key}}}
sandbox: {{enabled: true}}
registry: {{enabled: false}}
simulator: {{enabled: true}}
stores: {{sqlite_path: {tmp}/platform.db, blob_dir: {tmp}/blobs}}
api:
  listen: 127.0.0.1:0
  stream_queue: {queue}
  tokens: {tokens}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: embedded, topics: [ati_fm/sherpa/status]}}
    device_map:
      ati_amr_001: tugger-05-old   # the first tugger
      ati_amr_002: tugger-06-old
    twinzo: {{sector_id: 2}}
    min_post_interval_ms: 0
    simulator: {{robots: 3, unmapped: 1, rate_hz: {rate}, seed: 3, fault_rate: 0}}
  - name: Second Plant
    format: ati_sherpa
    broker: {{host: embedded, topics: [ati_fm/sherpa/status]}}
    device_map:
      ati_amr_001: tugger-21
    twinzo: {{sector_id: 3}}
    simulator: {{robots: 1, rate_hz: 1, seed: 4, fault_rate: 0}}
"""

DEVICE_MAP = "/api/console/plants/Old%20Plant/device-map"
AFFINE = "/api/console/plants/Old%20Plant/affine"


class Console:
    """A running engine with its config file, and an HTTP session to its API."""

    def __init__(self, engine: Engine, path: Path, session: aiohttp.ClientSession) -> None:
        self.engine, self.path, self.session = engine, path, session

    @property
    def url(self) -> str:
        return str(self.engine.api.url)

    async def call(
        self, method: str, path: str, label: str | None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if label is not None:
            headers.update(auth(label))
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as r:
            raw = await r.read()
            if r.content_type == "application/json":
                return r.status, json.loads(raw)
            return r.status, raw.decode("utf-8", "replace")

    async def put_map(
        self, mapping: dict[str, str], label: str = "operator-a", etag: str | None = "current"
    ) -> tuple[int, Any]:
        running = self.engine.device_map("Old Plant") or {}
        headers = (
            {} if etag is None else {"If-Match": map_etag(running) if etag == "current" else etag}
        )
        body = {"mapping": mapping, "base": running}
        return await self.call("PUT", DEVICE_MAP, label, json=body, headers=headers)


@contextlib.asynccontextmanager
async def _console(
    tmp_path: Path, *, rate: float = 5.0, queue: int = 256
) -> AsyncIterator[Console]:
    tokens = json.dumps([t.model_dump() for t in token_entries()])
    path = tmp_path / "conf" / "console.yaml"
    path.parent.mkdir()
    path.write_text(
        CONFIG.format(
            password=PASSWORD, api_key=API_KEY, tmp=tmp_path, tokens=tokens, rate=rate, queue=queue
        ),
        encoding="utf-8",
    )
    engine = Engine(load_config(path, environ={}), config_path=path)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        await asyncio.wait_for(engine.ready.wait(), 15)
        # Stopping while aiomqtt is still connecting waits out its connect thread.
        await until(
            lambda: all(p.mqtt == "connected" for p in engine.state.plants.values()),
            what="every plant connected",
        )
        async with aiohttp.ClientSession() as session:
            yield Console(engine, path, session)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with _console(tmp_path) as running:
        yield running


# -- the session ------------------------------------------------------------------------


async def test_session_has_the_config_without_any_secret(console: Console) -> None:
    status, body = await console.call("GET", "/api/console/session", "viewer-a")
    assert status == 200
    text = json.dumps(body)
    for secret in (PASSWORD, API_KEY, *(token for token, _, _ in TOKENS.values())):
        assert secret not in text
    for entry in token_entries():
        assert entry.hash not in text
    assert body["protocol"] == 1
    assert body["principal"] == {"label": "viewer-a", "role": "viewer"}
    assert body["read_only"] == "viewer token: read-only"
    assert body["plants"] == ["Old Plant", "Second Plant"]
    assert body["config_path"] == str(console.path)
    assert body["engine"]["pid"] > 0 and body["engine"]["version"]
    old = body["device_maps"]["Old Plant"]
    assert old["map"] == {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"}
    assert old["etag"] == map_etag(old["map"])
    assert body["affines"]["Old Plant"]["a"] == 1.0
    config = config_from_wire(body["config"])
    assert config.twinzo.password.get_secret_value() == PLACEHOLDER
    assert [p.name for p in config.plants] == body["plants"]

    _, operator = await console.call("GET", "/api/console/session", "operator-a")
    assert operator["read_only"] is None


async def test_session_needs_a_token(console: Console) -> None:
    status, body = await console.call("GET", "/api/console/session", None)
    assert status == 401 and "error" in body


# -- the commands ---------------------------------------------------------------------


async def test_a_viewer_reads_but_may_not_write(console: Console) -> None:
    before = console.path.read_text(encoding="utf-8")
    status, _ = await console.put_map({"ati_amr_001": "tugger-09"}, label="viewer-a")
    assert status == 403
    affine = {"values": {"a": 2.0, "d": 2.0}, "reason": "test"}
    status, _ = await console.call("PUT", AFFINE, "viewer-a", json=affine)
    assert status == 403
    assert console.path.read_text(encoding="utf-8") == before
    assert console.engine.device_map("Old Plant") == {
        "ati_amr_001": "tugger-05-old",
        "ati_amr_002": "tugger-06-old",
    }


async def test_an_operator_saves_a_map_into_the_file_and_the_bridge(console: Console) -> None:
    new = {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old", "ati_amr_003": "t-7"}
    status, body = await console.put_map(new)
    assert status == 200, body
    assert body == {"mapping": new, "etag": map_etag(new)}
    assert console.engine.bridges["Old Plant"].device_map == new
    text = console.path.read_text(encoding="utf-8")
    assert "# plant config kept by operators" in text
    assert "# the first tugger" in text
    assert load_config(console.path, environ={}).plant("Old Plant").device_map == new
    # The write is in event_log with the token's label (never the token).
    await until(lambda: _api_writes(console) != [], what="the write recorded")
    writes = _api_writes(console)
    assert [(w["token"], w["method"], w["status"], w["target"]) for w in writes] == [
        ("operator-a", "PUT", 200, "Old Plant")
    ]
    assert TOKENS["operator-a"][0] not in json.dumps(writes)


def _api_writes(console: Console) -> list[dict[str, Any]]:
    db_path = console.path.parent.parent / "platform.db"
    if not db_path.exists():
        return []
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        try:
            rows = db.execute("SELECT body FROM event_log WHERE source = 'api'").fetchall()
        except sqlite3.OperationalError:
            return []
    return [json.loads(r[0]) for r in rows]


async def test_a_stale_etag_is_412_and_the_file_untouched(console: Console) -> None:
    before = console.path.read_text(encoding="utf-8")
    opened = dict(console.engine.device_map("Old Plant") or {})
    stale = map_etag(opened)
    # Another operator changes ati_amr_002 meanwhile.
    status, _ = await console.put_map({**opened, "ati_amr_002": "tugger-16"}, label="admin-all")
    assert status == 200
    changed = console.path.read_text(encoding="utf-8")
    assert changed != before
    mine = {**opened, "ati_amr_002": "tugger-26"}
    body = {"mapping": mine, "base": opened}
    status, conflict = await console.call(
        "PUT", DEVICE_MAP, "operator-a", json=body, headers={"If-Match": stale}
    )
    assert status == 412
    assert conflict["error"] == "conflict"
    assert conflict["current"] == {**opened, "ati_amr_002": "tugger-16"}
    assert conflict["etag"] == map_etag(conflict["current"])
    assert conflict["keys"] == ["ati_amr_002"]
    assert console.path.read_text(encoding="utf-8") == changed  # never clobbered


async def test_without_if_match_it_is_428(console: Console) -> None:
    before = console.path.read_text(encoding="utf-8")
    status, body = await console.put_map({"ati_amr_001": "tugger-09"}, etag=None)
    assert status == 428 and body["error"] == "precondition_required"
    assert console.path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    "mapping",
    [
        {"ati_amr_001": "tugger 05"},  # a login with a space
        {"ati_amr_001": "same", "ati_amr_002": "same"},  # two robots on one login
        {" padded": "tugger-08"},
        {"ati_amr_001": "[bold]x[/]"},  # markup is no login
    ],
)
async def test_an_invalid_map_is_422_and_nothing_changes(
    console: Console, mapping: dict[str, str]
) -> None:
    before = console.path.read_text(encoding="utf-8")
    running = console.engine.device_map("Old Plant")
    status, body = await console.put_map(mapping)
    assert status == 422, body
    assert body["error"] == "invalid" and body["message"]
    assert console.path.read_text(encoding="utf-8") == before
    assert console.engine.device_map("Old Plant") == running


async def test_a_body_that_is_no_map_is_422(console: Console) -> None:
    headers = {"If-Match": map_etag(console.engine.device_map("Old Plant") or {})}
    bodies: list[dict[str, Any]] = [{"mapping": {"a": 1}}, {"mapping": []}, {"nope": {}}, {}]
    for body in bodies:
        status, answer = await console.call(
            "PUT", DEVICE_MAP, "operator-a", json=body, headers=headers
        )
        assert status == 422, (body, answer)
        assert answer["error"] == "invalid"


HOSTILE = [
    "[bold red]markup[/]",
    "<script>alert(1)</script>",
    "ünïcødé-机器人-🤖",
    "esc\x1b[31m-bell\x07",
    "x" * 10_000,
]


async def test_hostile_vendor_ids_are_saved_as_text(console: Console) -> None:
    running = console.engine.device_map("Old Plant") or {}
    new = {**running, **{vid: f"hostile-{n}" for n, vid in enumerate(HOSTILE)}}
    status, body = await console.put_map(new)
    assert status == 200, body
    assert body["mapping"] == new
    assert load_config(console.path, environ={}).plant("Old Plant").device_map == new
    _, session = await console.call("GET", "/api/console/session", "viewer-a")
    assert session["device_maps"]["Old Plant"]["map"] == new
    assert "# the first tugger" in console.path.read_text(encoding="utf-8")


async def test_unknown_plant_is_404(console: Console) -> None:
    status, body = await console.call(
        "PUT",
        "/api/console/plants/%3Cscript%3E/device-map",
        "operator-a",
        json={"mapping": {}},
        headers={"If-Match": '"x"'},
    )
    assert status == 404 and body["error"] == "not_found"
    status, _ = await console.call("GET", "/api/console/state?devices=Nope", "viewer-a")
    assert status == 404


async def test_an_operator_saves_an_affine(console: Console) -> None:
    values = {"a": 1000.0, "b": 0.0, "c": 0.0, "d": -1000.0, "tx": 5.0, "ty": 7.0}
    status, body = await console.call(
        "PUT", AFFINE, "operator-a", json={"values": values, "reason": "calibration"}
    )
    assert status == 200, body
    assert body["plant"] == "Old Plant" and body["applied"] is True
    assert body["written"] == str(console.path)
    assert console.engine.bridges["Old Plant"].affine.a == 1000.0
    assert "# the first tugger" in console.path.read_text(encoding="utf-8")
    assert load_config(console.path, environ={}).plant("Old Plant").affine.d == -1000.0

    before = console.path.read_text(encoding="utf-8")
    singular = {"values": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}, "reason": "x"}
    for bad in (singular, {"values": {"q": 1.0}}, {"values": {"a": "nan"}}, {"reason": "x"}):
        status, body = await console.call("PUT", AFFINE, "operator-a", json=bad)
        assert status == 422, (bad, body)
    assert console.path.read_text(encoding="utf-8") == before


# -- the state stream -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _state(
    console: Console, query: str = "", label: str = "viewer-a"
) -> AsyncIterator[aiohttp.ClientResponse]:
    async with console.session.get(
        console.url + "/api/console/state" + query, headers=auth(label)
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        yield resp


async def _frames_for(resp: aiohttp.ClientResponse, seconds: float) -> list[SseEvent]:
    out: list[SseEvent] = []
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError):
        while (left := deadline - time.monotonic()) > 0:
            out.extend(await read_events(resp, 1, timeout=left))
    return out


async def test_snapshot_then_deltas_of_only_what_changed(tmp_path: Path) -> None:
    async with (
        _console(tmp_path, rate=20.0) as console,
        _state(console, "?devices=old%20plant") as resp,
    ):
        await until(
            lambda: console.engine.state.plants["Old Plant"].counters.received > 0,
            what="robots reporting",
        )
        first = (await read_events(resp, 1))[0]
        assert first.event == "snapshot"
        snap = first.data
        assert set(snap) >= {"mono", "wall", "plants", "auth", "twinzo_url", "platform", "stores"}
        assert set(snap["plants"]) == {"Old Plant", "Second Plant"}
        assert "devices" in snap["plants"]["Old Plant"]  # `old plant` names it
        assert "devices" not in snap["plants"]["Second Plant"]  # only its summary
        events = await _frames_for(resp, 2.0)
    deltas = [e for e in events if e.event == "delta"]
    # At most one state frame per 100 ms tick, with 3 robots at 20 Hz moving all the time.
    assert 5 <= len(deltas) <= 21, len(deltas)
    assert any(e.event == "maps" for e in events)
    monos = [d.data["mono"] for d in deltas]
    assert monos == sorted(monos)
    assert min(b - a for a, b in itertools.pairwise(monos)) >= 0.09
    # Apply the deltas to the snapshot: every delta key really changed something.
    devices = dict(snap["plants"]["Old Plant"]["devices"])
    changed_somewhere = False
    for delta in deltas:
        for name, plant in delta.data.get("plants", {}).items():
            assert plant is not None
            assert "devices" not in plant or name == "Old Plant"
            for vid, device in plant.get("devices", {}).items():
                if vid not in devices or device is None:
                    devices[vid] = device
                    continue
                assert device, "an empty device delta"
                for key, value in device.items():
                    assert devices[vid][key] != value, (vid, key)
                    changed_somewhere = True
                devices[vid] = {**devices[vid], **device}
                assert "vendor_id" not in device  # unchanged keys are left out
    assert changed_somewhere


def _devices_of(event: SseEvent, plant: str) -> dict[str, Any]:
    entry = (event.data.get("plants") or {}).get(plant) or {}
    return dict(entry.get("devices") or {})


async def test_a_removed_device_is_null_and_maps_changes_are_events(console: Console) -> None:
    async with _state(console, "?devices=Old%20Plant") as resp:
        seen: list[SseEvent] = []
        async with asyncio.timeout(10):  # the client knows the robot before it is unmapped
            while not any(_devices_of(e, "Old Plant").get("ati_amr_002") for e in seen):
                seen.extend(await read_events(resp, 1))
        status, _ = await console.put_map({"ati_amr_001": "tugger-05-old"})
        assert status == 200
        events = await _frames_for(resp, 1.5)
    gone = [
        e for e in events if e.event == "delta" and "ati_amr_002" in _devices_of(e, "Old Plant")
    ]
    assert len(gone) == 1
    assert _devices_of(gone[0], "Old Plant")["ati_amr_002"] is None
    maps = [e.data for e in events if e.event == "maps"]
    assert maps[-1]["device_maps"]["Old Plant"]["map"] == {"ati_amr_001": "tugger-05-old"}
    assert maps[-1]["device_maps"]["Old Plant"]["etag"] == map_etag(
        {"ati_amr_001": "tugger-05-old"}
    )
    assert "Old Plant" in maps[-1]["affines"]
    logs = [e.data for e in events if e.event == "log"]
    assert any("device map of Old Plant saved" in line["text"] for line in logs)


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


async def test_a_slow_client_is_cut_off_and_another_keeps_receiving(tmp_path: Path) -> None:
    count = 160  # ≈16 MB of twin frames: more than any socket buffer to the slow reader
    async with _console(tmp_path, queue=16) as console:
        feed = console.engine.api.console.feed
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        host, port = console.engine.api.address
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        token = TOKENS["admin-all"][0]
        writer.write(
            f"GET /api/console/state HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        await writer.drain()
        async with _state(console, label="admin-all") as fast:
            await until(lambda: feed.stats.clients == 2, what="both attached")
            received: list[SseEvent] = []

            async def _read_twins() -> None:
                while sum(e.event == "twin" for e in received) < count:
                    received.extend(await read_events(fast, 1, timeout=30))

            reading = asyncio.create_task(_read_twins())
            for n in range(count):
                console.engine.bus.publish(TwinUpdated(twin=_big_twin(n)))
                await asyncio.sleep(0.002)
            await asyncio.wait_for(reading, 60)
            assert feed.stats.cut_off == 1
            assert feed.stats.clients == 1
            # The fast one still gets state after the cut.
            more = await _frames_for(fast, 1.0)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    twins = [e.data for e in received if e.event == "twin"]
    assert [t["twin"]["id"] for t in twins] == [f"dt:Big_{n}" for n in range(count)]
    assert twins[0]["kind"] == "twin.update"
    assert any(e.event == "delta" for e in more)
    del reader


async def test_a_viewer_of_one_tenant_gets_only_its_twins(console: Console) -> None:
    async with _state(console, label="viewer-a") as resp:
        for tenant in ("plant-b", "plant-a"):
            twin = _big_twin(0).model_copy(update={"tenant": tenant, "id": f"dt:T_{tenant}"})
            console.engine.bus.publish(TwinUpdated(twin=twin))
        events = await _frames_for(resp, 0.6)
    twins = [e.data["twin"]["id"] for e in events if e.event == "twin"]
    assert twins == ["dt:T_plant-a"]


async def test_with_no_client_the_feed_runs_nothing(console: Console) -> None:
    feed = console.engine.api.console.feed
    assert not feed.active  # nothing subscribed before the first client
    async with _state(console) as resp:
        assert (await read_events(resp, 1))[0].event == "snapshot"
        assert feed.active and feed.stats.clients == 1
    await until(lambda: not feed.active, what="the feed stopped")
    assert feed.stats.clients == 0
    ticks = feed.stats.ticks
    await asyncio.sleep(0.3)
    assert feed.stats.ticks == ticks
    async with _state(console) as resp:  # and it starts again for the next one
        assert (await read_events(resp, 1))[0].event == "snapshot"
        await until(lambda: feed.stats.ticks > ticks, what="ticking again")
