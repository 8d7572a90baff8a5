"""`/healthz` and `/readyz` bodies over a real engine: sandbox, private mosquitto, stores.

Readiness is False before the workers start, False while a plant's broker is
down (with since when and why), True once every enabled part is up, and the
body is JSON that carries no secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dtp_console import __version__, health
from dtp_console.health import liveness, readiness
from dtp_console.metrics import render_metrics
from dtp_console.runtime import Engine
from dtp_console.state import PlantState
from tests.support.engine import TWINZO_SECRETS, engine_config, running, until
from tests.support.mosquitto import MosquittoServer, free_port

HOSTILE_PLANT = 'Plant "A"\\\n<b>[red]Zürich[/red]</b> ✓'


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    with MosquittoServer(tmp_path / "mosquitto") as server:
        yield server


def _json(body: dict[str, Any]) -> dict[str, Any]:
    """The body as the API would send it: strict JSON (no NaN), read back."""
    decoded: dict[str, Any] = json.loads(json.dumps(body, allow_nan=False))
    return decoded


async def _ready(engine: Engine) -> bool:
    ready, _ = await readiness(engine)
    return ready


async def _until_ready(engine: Engine, want: bool, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ready, body = await readiness(engine)
        if ready is want:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"readiness never became {want}: {body['not_ready']}")
        await asyncio.sleep(0.05)


async def test_liveness_is_json_with_version_pid_and_uptime(tmp_path: Path) -> None:
    engine = Engine(engine_config(tmp_path, free_port(), registry=False), simulate=False)
    before = _json(liveness(engine))
    assert before == {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "started_at": None,
        "uptime_s": None,
    }
    async with running(engine):
        after = _json(liveness(engine))
    assert after["started_at"] == pytest.approx(time.time(), abs=30)
    assert 0 <= after["uptime_s"] < 30


async def test_not_ready_before_the_engine_starts(tmp_path: Path) -> None:
    engine = Engine(engine_config(tmp_path, free_port(), stores={}), simulate=False)
    ready, body = await readiness(engine)
    assert ready is False
    body = _json(body)
    assert body["ready"] is False and body["started"] is False
    assert "workers not started" in body["not_ready"]
    assert body["bridges"]["Old Plant"]["mqtt"] == "not started"
    assert body["stores"] == {"enabled": True, "up": False, "stores": {}}
    assert body["registry"]["up"] is False
    assert body["twinzo"]["up"] is False


@pytest.mark.integration
async def test_ready_when_every_part_is_up_and_the_body_keeps_no_secret(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    config = engine_config(
        tmp_path,
        broker.port,
        plants=[{"name": HOSTILE_PLANT, "device_map": {"ati_amr_001": "tugger-05-old"}}],
        stores={},
    )
    engine = Engine(config, simulate=False)
    async with running(engine):
        body = _json(await _until_ready(engine, True))
    assert body["not_ready"] == []
    assert body["started"] is True
    bridge = body["bridges"][HOSTILE_PLANT]  # outside text comes back exactly (JSON escapes it)
    assert bridge["up"] is True and bridge["connected"] is True
    assert bridge["mqtt"] == "connected"
    assert bridge["broker"] == f"127.0.0.1:{broker.port}"
    assert bridge["since"] == pytest.approx(time.time(), abs=30)
    assert bridge["connects"] == 1
    assert bridge["last_error"] is None and bridge["silent"] is None
    stores = body["stores"]
    assert stores["enabled"] is True and stores["up"] is True
    assert set(stores["stores"]) == {"sqlite", "folder"}
    assert all(s["up"] and s["error"] is None for s in stores["stores"].values())
    assert body["registry"] == {
        "enabled": True,
        "up": True,
        "running": True,
        "repository": "sqlite",
    }
    twinzo = body["twinzo"]
    assert twinzo["up"] is True and twinzo["sandbox"] is True
    assert twinzo["url"].startswith("http://127.0.0.1:")
    text = json.dumps(body)
    for secret in (TWINZO_SECRETS["password"], TWINZO_SECRETS["api_key"]):
        assert secret not in text


@pytest.mark.integration
async def test_broker_down_is_not_ready_with_since_and_last_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    engine = Engine(engine_config(tmp_path, port, registry=False), simulate=False)
    async with running(engine):
        plant = engine.state.plants["Old Plant"]
        await until(lambda: plant.mqtt_error is not None, what="a failed connect")
        await asyncio.sleep(0.6)  # a few retries later
        ready, body = await readiness(engine)
    assert ready is False
    body = _json(body)
    assert body["started"] is True
    bridge = body["bridges"]["Old Plant"]
    assert bridge["up"] is False and bridge["connected"] is False
    assert bridge["mqtt"] in ("connecting", "disconnected")
    # Down since the first attempt: the retries (every 0.1-0.5 s) do not move it.
    assert bridge["since"] == pytest.approx(engine.state.started_at, abs=2)
    assert bridge["last_error"]
    assert bridge["connects"] == 0
    assert any(p.startswith("bridge Old Plant: MQTT ") for p in body["not_ready"])
    # The parts that are up say so: only the bridge holds readiness back.
    assert body["twinzo"]["up"] is True
    assert len(body["not_ready"]) == 1


@pytest.mark.integration
async def test_a_broker_that_goes_away_and_comes_back(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    engine = Engine(engine_config(tmp_path, broker.port, registry=False), simulate=False)
    async with running(engine):
        await _until_ready(engine, True)
        broker.stop()
        body = _json(await _until_ready(engine, False))
        bridge = body["bridges"]["Old Plant"]
        assert bridge["last_error"], bridge
        went_down = bridge["since"]
        broker.start()
        body = _json(await _until_ready(engine, True, timeout=15))
    bridge = body["bridges"]["Old Plant"]
    assert bridge["connects"] == 2
    assert bridge["since"] >= went_down
    assert bridge["last_error"]  # the last disconnect's reason is kept after the reconnect


@pytest.mark.integration
async def test_a_store_that_is_down_is_not_ready_and_its_dsn_stays_masked(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    secret = "test-store-secret"
    dsn = f"postgresql://dtp:{secret}@127.0.0.1:{free_port()}/dtp?sslmode=disable"
    config = engine_config(tmp_path, broker.port, registry=False, stores={"postgres": {"dsn": dsn}})
    engine = Engine(config, simulate=False)
    async with running(engine):
        await until(
            lambda: engine.stores is not None and "postgres" in engine.stores.health,
            what="a postgres health check",
        )
        ready, body = await readiness(engine)
    assert ready is False
    body = _json(body)
    postgres = body["stores"]["stores"]["postgres"]
    assert postgres["up"] is False and postgres["error"]
    assert body["stores"]["up"] is False
    assert any(p.startswith("store postgres: ") for p in body["not_ready"])
    assert body["bridges"]["Old Plant"]["up"] is True
    assert secret not in json.dumps(body)


@pytest.mark.integration
async def test_the_silence_hook_holds_readiness_back(
    broker: MosquittoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(engine_config(tmp_path, broker.port, registry=False), simulate=False)
    async with running(engine):
        await _until_ready(engine, True)
        silent = "no message for 312 s (bound 300 s)"
        monkeypatch.setattr(
            health, "plant_silence", lambda _e, name: silent if name == "Old Plant" else None
        )
        ready, body = await readiness(engine)
    assert ready is False
    assert body["bridges"]["Old Plant"]["silent"] == silent
    assert body["bridges"]["Old Plant"]["up"] is False
    assert body["not_ready"] == [f"bridge Old Plant: {silent}"]


@pytest.mark.integration
async def test_a_plant_the_watchdog_finds_silent_is_not_ready(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    engine = Engine(engine_config(tmp_path, broker.port, registry=False), simulate=False)
    async with running(engine):
        await _until_ready(engine, True)
        engine.state.plants["Old Plant"].silent = True  # what the watchdog sets
        ready, body = await readiness(engine)
        assert ready is False
        reason = body["bridges"]["Old Plant"]["silent"]
        assert reason.startswith("no message") and "silence_reconnect_s 30 s" in reason
        assert body["not_ready"] == [f"bridge Old Plant: {reason}"]
        engine.state.plants["Old Plant"].silent = False  # messages flow again
        assert await _ready(engine)


@pytest.mark.integration
async def test_ha_standby_is_ready_and_no_lock_is_not(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    engine = Engine(engine_config(tmp_path, broker.port, registry=False), simulate=False)
    async with running(engine):
        await _until_ready(engine, True)
        plant = engine.state.plants["Old Plant"]
        plant.ha_role, plant.ha_holder = "standby", "other-host:42"
        ready, body = await readiness(engine)
        assert ready is True
        assert body["bridges"]["Old Plant"]["ha"]["role"] == "standby"
        plant.ha_role = "no_lock"
        plant.ha_detail = "lock check failed: postgresql://dtp:change-me@db.example/dtp"
        ready, body = await readiness(engine)
        assert ready is False
        assert body["not_ready"] == [
            "bridge Old Plant: no HA lock (lock check failed: postgresql://***@db.example/dtp)"
        ]
        assert "change-me" not in json.dumps(body)
        text = (await render_metrics(engine)).decode()
        assert 'dtp_plant_ha_role{plant="Old Plant",role="no_lock"} 1.0' in text
        assert 'dtp_plant_ha_role{plant="Old Plant",role="active"} 0.0' in text


@pytest.mark.integration
async def test_twinzo_is_down_when_every_login_failed(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    engine = Engine(engine_config(tmp_path, broker.port, registry=False), simulate=False)
    async with running(engine):
        await _until_ready(engine, True)
        auth = engine.state.auth_for("tugger-05-old")
        auth.status, auth.last_result = "failed", "401"
        ready, body = await readiness(engine)
        assert ready is False
        assert body["twinzo"]["failed_logins"] == {"tugger-05-old": "401"}
        assert body["not_ready"] == ["twinzo: every device login failed to authenticate (1)"]
        engine.state.auth_for("tugger-06-old").status = "valid"  # one login works: up
        assert await _ready(engine)


async def test_disabled_parts_do_not_count(tmp_path: Path) -> None:
    engine = Engine(engine_config(tmp_path, free_port(), registry=False), simulate=False)
    _, body = await readiness(engine)
    assert body["stores"] == {"enabled": False, "up": True, "stores": {}}
    assert body["registry"] == {"enabled": False, "up": True}
    assert body["not_ready"][0] == "workers not started"


def test_mqtt_since_moves_when_the_session_comes_up_or_goes_down_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    plant = PlantState("P")
    plant.set_mqtt("connecting", "127.0.0.1:1883")
    assert plant.mqtt_since == 100.0
    for status in ("disconnected", "connecting", "disconnected"):  # retries: still down
        now[0] += 1
        plant.set_mqtt(status, "Connection refused" if status == "disconnected" else "")
    assert plant.mqtt_since == 100.0
    assert plant.mqtt_error == "Connection refused"
    now[0] = 200.0
    plant.set_mqtt("connected", "127.0.0.1:1883")
    assert (plant.mqtt, plant.mqtt_detail, plant.mqtt_since) == ("connected", "127.0.0.1:1883", 200)
    assert plant.mqtt_error == "Connection refused"  # the last error is kept after a reconnect
    now[0] = 300.0
    plant.set_mqtt("stopped")
    assert plant.mqtt_since == 300.0
