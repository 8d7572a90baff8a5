"""A deterministic engine for UI tests, snapshots, screenshots and the UI benchmark.

`SeededEngine.run()` starts no worker and opens no socket: it builds real
`Bridge`s, feeds them messages from seeded `AmrFleet`s through `Bridge.handle()`
on a `FixedClock`, fakes the twinzo answers by rule, publishes store health,
and then waits for `stop`. Log lines are republished with the clock's time so
the log panel is the same on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from dtp_console.bridge.outbox import Location
from dtp_console.bridge.worker import Bridge
from dtp_console.config.loader import load_config
from dtp_console.events import Bus, LogLine, OpsLog, StoreHealth
from dtp_console.runtime import Engine
from dtp_console.simulator.amr import AmrFleet
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.ui.display import FixedClock

__all__ = ["CONFIG", "FAILING_LOGIN", "SeededEngine", "write_config"]

#: twinzo answers 401 for this login: its token failed and its POSTs fail.
FAILING_LOGIN = "tugger-04"
#: This login's token is being refreshed.
REFRESHING_LOGIN = "tugger-06-old"

CONFIG = """
twinzo:
  client: demo
  password: change-me
  api_key: change-me
logging:
  log_every_n: 10
simulator:
  enabled: false
registry:
  enabled: false
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {host: embedded, topics: [ati_fm/sherpa/status]}
    device_map:
      ati_amr_001: tugger-05-old
      ati_amr_002: tugger-06-old
      ati_amr_003: tugger-07-old
    twinzo: {sector_id: 2}
    affine: {A: 999.74, B: 22.88, C: 22.88, D: -999.74, TX: 95598.8, TY: 167357.6}
    bounds: {x_min: 0, x_max: 265000, y_min: 46000, y_max: 218000}
    stale_after_s: 10
    min_post_interval_ms: 0
    simulator: {robots: 5, unmapped: 2, rate_hz: 1.0, seed: 11, station_stop_s: 3,
                speed_mm_s: 2500, disconnect_probability: 0.3, disconnect_s: 30}
  - name: HiTech Plant
    format: hitech
    broker: {host: hivemq.example.invalid, port: 8883, tls: true, verify: false,
             topics: ["hitech/amr/+/position"]}
    device_map:
      hitech-amr-001: tugger-03
      hitech-amr-002: tugger-04
    twinzo: {sector_id: 1}
    bounds: {x_min: 0, x_max: 120000, y_min: 0, y_max: 80000}
    min_post_interval_ms: 0
    simulator: {robots: 3, unmapped: 1, rate_hz: 1.0, seed: 12, station_stop_s: 2,
                speed_mm_s: 2000}
"""


def write_config(folder: Path, text: str = CONFIG) -> Path:
    """The seeded config as a file in `folder` (device-map saves write to it)."""
    path = folder / "console.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class SeededEngine(Engine):
    """An `Engine` whose `run()` fills the state from seeded fleets instead of starting workers."""

    def __init__(
        self,
        config_path: Path,
        *,
        clock: FixedClock | None = None,
        steps: int = 40,
        dt: float = 0.5,
        twins: bool = False,
    ) -> None:
        super().__init__(load_config(config_path), config_path=config_path, simulate=False)
        self.clock = clock or FixedClock()
        self.seed_steps, self.seed_dt = steps, dt
        self.fleets: dict[str, AmrFleet] = {}
        self._private = Bus()
        self._lines = self._private.subscribe(100_000)
        # Repeats fold for an hour: each warning shows once, whatever the machine's speed.
        self._oplog = OpsLog(self._private, 3600.0)
        self._posted = 0
        self.seed_twins = twins
        self._feeds: list[Callable[[float], None]] = []
        """Also seed a registry of the demo twins and the platform worker's rings."""
        self._store_health: dict[str, StoreHealth] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Seed the state, then idle until `stop` (no sockets, no workers)."""
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient())
            if self.seed_twins:
                await self._seed_twins(stack)
            self.build(http)
            self.advance(self.seed_steps, self.seed_dt)
            self._publish_store_health()
            self.ready.set()
            await stop.wait()

    async def _seed_twins(self, stack: contextlib.AsyncExitStack) -> None:
        from devtools.seeded_twins import open_seeded_registry, seed_platform

        assert self.config_path is not None
        service, repo = await open_seeded_registry(self.config_path.parent, self.bus, self.clock)
        stack.push_async_callback(repo.close)
        self.registry = service
        self._feeds.append(seed_platform(self, self.clock))

    def build(self, http: httpx.AsyncClient) -> None:
        """Real bridges (never started) and a seeded fleet per plant."""
        client = TwinzoClient(
            http, self.config.twinzo, base_url="https://twinzo.test", state=self.state
        )
        self.state.twinzo_url = client.base_url
        for plant in self.plants:
            state = self.state.plants[plant.name] = PlantState(plant.name)
            # The fleets stamp reports on the same fixed clock the bridges receive them by.
            self.bridges[plant.name] = Bridge(
                self.cells[plant.name],
                self.config.twinzo,
                client,
                state,
                self._oplog,
                address=("0.0.0.0", 1),  # noqa: S104 - shown in the UI, never bound
                wall_clock=self.clock.wall,
            )
            self.fleets[plant.name] = AmrFleet(plant, plant.simulator)
            self.addresses[plant.name] = ("127.0.0.1", 1883)
        self._seed_connections()

    def advance(self, steps: int = 1, dt: float = 0.5) -> None:
        """Step every fleet `steps` times by `dt` seconds, handle and 'post' what they sent."""
        for _ in range(steps):
            self.clock.advance(dt)
            now = self.clock.monotonic()
            for name, fleet in self.fleets.items():
                bridge = self.bridges[name]
                for topic, payload in fleet.step(dt):
                    bridge.state.counters.received += 1  # the MQTT source counts intake
                    bridge.handle(topic, payload, now=now)
                for location in bridge.outbox.take_all():
                    self.answer(bridge, location, now)
                bridge.watch.tick(now)  # ghost flags and the silence watchdog, on this clock
            for feed in self._feeds:
                feed(dt)
        self._seed_auth()
        self.republish_lines()

    def answer(self, bridge: Bridge, location: Location, now: float) -> None:
        state = bridge.state
        device = state.devices.get(location.vendor_id)
        bridge.outbox.done(location, now)
        self._posted += 1
        if device is None:
            state.counters.count("forwarded")
            return
        device.last_post_at = now
        jitter = zlib.crc32(f"{location.login}:{self._posted}".encode()) % 40
        device.last_post_latency_ms = 18.0 + jitter
        if location.login == FAILING_LOGIN:
            state.counters.count("failed:auth")
            device.posts_failed += 1
            if device.refusing_since is None:
                device.refusing_since = now
            device.last_post_status = "401"
            device.last_post_ok = False
            device.last_error = "Invalid login or password"
            text = f"OAuth failed for {location.login}: 401"
            self._oplog.limited("FAIL", f"auth:{location.login}", text, bridge.name)
            return
        state.counters.count("forwarded")
        device.posts_ok += 1
        device.last_accepted_at, device.refusing_since = now, None
        device.last_post_status = "200"
        device.last_post_ok = True
        if device.posts_ok % 25 == 1:
            label = bridge.plant.label
            self._oplog.emit(
                "OK",
                f"{location.login} ({label}:{location.vendor_id}) -> {bridge.name}:"
                f" ({location.x:.0f}, {location.y:.0f})",
                bridge.name,
            )

    def _seed_connections(self) -> None:
        old, hitech = (self.state.plants[p.name] for p in self.plants)
        old.mqtt, old.connects = "connected", 1
        hitech.mqtt = "connecting"
        hitech.mqtt_detail = "[Errno 111] Connection refused; retrying in 4.0s"

    def _seed_auth(self) -> None:
        wall = self.clock.wall()
        logins = sorted({d.login for p in self.state.plants.values() for d in p.devices.values()})
        for index, login in enumerate(logins):
            auth = self.state.auth_for(login)
            auth.authentications = 1
            if login == FAILING_LOGIN:
                auth.status, auth.last_result = "failed", "401"
                auth.last_error = "Invalid login or password"
                auth.expires_at = None
                continue
            auth.status = "refreshing" if login == REFRESHING_LOGIN else "valid"
            auth.last_result = "200"
            auth.expires_at = wall + 900 - 170 * index
            auth.refreshes = index % 2

    @property
    def store_health(self) -> Mapping[str, StoreHealth]:
        """The seeded stores' latest checks (no `StoreService` runs here)."""
        return self._store_health

    def store_checked(self, health: StoreHealth) -> None:
        """A store health check happened: kept and published, as `StoreService.check_health`."""
        self._store_health[health.name] = health
        self.bus.publish(health)

    def _publish_store_health(self) -> None:
        wall = self.clock.wall()
        for health in (
            StoreHealth(name="sqlite", role="observations,events,relationships", ok=True,
                        latency_ms=0.4, last_success=wall - 2, ts=wall),
            StoreHealth(name="folder", role="blobs", ok=True, latency_ms=0.2,
                        last_success=wall - 2, ts=wall),
            StoreHealth(name="influx", role="observations", ok=False, latency_ms=None,
                        last_success=wall - 25, error="no answer within 10s", ts=wall),
        ):  # fmt: skip
            self.store_checked(health)

    def republish_lines(self) -> None:
        wall = self.clock.wall()
        for event in self._lines.drain():
            if isinstance(event, LogLine):
                self.bus.publish(dataclasses.replace(event, ts=wall))
