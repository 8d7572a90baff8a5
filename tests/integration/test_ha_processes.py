"""Two `dtp-console run --no-ui` processes on one plant, as operators deploy them.

One private PostgreSQL, one mosquitto, one twinzo sandbox run by the test (the
consoles' `twinzo.base_url` points at it). Exactly one process posts; `kill -9`
of the active under load → the standby posts within `poll_s` + one flush, and
no device is posted by both; a terminated lock backend stops the active, which
says why, and one of the two resumes; with PostgreSQL out of reach nobody posts
and the DSN's password is never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from devtools.pgcluster import PgCluster
from devtools.postlog import PostLog
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.support.ha import load
from tests.support.mosquitto import MosquittoServer, free_port

pytestmark = pytest.mark.integration

POLL_S = 0.5
FLUSH_S = 0.05
#: Scheduling slack on a shared 2-core machine (the bound itself is poll_s + one flush).
SLACK_S = 0.75
DEVICES = {f"ati_amr_{i:03d}": f"tugger-{i:03d}" for i in range(1, 21)}
PLANT = "Old Plant"
SECRET = "test-ha-dsn-secret"

CONFIG = """\
twinzo:
  client: demo
  password: test-device-pw
  api_key: test-api-key
  base_url: {url}
  flush_interval_ms: {flush_ms}
  backoff_initial_s: 0.05
sandbox: {{enabled: false}}
registry: {{enabled: false}}
stores: {{enabled: false}}
logging: {{stats_interval_s: 1}}
ha:
  enabled: {ha}
  dsn: ${{HA_PG_DSN}}
  poll_s: {poll}
  connect_timeout_s: 1
plants:
  - name: {plant}
    format: ati_sherpa
    broker: {{host: 127.0.0.1, port: {port}, reconnect_initial_s: 0.1, reconnect_max_s: 0.5}}
    min_post_interval_ms: 0
    twinzo: {{sector_id: 2}}
    device_map: {devices}
"""


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    reason = PgCluster.unavailable()
    if reason:
        pytest.skip(reason)
    with PgCluster() as cluster:
        yield cluster


class Console:
    """One console process; its stdout lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def identity(self) -> str:
        """The default instance identity of this process (`host:pid`)."""
        pid = f":{self.proc.pid}"
        return socket.gethostname()[: 63 - len(pid)] + pid

    def said(self, needle: str) -> list[str]:
        return [line for line in self.lines if needle in line]

    async def wait_for(self, needle: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.said(needle)
            if found:
                return found[0]
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"{needle!r} not printed within {timeout}s: {self.lines[-20:]}")

    async def stop(self) -> tuple[int, str]:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        err = b""
        with contextlib.suppress(TimeoutError):
            assert self.proc.stderr is not None
            err = await asyncio.wait_for(self.proc.stderr.read(), 30)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self._reader
        return code, err.decode(errors="replace")


def _write_config(path: Path, sandbox: TwinzoSandbox, port: int, *, ha: bool = True) -> Path:
    path.write_text(
        CONFIG.format(
            url=sandbox.url,
            flush_ms=int(FLUSH_S * 1000),
            ha=str(ha).lower(),
            poll=POLL_S,
            plant=PLANT,
            port=port,
            devices=json.dumps(DEVICES),
        ),
        encoding="utf-8",
    )
    return path


async def _console(config: Path, dsn: str, *args: str) -> Console:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "HA_"))}
    env["HA_PG_DSN"] = dsn
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dtp_console", "-c", str(config), "run", "--no-ui", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    return Console(proc)


@contextlib.asynccontextmanager
async def _traffic(port: int, rate: float = 500.0) -> AsyncIterator[None]:
    stop = asyncio.Event()
    publisher = asyncio.create_task(load(port, list(DEVICES), rate, stop))
    try:
        yield
    finally:
        stop.set()
        await publisher


async def _until(check: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _new_tokens(posts: PostLog, since: float, old: set[str]) -> list[tuple[float, str, str]]:
    return [p for p in posts.since(since) if p[2] not in old]


async def test_one_posts_and_kill_9_of_the_active_fails_over_within_the_bound(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> None:
    posts = PostLog.attach(sandbox)
    config = _write_config(tmp_path / "console.yaml", sandbox, mosquitto.port)
    stats = tmp_path / "stats-b.json"
    a = await _console(config, pg.dsn)
    b: Console | None = None
    try:
        await a.wait_for(f"HA {PLANT}: ACTIVE as {a.identity}")
        b = await _console(config, pg.dsn, "--stats-json", str(stats))
        await b.wait_for(f"HA {PLANT}: STANDBY as {b.identity}; active is {a.identity}")
        async with _traffic(mosquitto.port):
            await _until(lambda: len(posts.sources()) == len(DEVICES), 10, "every device posted")
            steady = time.time()
            await asyncio.sleep(1.5)
            sources = posts.sources(steady)
            assert all(len(tokens) == 1 for tokens in sources.values()), "exactly one posts"
            a_tokens = {t for tokens in posts.sources().values() for t in tokens}
            await b.wait_for("| ha STANDBY (active: " + a.identity, 5)
            killed = time.time()
            a.proc.kill()  # SIGKILL: no drain, no goodbye; the kernel closes its sockets
            gap = await _until(
                lambda: bool(_new_tokens(posts, killed, a_tokens)),
                POLL_S + FLUSH_S + SLACK_S,
                "the standby posting",
            )
            await _until(
                lambda: (
                    {p[1] for p in _new_tokens(posts, killed, a_tokens)} == set(DEVICES.values())
                ),
                POLL_S + FLUSH_S + SLACK_S,
                "every device from the new active",
            )
            await asyncio.sleep(1.0)
            assert posts.overlaps(killed - 1.0, FLUSH_S) == []
            after = posts.since(time.time() - 0.5)
            assert after and all(p[2] not in a_tokens for p in after)
        await b.wait_for(f"HA {PLANT}: ACTIVE as {b.identity}")
        code, err = await b.stop()
        assert code == 0, err
        data = json.loads(stats.read_text())["plants"][PLANT]
        assert data["ha"]["role"] == "active" and data["ha"]["holder"] == b.identity
        assert data["outcomes"]["forwarded"] > 0
        print(f"failover gap after kill -9: {gap:.3f}s (bound {POLL_S + FLUSH_S:.2f}s + slack)")
    finally:
        for console in (a, b):
            if console is not None and console.proc.returncode is None:
                console.proc.kill()
                await console.proc.wait()


async def test_a_terminated_lock_backend_stops_the_active_and_one_resumes(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox, pg: PgCluster
) -> None:
    posts = PostLog.attach(sandbox)
    config = _write_config(tmp_path / "console.yaml", sandbox, mosquitto.port)
    a = await _console(config, pg.dsn)
    b: Console | None = None
    try:
        await a.wait_for(f"HA {PLANT}: ACTIVE as {a.identity}")
        b = await _console(config, pg.dsn)
        await b.wait_for(f"STANDBY as {b.identity}")
        async with _traffic(mosquitto.port):
            await _until(lambda: len(posts.sources()) == len(DEVICES), 10, "every device posted")
            connection = await asyncpg.connect(pg.dsn)
            try:
                # The session that holds the plant's lock (a, unless a loaded machine
                # has already moved the plant): the holder is whoever pg_locks says.
                row = await connection.fetchrow(
                    "SELECT a.pid, a.application_name FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                )
                assert row is not None, "nobody holds the lock"
                pid, holder = row
                cut = time.time()
                assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await connection.close()
            active = {a.identity: a, b.identity: b}.get(holder or "")
            assert active is not None, f"the lock held by {holder!r}"
            line = await active.wait_for(
                f"HA {PLANT}: NO LOCK as {active.identity}", POLL_S + SLACK_S
            )
            assert "closed the lock's connection" in line and "not posting" in line
            resumed = await _until(
                lambda: any(p[0] > cut + POLL_S + FLUSH_S for p in posts.posts),
                3 * POLL_S + SLACK_S,
                "one of the two posting again",
            )
            await asyncio.sleep(1.0)
            assert posts.overlaps(cut, FLUSH_S) == []
        actives = [x for x in a.lines + b.lines if "ACTIVE as" in x]
        assert len(actives) >= 2, "one of the two became active again"
        print(f"resumed {resumed:.3f}s after the terminate: {actives[-1]}")
    finally:
        for console in (a, b):
            if console is not None:
                await console.stop()


async def test_ha_off_needs_no_postgres_and_an_unreachable_one_is_said_masked(
    tmp_path: Path, mosquitto: MosquittoServer, sandbox: TwinzoSandbox
) -> None:
    posts = PostLog.attach(sandbox)
    closed = f"postgresql://dtp:{SECRET}@127.0.0.1:{free_port()}/dtp"
    off = _write_config(tmp_path / "off.yaml", sandbox, mosquitto.port, ha=False)
    on = _write_config(tmp_path / "on.yaml", sandbox, mosquitto.port)
    stats = tmp_path / "stats.json"
    plain = await _console(off, closed, "--stats-json", str(stats))
    locked = await _console(on, closed)
    try:
        await plain.wait_for("MQTT connected")
        await locked.wait_for(f"HA {PLANT}: NO LOCK as {locked.identity} (cannot reach PostgreSQL")
        async with _traffic(mosquitto.port, rate=100.0):
            await _until(lambda: len(posts.sources()) == len(DEVICES), 10, "ha off posts")
            await asyncio.sleep(1.0)
        tokens = posts.sources()
        assert all(len(t) == 1 for t in tokens.values()), "only the console with ha off posted"
    finally:
        code, err = await plain.stop()
        _, err_locked = await locked.stop()
    assert code == 0, err
    assert json.loads(stats.read_text())["plants"][PLANT]["ha"]["role"] == "off"
    text = "\n".join(plain.lines + locked.lines) + err + err_locked
    assert SECRET not in text
    assert not [x for x in plain.lines if "HA " in x]
