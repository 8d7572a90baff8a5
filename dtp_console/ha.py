"""Hot standby: one plant's PostgreSQL advisory lock decides which console posts.

Each plant of a console with `ha.enabled` gets a `PlantLock`: a dedicated asyncpg
connection (its `application_name` is this console's identity) that holds or
keeps trying a session-level `pg_try_advisory_lock(key)`. The key is a stable
64-bit hash of the plant name and the twinzo client, so every console of one
deployment computes the same key for one plant and different plants shard.

The bridge runs the same in every role; only its poster's gate, `may_post()`,
differs. The gate is open only while this console holds the lock **and** the
last successful check of the lock's connection is recent (a lease of
`poll_s * 1.5`), so a silent connection closes the gate by itself, before the
check that would notice it even times out. A connection the server closes
(`pg_terminate_backend`, a shutdown) closes the gate at once through asyncpg's
termination listener. The session asks the server to give up on a silent peer
only after `3 * poll_s` (TCP keepalive, `tcp_user_timeout`), longer than the
lease: the server cannot hand the lock to a standby while this console may
still believe it holds it. A check slower than `poll_s / 2` stops posting at
once but keeps the session (and so the lock) for up to `2 * poll_s` while the
answer may still come: a loaded event loop pauses posting instead of handing the
plant back and forth.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from dtp_console.config.ha import MAX_INSTANCE_BYTES, HaConfig
from dtp_console.events import OpsLog
from dtp_console.pg import describe_pg_error, ssl_argument
from dtp_console.state import HA_ROLE_LABELS, HaRole, PlantState
from dtp_console.urls import mask_url

__all__ = ["PlantLock", "default_identity", "lock_key", "run_with_lock"]

#: SQLSTATEs of a startup setting the server does not know (PostgreSQL < 12 has no
#: `tcp_user_timeout`) or will not let this user set.
_SETTING_REFUSED = frozenset({"42704", "42501", "22023", "0A000"})
_HOLDER_SQL = """
SELECT a.application_name, host(a.client_addr), a.pid
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
LIMIT 1
"""


def lock_key(plant: str, client: str) -> int:
    """The plant's advisory lock key: a signed 64-bit BLAKE2b of client and plant name.

    Plant names are matched case-insensitively everywhere, so the name is casefolded:
    `Hall A` and `hall a` are one plant, one lock.
    """
    text = f"dtp-console/ha\x00{client}\x00{plant.casefold()}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def default_identity() -> str:
    """`<host>:<pid>`, cut to what `application_name` holds and made printable ASCII."""
    pid = f":{os.getpid()}"
    host = "".join(c if 0x20 <= ord(c) <= 0x7E else "?" for c in socket.gethostname())
    return host[: MAX_INSTANCE_BYTES - len(pid)] + pid


def _lock_halves(key: int) -> tuple[int, int]:
    """`pg_locks` shows a bigint advisory key as `classid` (high) and `objid` (low 32 bits)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class PlantLock:
    """Holds (or keeps trying) one plant's advisory lock; `may_post()` is the poster's gate."""

    def __init__(
        self,
        config: HaConfig,
        plant: str,
        client: str,
        state: PlantState,
        log: OpsLog,
        *,
        identity: str | None = None,
        warm: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._cfg = config
        self._plant = plant
        self.key = lock_key(plant, client)
        self.identity = identity or config.instance or default_identity()
        self._state = state
        self._log = log
        self.warm = warm
        """What a standby runs to keep device tokens warm (the bridge's poster sets it)."""
        self._poll = config.poll_s
        self._check_timeout = config.poll_s / 2
        self._lease = config.poll_s * 1.5
        self._valid_until = 0.0
        self._lost = asyncio.Event()
        self._announced = False
        self._peer_timeouts = True
        self._warming: asyncio.Future[object] | None = None
        self.promotions = 0
        """Times this console became the plant's active."""
        self._set_role("no_lock", None, "connecting to PostgreSQL", quiet=True)

    @property
    def role(self) -> HaRole:
        """This console's role for the plant."""
        return self._state.ha_role

    def may_post(self) -> bool:
        """Whether the poster may send now: the lock is held and confirmed recently."""
        return self._state.ha_role == "active" and time.monotonic() < self._valid_until

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, take or watch the lock, reconnect on trouble, until `stop`.

        The lock is released by closing its connection when `stop` is set (the
        caller sets it after the bridge has drained).
        """
        while not stop.is_set():
            connection = await self._connect()
            if connection is None:
                await self._wait(stop, self._poll)
                continue
            try:
                await self._hold(connection, stop)
            except _LostError as exc:
                self._demote(str(exc))
            except Exception as exc:  # every failure is a demotion, said why
                self._demote(f"the lock's connection is in doubt: {describe_pg_error(exc)}")
            finally:
                await self._close(connection)
            if not stop.is_set():
                await self._wait(stop, self._poll)
        self._valid_until = 0.0

    async def _connect(self) -> Any:
        cfg = self._cfg
        assert cfg.dsn is not None  # refused at load otherwise
        self._lost.clear()
        settings = {"application_name": self.identity}
        if self._peer_timeouts:
            settings.update(self._peer_settings())
        try:
            connection = await self._open(settings)
        except asyncpg.PostgresError as exc:
            # A server (or a proxy in front of it) that refuses a setting: connect without
            # the dead-peer timeouts, and say that the failover then waits for its own.
            if not self._peer_timeouts or exc.sqlstate not in _SETTING_REFUSED:
                self._demote(f"cannot reach PostgreSQL: {describe_pg_error(exc)}")
                return None
            self._peer_timeouts = False
            self._log.emit(
                "WARN",
                f"HA {self._plant}: PostgreSQL refused the lock session's TCP timeouts "
                f"({describe_pg_error(exc)}); a silent network loss is noticed by the server "
                "only after its own tcp_keepalives_* settings",
                self._plant,
            )
            return await self._connect()
        except Exception as exc:  # a message, then retry next poll
            self._demote(f"cannot reach PostgreSQL: {describe_pg_error(exc)}")
            return None
        connection.add_termination_listener(self._terminated)
        return connection

    def _peer_settings(self) -> dict[str, str]:
        """The server must not give the lock away while we may still post: it gives up
        on a silent peer only after 3 polls, twice the lease (module docstring)."""
        poll = self._poll
        return {
            "tcp_keepalives_idle": str(max(1, math.ceil(2 * poll))),
            "tcp_keepalives_interval": str(max(1, math.ceil(poll / 2))),
            "tcp_keepalives_count": "2",
            "tcp_user_timeout": str(math.ceil(3000 * poll)),
        }

    async def _open(self, settings: dict[str, str]) -> Any:
        cfg = self._cfg
        assert cfg.dsn is not None
        return await asyncio.wait_for(
            asyncpg.connect(
                cfg.dsn.get_secret_value(),
                ssl=ssl_argument(cfg.sslmode, cfg.ca_file),
                timeout=cfg.connect_timeout_s,
                server_settings=settings,
                statement_cache_size=0,
            ),
            cfg.connect_timeout_s + 1.0,
        )

    def _terminated(self, _connection: object) -> None:
        # Called by asyncpg as soon as the server closes the session: close the gate now.
        self._valid_until = 0.0
        self._lost.set()

    async def _hold(self, connection: Any, stop: asyncio.Event) -> None:
        """Try the lock (standby) or check the connection (active) every `poll_s`."""
        while not stop.is_set():
            started = time.monotonic()
            if self._state.ha_role == "active":
                await self._check(connection, started)
            else:
                # A try that times out may have been granted: the connection is then
                # closed (releasing it) by `run`, so a timeout here is safe.
                got = await connection.fetchval(
                    "SELECT pg_try_advisory_lock($1)", self.key, timeout=self._poll
                )
                if got:
                    self._confirm(started)
                    self.promotions += 1
                    self._set_role("active", self.identity, "holds the plant's lock")
                else:
                    holder = await self._holder(connection)
                    self._set_role("standby", holder, f"active: {holder or 'unknown'}")
                    await self._warm_tokens()
            if self._lost.is_set():
                raise _LostError
            delay = max(0.0, started + self._poll - time.monotonic())
            waiter = asyncio.ensure_future(self._lost.wait())
            try:
                await self._wait(stop, delay, waiter)
            finally:
                waiter.cancel()
            if self._lost.is_set():
                raise _LostError

    async def _check(self, connection: Any, started: float) -> None:
        """The active's `SELECT 1`: late after `poll_s / 2` closes the gate (posting stops,
        the lease would close it soon anyway); the session — and so the lock — is kept
        while the answer may still come, up to `2 * poll_s`, which is before the server
        gives up on a silent peer. An answer re-opens the gate; no answer is a failure."""
        check = asyncio.ensure_future(connection.fetchval("SELECT 1"))
        try:
            done, _ = await asyncio.wait({check}, timeout=self._check_timeout)
            if done:
                check.result()
                self._confirm(started)
                return
            self._valid_until = 0.0
            late = f"the lock check is slower than {self._check_timeout:g}s"
            self._state.ha_detail = f"{late}: not posting until PostgreSQL answers"
            self._log.emit("WARN", f"HA {self._plant}: {late}; not posting", self._plant)
            await asyncio.wait_for(check, 2 * self._poll - self._check_timeout)
        except TimeoutError:
            msg = f"no answer to the lock check within {2 * self._poll:g}s"
            raise TimeoutError(msg) from None
        finally:
            if not check.done():
                check.cancel()
        self._state.ha_detail = "holds the plant's lock"
        self._log.emit("INFO", f"HA {self._plant}: the lock check answered; posting", self._plant)
        self._confirm(started)  # conservative: the next check, sent at once, re-opens the gate

    def _confirm(self, started: float) -> None:
        """The lock was held at `started` (the check was sent then): extend the lease."""
        if not self._lost.is_set():
            self._valid_until = started + self._lease

    async def _holder(self, connection: Any) -> str | None:
        """The identity (application_name, else address and pid) of the lock's holder."""
        high, low = _lock_halves(self.key)
        row = await connection.fetchrow(_HOLDER_SQL, high, low, timeout=self._poll)
        if row is None:
            return None
        name, address, pid = row[0], row[1], row[2]
        return str(name) if name else f"{address or 'local'} backend {pid}"

    async def _warm_tokens(self) -> None:
        """Run `warm` once per poll at most, never more than one at a time, and never
        delaying the next lock attempt by more than `poll_s / 2`."""
        if self.warm is None or (self._warming is not None and not self._warming.done()):
            return
        task = self._warming = asyncio.ensure_future(self.warm())
        task.add_done_callback(_swallow)  # failures are the token cache's to count
        await asyncio.wait({task}, timeout=self._check_timeout)

    def _demote(self, reason: str) -> None:
        self._valid_until = 0.0
        was = self._state.ha_role
        detail = mask_url(reason)
        if was == "active":
            detail = f"stopped posting: {detail}"
        self._set_role("no_lock", None, detail)

    def _set_role(
        self, role: HaRole, holder: str | None, detail: str, *, quiet: bool = False
    ) -> None:
        state = self._state
        changed = role != state.ha_role or (role == "standby" and holder != state.ha_holder)
        changed = changed or (not quiet and not self._announced)
        state.ha_holder, state.ha_detail = holder, detail
        if not changed:
            return
        state.ha_role = role
        state.ha_since = time.time()
        if quiet:
            return
        self._announced = True
        label = HA_ROLE_LABELS[role]
        if role == "active":
            text = f"HA {self._plant}: {label} as {self.identity} (posting)"
            self._log.emit("INFO", text, self._plant)
        elif role == "standby":
            text = f"HA {self._plant}: {label} as {self.identity}; active is {holder or 'unknown'}"
            self._log.emit("INFO", text, self._plant)
        else:
            text = f"HA {self._plant}: {label} as {self.identity} ({detail}); not posting"
            self._log.emit("WARN", text, self._plant)

    async def _close(self, connection: Any) -> None:
        # Closing the session releases the lock; a dead server must not hold us up.
        self._valid_until = 0.0
        try:
            await asyncio.wait_for(connection.close(), self._check_timeout)
        except Exception:  # then drop it hard
            connection.terminate()

    @staticmethod
    async def _wait(
        stop: asyncio.Event, delay: float, also: asyncio.Future[Any] | None = None
    ) -> None:
        stopper = asyncio.ensure_future(stop.wait())
        waiters: set[asyncio.Future[Any]] = {stopper} if also is None else {stopper, also}
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()


class _LostError(Exception):
    """The server closed the lock's session (terminated backend, shutdown)."""

    def __str__(self) -> str:
        return "PostgreSQL closed the lock's connection"


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def run_with_lock(
    lock: PlantLock, bridge_run: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event
) -> None:
    """Run a bridge beside its plant's lock; the lock is released after the bridge drained.

    Both live in one `TaskGroup`: the holder never outlives this call, and a crash of
    it ends the bridge too, so the engine's supervisor logs and restarts the pair.
    """
    lock_stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        holder = group.create_task(lock.run(lock_stop), name=f"ha:{lock.key}")
        try:
            await bridge_run(stop)
        finally:
            lock_stop.set()
            await asyncio.wait({holder})  # released gracefully, even when cancelled
