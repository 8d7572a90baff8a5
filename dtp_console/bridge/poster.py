"""The posting side of a bridge: flush the outbox to twinzo and account for every result.

Runs as its own task so intake never waits on HTTP. Every flush takes the
devices that may be posted now; in single mode each gets its own request
(bounded by a semaphore, one in flight per device), in batch mode they share
requests of up to `batch_max_devices`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from dtp_console.backoff import jittered_delay
from dtp_console.bridge.cell import PlantCell, cell_of
from dtp_console.bridge.outbox import Location, Outbox
from dtp_console.config.model import PlantConfig, TwinzoConfig
from dtp_console.events import OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo.protocol import LocalizationClient, PostResult

__all__ = ["INTAKE_BACKLOG_DEFER", "INTAKE_BURST_RATE", "MAX_DEFER_S", "Poster"]

#: Recent receive → accepted latencies kept for figures (a ring: a long run stays flat).
_LATENCY_SAMPLES = 100_000
#: Skip a flush while more messages than this wait to be taken in.
INTAKE_BACKLOG_DEFER = 500
#: ... or while intake runs faster than this (msg/s): a burst, not steady traffic.
INTAKE_BURST_RATE = 5_000
#: ...but never for longer than this in a row.
MAX_DEFER_S = 1.0

_ClientT = TypeVar("_ClientT", bound=LocalizationClient)


class Poster(Generic[_ClientT]):
    """Flushes one plant's outbox to twinzo through any `LocalizationClient`.

    Generic in the client so `client` gives back what was passed in (the bridge's
    `TwinzoClient`, a test's fake) while the poster itself uses only the protocol.
    """

    def __init__(
        self,
        plant: PlantConfig | PlantCell,
        twinzo: TwinzoConfig,
        client: _ClientT,
        outbox: Outbox,
        state: PlantState,
        log: OpsLog,
        *,
        log_every_n: int = 50,
        backlog: Callable[[], int] | None = None,
        taken_in: Callable[[], int] | None = None,
        may_post: Callable[[], bool] | None = None,
    ) -> None:
        self._cell = cell_of(plant, twinzo)
        self._may_post = may_post
        """High availability's gate: False while this console is not the plant's active."""
        self._backlog = backlog
        self._taken_in = taken_in
        self._client = client
        self._outbox = outbox
        self._state = state
        self._log = log
        self._log_every_n = log_every_n
        self._semaphore = asyncio.Semaphore(twinzo.max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._successes = 0
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._service_failures = 0
        self._hold_until = 0.0
        self._probing = False
        self._warm_failed: dict[str, float] = {}
        self.deferred_flushes = 0
        """Flushes skipped to let intake catch up."""
        self.latencies_ms: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        """Receive → accepted latency of forwarded locations (bounded, for figures)."""

    @property
    def plant(self) -> PlantConfig:
        """The plant's config as the poster uses it now (its `PlantCell`)."""
        return self._cell.plant

    @property
    def twinzo(self) -> TwinzoConfig:
        """The `twinzo` posting settings in force now."""
        return self._cell.twinzo

    @property
    def password(self) -> str:
        """The device password in force: the plant's own, else the `twinzo` one."""
        cell = self._cell
        return (cell.plant.twinzo.password or cell.twinzo.password).get_secret_value()

    def forget_tokens(self) -> None:
        """Drop the cached tokens of this plant's logins: the next post authenticates anew."""
        logins = set(self.plant.device_map.values())
        logins.update(d.login for d in self._state.devices.values())
        self._client.forget_tokens(logins)
        self._warm_failed.clear()

    @property
    def client(self) -> _ClientT:
        """The twinzo client this poster sends with."""
        return self._client

    @property
    def busy(self) -> bool:
        """Requests are in flight."""
        return bool(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `flush_interval_ms` until `stop` is set.

        Intake has priority: during a burst — more than `INTAKE_BACKLOG_DEFER`
        messages waiting in the MQTT queue, or intake above `INTAKE_BURST_RATE`
        msg/s — flushes are skipped (for at most `MAX_DEFER_S` in a row) so
        posting CPU does not slow the intake that must absorb it. Newer positions
        keep replacing pending ones meanwhile, so nothing is lost.
        """
        deferred = 0.0
        seen = self._taken_in() if self._taken_in is not None else 0
        while not stop.is_set():
            # Read each round: a config reload may change it.
            interval = self.twinzo.flush_interval_ms / 1000.0
            burst = INTAKE_BURST_RATE * interval
            backlog = self._backlog() if self._backlog is not None else 0
            taken = self._taken_in() if self._taken_in is not None else 0
            busy = backlog > INTAKE_BACKLOG_DEFER or taken - seen > burst
            seen = taken
            if busy and deferred < MAX_DEFER_S:
                deferred += interval
                self.deferred_flushes += 1
            else:
                deferred = 0.0
                self.flush(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def flush(self, now: float, *, everything: bool = False) -> int:
        """Start requests for what may be posted now; returns how many locations left.

        While twinzo fails service-wide (timeouts, 5xx, 429) the plant backs off as
        one: nothing is sent until the hold ends, then one request probes; its
        success releases every device at once (recovery within one probe interval).
        A standby (the `may_post` gate closed) sends nothing: the outbox keeps the
        latest position per device for the flush after its promotion.
        """
        if self._may_post is not None and not self._may_post():
            return 0
        if everything:
            ready = self._outbox.take_all()
        elif now < self._hold_until or (self._service_failures and self._probing):
            return 0
        elif self._service_failures:
            ready = self._outbox.take_ready(now, limit=1)
            self._probing = bool(ready)
        else:
            ready = self._outbox.take_ready(now)
        if not ready:
            return 0
        if self.plant.twinzo.batch:
            size = self.twinzo.batch_max_devices
            for i in range(0, len(ready), size):
                self._spawn(self._post_batch(ready[i : i + size]))
        else:
            for location in ready:
                self._spawn(self._post_one(location))
        return len(ready)

    async def drain(self, timeout_s: float) -> None:
        """Post everything pending (ignoring intervals and backoff) until done or timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._may_post is not None and not self._may_post():
                break  # a standby does not post on its way out either
            self.flush(time.monotonic(), everything=True)
            if not self._tasks and not len(self._outbox):
                break
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
            else:
                await asyncio.sleep(0.01)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._outbox.discard_all("dropped:shutdown")

    async def warm_tokens(self) -> int:
        """Fetch or refresh the token of every known device (a standby's warm cache).

        A valid cached token costs nothing; a login whose last try failed waits
        `auth_backoff_s` before the next. Batch mode posts without device tokens:
        nothing to do. Returns how many logins hold a token afterwards.
        """
        if self.plant.twinzo.batch:
            return 0
        now = time.monotonic()
        logins = sorted({d.login for d in self._state.devices.values()})
        due = [x for x in logins if now >= self._warm_failed.get(x, -math.inf)]
        limit = asyncio.Semaphore(min(8, self.twinzo.max_concurrency))

        async def _one(login: str) -> bool:
            async with limit:
                try:
                    await self._client.ensure_token(login, self.password)
                except Exception:  # AuthError and transport trouble alike; counted there
                    self._warm_failed[login] = time.monotonic() + self.twinzo.auth_backoff_s
                    return False
                self._warm_failed.pop(login, None)
                return True

        return sum(await asyncio.gather(*(_one(login) for login in due)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_one(self, location: Location) -> None:
        sector = self.plant.twinzo.sector_id
        try:
            async with self._semaphore:
                result = await self._client.post_device(
                    location.login,
                    self.password,
                    [location.payload(sector)],
                    branch=self.plant.twinzo.branch,
                )
        except asyncio.CancelledError:
            self._final(location, "failed:shutdown", None)
            raise
        except Exception as exc:
            # The client never raises by contract; if it does, the location still gets
            # its outcome and the device its slot back (else it would freeze in flight).
            self._internal_error([location], exc)
            return
        self._account(location, result)

    async def _post_batch(self, locations: Sequence[Location]) -> None:
        sector = self.plant.twinzo.sector_id
        branch = self.plant.twinzo.branch or ""
        devices = {loc.login: [loc.payload(sector)] for loc in locations}
        try:
            async with self._semaphore:
                results = await self._client.post_batch(branch, devices)
        except asyncio.CancelledError:
            for location in locations:
                self._final(location, "failed:shutdown", None)
            raise
        except Exception as exc:
            self._internal_error(locations, exc)
            return
        for location in locations:
            self._account(location, results[location.login])

    def _internal_error(self, locations: Sequence[Location], exc: Exception) -> None:
        """Count `locations` as `failed:internal_error` and say so (type name only)."""
        now = time.monotonic()
        kind = type(exc).__name__
        for location in locations:
            device = self._state.devices.get(location.vendor_id)
            if device is not None:
                device.posts_failed += 1
                device.last_post_ok = False
                device.last_error = f"internal error: {kind}"
            self._final(location, "failed:internal_error", now)
        self._log.limited(
            "FAIL",
            f"internal:{self.plant.name}",
            f"{self.plant.name}: posting failed with an internal error ({kind}); "
            f"{len(locations)} location(s) counted as failed",
            self.plant.name,
        )

    def _account(self, location: Location, result: PostResult) -> None:
        now = time.monotonic()
        device = self._state.devices.get(location.vendor_id)
        if device is not None:
            device.last_post_status = result.code
            device.last_post_ok = result.ok
            device.last_post_latency_ms = round(result.latency_ms, 1)
            device.last_post_at = now
        if not result.retryable:
            self._probing = False
        if result.ok:
            self._service_failures, self._hold_until = 0, 0.0
            self._outbox.done(location, now)
            self._state.counters.count("forwarded")
            if device is not None:
                device.posts_ok += 1
                device.last_accepted_at, device.refusing_since = now, None
            self.latencies_ms.append((now - location.received_at) * 1000.0)
            self._successes += 1
            if self._successes % self._log_every_n == 1 or self._log_every_n == 1:
                self._log.emit("OK", self._ok_text(location), self.plant.name)
            return
        if device is not None:
            device.posts_failed += 1
            device.last_error = result.error
            # A refusal of this robot (401, Success: false, a 4xx), not an outage retried through.
            if not result.retryable and device.refusing_since is None:
                device.refusing_since = now
        login = location.login
        if result.auth_failed:
            self._log.limited(
                "FAIL",
                f"auth:{login}",
                f"OAuth failed for {login}: {result.code}",
                self.plant.name,
            )
        else:
            text = f"POST failed for {login}: {result.code}"
            if result.error and result.error != result.code:
                text += f" {result.error}"
            self._log.limited("FAIL", f"post:{login}", text, self.plant.name)
        if result.retryable:
            self._service_trouble(now, result)
            if location.attempts + 1 < self.twinzo.max_attempts:
                self._outbox.retry(location, now, 0.0)
                return
        reason = _reason(result)
        self._final(location, f"failed:{reason}", now, auth=result.auth_failed)

    def _final(
        self, location: Location, outcome: str, now: float | None, *, auth: bool = False
    ) -> None:
        self._state.counters.count(outcome)
        if now is None:
            return
        if auth:
            self._outbox.hold(location, now, self.twinzo.auth_backoff_s)
        else:
            self._outbox.done(location, now)

    def _service_trouble(self, now: float, result: PostResult) -> None:
        """A retryable failure holds the whole plant: Retry-After, else jittered backoff."""
        self._probing = False
        delay = result.retry_after_s
        if delay is not None:
            delay = self._capped_retry_after(delay, result)
        else:
            delay = jittered_delay(
                self.twinzo.backoff_initial_s,
                self.twinzo.backoff_max_s,
                self._service_failures,
                self._rng,
            )
        self._service_failures += 1
        self._hold_until = max(self._hold_until, now + delay)

    def _capped_retry_after(self, asked: float, result: PostResult) -> float:
        """twinzo's `Retry-After`, cut to `retry_after_cap_s`; the hold is logged (folded).

        One answer of `Retry-After: 86400` would otherwise stop the plant for a day.
        """
        cap = self.twinzo.retry_after_cap_s
        delay = min(asked, cap)
        where = "authentication" if result.auth_failed else "post"
        text = (
            f"{self.plant.name}: twinzo answered {result.code} with Retry-After {asked:g}s "
            f"({where}); posting held for {delay:g}s"
        )
        if asked > cap:
            text += f" (capped by twinzo.retry_after_max_s = {cap:g}s)"
        self._log.limited("WARN", f"retry-after:{self.plant.name}", text, self.plant.name)
        return delay

    def _ok_text(self, location: Location) -> str:
        label = self.plant.label
        return (
            f"{location.login} ({label}:{location.vendor_id}) -> {self.plant.name}: "
            f"({location.x:.0f}, {location.y:.0f})"
        )


def _reason(result: PostResult) -> str:
    if result.auth_failed:
        return "auth"
    if result.status is None:
        return (result.error or "error").split(":")[0].replace(" ", "_")
    if result.status == 200:
        return "twinzo_rejected"
    return f"http_{result.status}"
