"""The platform worker against a real Mosquitto (TLS + password), no simulator.

A separate client publishes the twin generators' messages (and malformed
ones) to a private broker; the console's platform worker must turn them into
observations and events in the SQLite default and in the PostgreSQL the tests
reach, count every message per topic family, and name each rejection's reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import pytest
from pydantic import SecretStr

from dtp_console.config.model import ConsoleConfig
from dtp_console.ingest.worker import PlatformWorker
from dtp_console.runtime import Engine
from dtp_console.simulator.config import GeneratorsConfig
from dtp_console.simulator.generators import TwinGenerators
from tests.support.mosquitto import MosquittoServer, TlsFiles

pytestmark = pytest.mark.integration

ADMIN_DSN = os.environ.get("DTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
USER, PASSWORD = "test-platform", "test-change-me"
MALFORMED: list[tuple[str, bytes, str]] = [
    ("dtp/lift/Lift_001/vibration", b"{not json", "rejected:malformed JSON"),
    ("dtp/lift/Lift_001/vibration", b'{"value": "high"}', "rejected:value is not a number"),
    ("dtp/lift/alerts", b"[1, 2]", "rejected:not a JSON object"),
    ("dtp/energy_hvac/events", b'{"type": "nope"}', "rejected:unknown energy event type"),
    ("dtp/unknown/\u202ething", b"{}", "rejected:unmapped topic"),
]


def _worker(engine: Engine) -> PlatformWorker:
    """The running platform worker (the engine has one in these tests)."""
    assert engine.platform is not None
    return engine.platform


async def _admin(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    name = f"dtp_platform_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(ADMIN_DSN, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_DSN.rsplit('@', 1)[-1]}: {exc}")
    try:
        yield ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def broker(tmp_path: Path, tls_files: TlsFiles) -> Iterator[MosquittoServer]:
    with MosquittoServer(tmp_path / "mqtt", tls=tls_files, users={USER: PASSWORD}) as server:
        yield server


def _config(tmp_path: Path, port: int, ca: Path, pg: str | None) -> ConsoleConfig:
    stores: dict[str, Any] = {
        "sqlite_path": str(tmp_path / "platform.sqlite3"),
        "blob_dir": str(tmp_path / "blobs"),
        "flush_interval_ms": 50,
    }
    if pg is not None:
        stores["postgres"] = {"dsn": pg, "connect_timeout_s": 3}
    return ConsoleConfig.model_validate(
        {
            "twinzo": {"client": "demo", "password": "change-me", "api_key": "change-me"},
            "sandbox": {"enabled": True},
            "registry": {"enabled": False},
            "api": {"listen": "127.0.0.1:0"},  # never the fixed default port
            "stores": stores,
            "platform": {
                "enabled": True,
                "broker": {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": True,
                    "ca_file": str(ca),
                    "username": USER,
                    "password": PASSWORD,
                    "client_id": "test-platform-console",
                    "qos": 1,
                },
            },
        }
    )


def _generator_messages() -> list[tuple[str, bytes]]:
    gens = TwinGenerators(
        GeneratorsConfig.model_validate(
            {"lift": {"rate_hz": 10, "spike_probability": 0.3}, "energy": {"interval_s": 1}}
        )
    )
    out: list[tuple[str, bytes]] = []
    for _ in range(60):
        out.extend(gens.step(0.1))
    return out


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def _run(config: ConsoleConfig, port: int, ca: Path) -> tuple[Engine, int, int, int]:
    engine = Engine(config, simulate=False)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 20)
    assert engine.platform is not None
    await _until(lambda: _worker(engine).state.mqtt == "connected")
    messages = _generator_messages()
    context = ssl.create_default_context(cafile=str(ca))
    async with aiomqtt.Client(
        "127.0.0.1", port, username=USER, password=PASSWORD, tls_context=context
    ) as pub:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos=1)
        for topic, payload, _ in MALFORMED:
            await pub.publish(topic, payload, qos=1)
    total = len(messages) + len(MALFORMED)
    await _until(lambda: _worker(engine).totals().outcomes.total() >= total)
    observations = sum(1 for t, _ in messages if not t.endswith("alerts")) + sum(
        2 for t, p in messages if t.endswith("events") and b'"energy"' in p
    )
    events = sum(1 for t, p in messages if t.endswith("alerts") or b'"type":"hvac_state"' in p)
    stop.set()
    await asyncio.wait_for(task, 30)
    return engine, total, observations, events


def _check_counts(engine: Engine, total: int) -> None:
    worker = _worker(engine)
    stats = engine.state.as_dict()["platform"]
    assert stats["received"] == total
    assert sum(stats["outcomes"].values()) == total
    for family, counters in stats["families"].items():
        assert counters["received"] == sum(counters["outcomes"].values()), family
        assert counters["pending"] == 0
    outcomes = worker.totals().outcomes
    for _, _, reason in MALFORMED:
        assert outcomes[reason] >= 1, reason
    assert set(stats["families"]) >= {"dtp/lift", "dtp/energy_hvac", "dtp/sensors", "dtp/unknown"}
    lift = next(s for s in worker.rings.streams.values() if "vibration" in s.name)
    assert lift.unit == "mm/s"
    assert lift.threshold == 4.5  # from the alerts
    assert worker.rings.events["dtp/lift/alerts"]


async def test_generator_messages_land_in_sqlite(
    tmp_path: Path, broker: MosquittoServer, tls_files: TlsFiles
) -> None:
    config = _config(tmp_path, broker.port, tls_files.ca, None)
    engine, total, observations, events = await _run(config, broker.port, tls_files.ca)
    _check_counts(engine, total)
    with sqlite3.connect(tmp_path / "platform.sqlite3") as db:
        rows = db.execute("SELECT count(*) FROM observation").fetchone()[0]
        units = {u for (u,) in db.execute("SELECT unit FROM signal")}
        logged = db.execute("SELECT count(*) FROM event_log WHERE severity >= 1").fetchone()[0]
        alerts = db.execute(
            "SELECT count(*) FROM event_log WHERE body LIKE '%vibration_alert%'"
        ).fetchone()[0]
    assert rows == observations
    assert {"mm/s", "°C", "kW", "kWh"} <= units
    assert logged >= events
    assert alerts == sum(1 for t, _ in _generator_messages() if t.endswith("alerts"))


async def test_generator_messages_land_in_postgres(
    tmp_path: Path, broker: MosquittoServer, tls_files: TlsFiles, pg_dsn: str
) -> None:
    config = _config(tmp_path, broker.port, tls_files.ca, pg_dsn)
    engine, total, observations, events = await _run(config, broker.port, tls_files.ca)
    _check_counts(engine, total)
    rows = await _admin(pg_dsn, "SELECT count(*) FROM observation")
    vib = await _admin(
        pg_dsn,
        "SELECT count(*) FROM observation o JOIN signal s USING (signal_id) WHERE s.unit = 'mm/s'",
    )
    alerts = await _admin(
        pg_dsn, "SELECT count(*) FROM event_log WHERE body->>'type' = 'vibration_alert'"
    )
    assert rows == observations
    assert vib == sum(1 for t, _ in _generator_messages() if t.endswith("vibration"))
    assert alerts == sum(1 for t, _ in _generator_messages() if t.endswith("alerts"))
    assert events >= alerts


async def test_wrong_password_is_a_disconnected_badge_not_a_crash(
    tmp_path: Path, broker: MosquittoServer, tls_files: TlsFiles
) -> None:
    config = _config(tmp_path, broker.port, tls_files.ca, None)
    platform = config.platform.model_copy(
        update={
            "broker": config.platform.broker.model_copy(
                update={"password": SecretStr("test-wrong")}
            )
        }
    )
    engine = Engine(config.model_copy(update={"platform": platform}), simulate=False)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 20)
    await _until(lambda: _worker(engine).state.mqtt == "disconnected")
    assert "password" in _worker(engine).state.mqtt_detail or "authorized" in (
        _worker(engine).state.mqtt_detail
    )
    assert "test-wrong" not in _worker(engine).state.mqtt_detail
    stop.set()
    await asyncio.wait_for(task, 30)


async def test_a_crashed_platform_worker_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dtp_console.events import LogLine
    from dtp_console.ingest.worker import PlatformWorker

    real = PlatformWorker.run
    calls = [0]

    async def flaky(self: PlatformWorker, address: tuple[str, int], stop: asyncio.Event) -> None:
        calls[0] += 1
        if calls[0] == 1:
            msg = "boom"
            raise RuntimeError(msg)
        await real(self, address, stop)

    monkeypatch.setattr(PlatformWorker, "run", flaky)
    config = ConsoleConfig.model_validate(
        {
            "twinzo": {"client": "demo", "password": "change-me", "api_key": "change-me"},
            "sandbox": {"enabled": True},
            "registry": {"enabled": False},
            "api": {"listen": "127.0.0.1:0"},  # never the fixed default port
            "stores": {"enabled": False},
            "platform": {"enabled": True},
        }
    )
    engine = Engine(config, simulate=False)
    lines = engine.bus.subscribe()
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 20)
    await _until(lambda: _worker(engine).state.mqtt == "connected")
    assert calls[0] == 2
    texts = [e.text for e in lines.drain() if isinstance(e, LogLine)]
    assert any("platform crashed" in t and "boom" in t for t in texts)
    assert any("embedded platform broker" in t for t in texts)
    stop.set()
    await asyncio.wait_for(task, 30)
