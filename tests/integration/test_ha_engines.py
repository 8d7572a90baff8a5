"""Two engines on one plant in one process, one PostgreSQL, one sandbox, one broker.

The in-process half of the HA tests (the `kill -9` half runs real processes,
`test_ha_processes.py`): exactly one engine posts; a terminated lock backend
or a stopped PostgreSQL stops the active within the bound and one of the two
resumes; the standby keeps warm tokens and the latest positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from devtools.pgcluster import PgCluster
from devtools.postlog import PostLog
from dtp_console.config.ha import HaConfig
from dtp_console.config.model import ConsoleConfig
from dtp_console.events import LogLine
from dtp_console.runtime import Engine
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.support.engine import engine_config, running, until
from tests.support.ha import load
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

POLL_S = 0.5
FLUSH_S = 0.02
DEVICES = {f"ati_amr_{i:03d}": f"tugger-{i:03d}" for i in range(1, 11)}
PLANT = "Old Plant"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    reason = PgCluster.unavailable()
    if reason:
        pytest.skip(reason)
    with PgCluster() as cluster:
        yield cluster


def _config(
    tmp: Path, port: int, sandbox: TwinzoSandbox, pg: PgCluster, name: str
) -> ConsoleConfig:
    base = engine_config(
        tmp / name,
        port,
        plants=[{"name": PLANT, "device_map": DEVICES}],
        registry=False,
        sandbox={"enabled": False},
    )
    ha = HaConfig(enabled=True, dsn=pg.dsn, poll_s=POLL_S, connect_timeout_s=1.0, instance=name)
    twinzo = base.twinzo.model_copy(update={"base_url": sandbox.url})
    return base.model_copy(update={"ha": ha, "twinzo": twinzo})


class _Pair:
    def __init__(self, a: Engine, b: Engine) -> None:
        self.engines = {"test-a": a, "test-b": b}
        self.lines: list[str] = []
        self._subs = [e.bus.subscribe() for e in (a, b)]

    def role(self, name: str) -> str:
        return self.engines[name].state.plants[PLANT].ha_role

    def roles(self) -> dict[str, str]:
        return {name: self.role(name) for name in self.engines}

    def active(self) -> str | None:
        found = [n for n in self.engines if self.role(n) == "active"]
        return found[0] if len(found) == 1 else None

    def other(self, name: str) -> str:
        return next(n for n in self.engines if n != name)

    def forwarded(self, name: str) -> int:
        return self.engines[name].state.plants[PLANT].counters.outcomes["forwarded"]

    def read(self) -> list[str]:
        for sub in self._subs:
            self.lines += [e.render() for e in sub.drain() if isinstance(e, LogLine)]
        return self.lines


@contextlib.asynccontextmanager
async def _two_engines(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> AsyncIterator[_Pair]:
    a = Engine(_config(tmp_path, mosquitto.port, sandbox, pg, "test-a"))
    b = Engine(_config(tmp_path, mosquitto.port, sandbox, pg, "test-b"))
    stop = asyncio.Event()
    publisher = asyncio.create_task(load(mosquitto.port, list(DEVICES), 500.0, stop))
    try:
        async with running(a), running(b):
            pair = _Pair(a, b)
            await until(lambda: pair.active() is not None, 10, "one active")
            other = pair.other(pair.active() or "")
            await until(lambda: pair.role(other) == "standby", 10, "one standby")
            yield pair
    finally:
        stop.set()
        await publisher


async def _backend_of(pg: PgCluster, identity: str) -> int:
    connection = await asyncpg.connect(pg.dsn)
    try:
        pid = await connection.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", identity
        )
        assert pid is not None, f"no lock connection of {identity}"
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
        return int(pid)
    finally:
        await connection.close()


async def test_exactly_one_posts_and_the_standby_knows_who(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> None:
    posts = PostLog.attach(sandbox)
    async with _two_engines(tmp_path, mosquitto, sandbox, pg) as pair:
        active = pair.active()
        assert active is not None
        standby = pair.other(active)
        await until(lambda: pair.forwarded(active) > 200, 10, "the active posting")
        await asyncio.sleep(3 * POLL_S)
        assert pair.forwarded(standby) == 0
        state = pair.engines[standby].state.plants[PLANT]
        assert state.ha_holder == active, "the holder's identity, read from pg_stat_activity"
        assert state.counters.received > 200, "the standby is subscribed and parsing"
        assert len(pair.engines[standby].bridges[PLANT].outbox) <= len(DEVICES), "bounded"
        sources = posts.sources()
        assert set(sources) == set(DEVICES.values())
        assert all(len(tokens) == 1 for tokens in sources.values()), sources
        stats = pair.engines[standby].state.as_dict()["plants"][PLANT]["ha"]
        assert stats["role"] == "standby" and stats["holder"] == active
        lines = pair.read()
        assert any(f"HA {PLANT}: ACTIVE as {active}" in line for line in lines), lines
        assert any(f"STANDBY as {standby}; active is {active}" in line for line in lines)
        # Warm tokens: the standby has its own token for every device it has seen.
        tokens = pair.engines[standby].bridges[PLANT].poster.client.tokens
        await until(lambda: all(tokens.peek(login) for login in DEVICES.values()), 5, "warm")


async def test_a_terminated_lock_backend_stops_the_active_and_one_resumes(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> None:
    posts = PostLog.attach(sandbox)
    async with _two_engines(tmp_path, mosquitto, sandbox, pg) as pair:
        active = pair.active()
        assert active is not None
        await until(lambda: pair.forwarded(active) > 100, 10, "the active posting")
        lock = pair.engines[active].locks[PLANT]
        cut = time.time()
        await _backend_of(pg, active)
        # The server closes the session: the gate closes at once, well within a poll.
        await until(lambda: not lock.may_post(), POLL_S, "the gate closed")
        await until(lambda: pair.active() is not None, POLL_S * 3 + 1, "one active again")
        resumed = time.time()
        await until(lambda: bool(posts.since(resumed)), POLL_S + 1, "posting resumed")
        await asyncio.sleep(1.0)
        assert posts.overlaps(cut, FLUSH_S * 2) == []
        lines = pair.read()
        why = [line for line in lines if "NO LOCK" in line and active in line]
        assert why, lines
        assert "closed the lock's connection" in why[0] or "in doubt" in why[0]
        assert list(pair.roles().values()).count("active") == 1


async def test_postgres_down_stops_posting_and_back_resumes(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> None:
    posts = PostLog.attach(sandbox)
    async with _two_engines(tmp_path, mosquitto, sandbox, pg) as pair:
        active = pair.active()
        assert active is not None
        await until(lambda: pair.forwarded(active) > 100, 10, "the active posting")
        pg.stop()
        try:
            await until(lambda: set(pair.roles().values()) == {"no_lock"}, 2 * POLL_S, "no lock")
            quiet = time.time() + 2 * FLUSH_S + 0.1  # what was in flight lands
            await asyncio.sleep(1.0)
            assert posts.since(quiet) == [], "nobody posts without the lock"
            lines = pair.read()
            assert any("NO LOCK" in line and "stopped posting" in line for line in lines)
        finally:
            pg.start()
        await until(lambda: pair.active() is not None, 10, "one active after PostgreSQL is back")
        back = time.time()
        await until(lambda: bool(posts.since(back)), POLL_S + 1, "posting resumed")
        await asyncio.sleep(1.0)
        assert posts.overlaps(back - 1.0, FLUSH_S * 2) == []


async def test_a_stopped_active_hands_over_within_the_bound(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> None:
    posts = PostLog.attach(sandbox)
    a = Engine(_config(tmp_path, mosquitto.port, sandbox, pg, "test-a"))
    b = Engine(_config(tmp_path, mosquitto.port, sandbox, pg, "test-b"))
    stop, stop_a = asyncio.Event(), asyncio.Event()
    publisher = asyncio.create_task(load(mosquitto.port, list(DEVICES), 500.0, stop))
    run_a = asyncio.create_task(a.run(stop_a))
    try:
        await until(lambda: PLANT in a.state.plants, 10, "a started")
        await until(lambda: a.state.plants[PLANT].ha_role == "active", 10, "a active")
        async with running(b):
            await until(lambda: b.state.plants[PLANT].ha_role == "standby", 10, "b standby")
            assert b.state.plants[PLANT].ha_holder == "test-a"
            stop_a.set()  # a drains what it holds, then closes its lock connection
            await asyncio.wait_for(run_a, 15)
            released = time.time()
            await until(lambda: b.state.plants[PLANT].ha_role == "active", POLL_S + 0.5, "b")
            await until(lambda: bool(posts.since(released)), POLL_S + 0.5, "b posting")
            assert posts.overlaps(released - 1.0, FLUSH_S * 2) == []
    finally:
        stop_a.set()
        stop.set()
        await publisher
        await asyncio.wait_for(run_a, 15)


async def test_a_foreign_holder_with_markup_in_its_name_is_shown_as_text(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> None:
    from dtp_console.ha import lock_key

    posts = PostLog.attach(sandbox)
    hostile = "[b]evil[/b] \x1b[31m ☃"
    squatter = await asyncpg.connect(pg.dsn, server_settings={"application_name": hostile})
    try:
        assert await squatter.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(PLANT, "demo"))
        engine = Engine(_config(tmp_path, mosquitto.port, sandbox, pg, "test-a"))
        lines = engine.bus.subscribe()
        async with running(engine):
            state = engine.state.plants[PLANT]
            await until(lambda: state.ha_role == "standby", 10, "standby behind the squatter")
            # PostgreSQL keeps printable ASCII: each byte of the ESC and the snowman is a "?".
            assert state.ha_holder == "[b]evil[/b] ?[31m ???"
            await asyncio.sleep(3 * POLL_S)
            assert posts.posts == [], "nobody posts while a foreign session holds the lock"
            said = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
            assert any("active is [b]evil[/b] ?[31m ???" in line for line in said), said
        assert "\x1b" not in "".join(said)
    finally:
        await squatter.close()


async def test_a_server_refusing_the_tcp_timeouts_still_gets_a_lock_and_a_warning(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    pg: PgCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dtp_console.ha import PlantLock

    # PostgreSQL < 12 knows no tcp_user_timeout: the same refusal (SQLSTATE 42704).
    monkeypatch.setattr(PlantLock, "_peer_settings", lambda _self: {"no_such_setting": "1"})
    engine = Engine(_config(tmp_path, mosquitto.port, sandbox, pg, "test-a"))
    lines = engine.bus.subscribe()
    async with running(engine):
        await until(lambda: engine.state.plants[PLANT].ha_role == "active", 10, "active")
        said = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    warned = [line for line in said if "refused the lock session's TCP timeouts" in line]
    assert len(warned) == 1, said
    assert "SQLSTATE 42704" in warned[0]
