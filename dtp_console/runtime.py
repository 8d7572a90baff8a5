"""The supervisor: builds the workers from the config, runs them, stops them in order.

The same start-up and shutdown path serves the UI and `--no-ui`. Start order:
the HTTP API (when enabled), sandbox (when enabled) and embedded brokers (the
platform's too), the shared HTTP client, the stores, then bridges, the platform
worker (`dtp/#`) and the simulator. On stop, intake ends first, then every bridge
drains its outbox, then clients and servers close. A worker that crashes is
restarted with backoff and the operator is told; the others keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtp_console import __version__
from dtp_console.backoff import Backoff
from dtp_console.bridge.cell import PlantCell
from dtp_console.bridge.device_map import mapping_problems
from dtp_console.bridge.worker import Bridge
from dtp_console.config.loader import ConfigError, load_config
from dtp_console.config.model import ConsoleConfig, PlantConfig
from dtp_console.events import (
    Bus,
    LogLine,
    OpsLog,
    StoreHealth,
    Subscription,
    TwinDeleted,
    TwinUpdated,
)
from dtp_console.state import EngineState, PlantState
from dtp_console.stores.records import EventRecord
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.http import twinzo_http_client
from dtp_console.urls import is_loopback, mask_url
from dtp_console.view import AffineSaved, LinkStatus
from dtp_console.watchdog import ServiceNotifier, WorkerLedger

if TYPE_CHECKING:
    from dtp_console.calibrate.points import ControlPoint
    from dtp_console.commands import LoggedRegistry
    from dtp_console.ingest.rings import Rings
    from dtp_console.ingest.worker import PlatformWorker
    from dtp_console.registry.service import RegistryService
    from dtp_console.stores.service import StoreService
    from dtp_console.twinzo.sandbox import TwinzoSandbox

__all__ = ["Engine"]


class Engine:
    """Every worker of one console process (the UI sees it as a `view.ConsoleEngine`)."""

    def __init__(
        self,
        config: ConsoleConfig,
        *,
        config_path: Path | None = None,
        plants: Sequence[str] | None = None,
        bus: Bus | None = None,
        simulate: bool | None = None,
    ) -> None:
        self._config = config
        self.config_path = config_path
        self.bus = bus or Bus()
        self.state = EngineState()
        self.log = OpsLog(self.bus, config.logging.repeat_window_s)
        chosen = [config.plant(name) for name in plants] if plants else config.plants
        self.cells: dict[str, PlantCell] = {
            p.name: PlantCell(p, config.twinzo) for p in chosen if p.enabled or plants
        }
        """The one owner of each running plant's current config (bridges read it there)."""
        self._config_versions = self._versions()
        self.simulate = config.simulator.enabled if simulate is None else simulate
        self.bridges: dict[str, Bridge] = {}
        self.locks: dict[str, Any] = {}
        """Each plant's `PlantLock` (`dtp_console.ha`) while `ha` is on."""
        self.sandbox: TwinzoSandbox | None = None
        """The `TwinzoSandbox` while it runs (sandbox enabled)."""
        self.addresses: dict[str, tuple[str, int]] = {}
        """Broker address each plant actually uses (embedded ones resolved)."""
        self.platform_address: tuple[str, int] | None = None
        """The platform broker (`dtp/#`), when the platform worker or the simulator runs."""
        self.platform: PlatformWorker | None = None
        """The `PlatformWorker` while it runs (`platform.enabled`, or the simulator)."""
        self.stores: StoreService | None = None
        """The `StoreService` while it runs (`stores.enabled`)."""
        self.registry: RegistryService | None = None
        """The `RegistryService` while the registry worker runs."""
        self.api: Any = None
        """The `ApiServer` while it serves (`api.enabled`)."""
        self.ready = asyncio.Event()
        """Set once every worker has started."""
        self.workers = WorkerLedger()
        """What the supervisor knows of each worker (the systemd watchdog reads it)."""
        self._twins: LoggedRegistry | None = None
        from dtp_console.commands import ConfigFileWrites

        self._files = ConfigFileWrites()

    @property
    def config(self) -> ConsoleConfig:
        """The config that runs: the running plants as their cells hold them now.

        A reload replaces what applies live and keeps the running value of what
        needs a restart (`dtp_console.config.reload`), so this is what runs, not
        necessarily what the file says.
        """
        versions = self._versions()
        if versions != self._config_versions:
            current = {name: cell.plant for name, cell in self.cells.items()}
            plants = [current.get(p.name, p) for p in self._config.plants]
            self._config = self._config.model_copy(update={"plants": plants})
            self._config_versions = versions
        return self._config

    @property
    def plants(self) -> list[PlantConfig]:
        """The plants this process runs, in tab order, as they run now."""
        return [cell.plant for cell in self.cells.values()]

    def _versions(self) -> tuple[int, ...]:
        return tuple(cell.version for cell in self.cells.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down in order."""
        self.state.started_at = time.time()
        async with contextlib.AsyncExitStack() as stack:
            # systemd (Type=notify): READY, STATUS, STOPPING and the watchdog; else a no-op.
            await stack.enter_async_context(ServiceNotifier(self, stop))
            # First: a taken `api.listen` stops the start before anything else binds.
            await self._start_api(stack)
            base_url = await self._start_sandbox(stack)
            await self._start_brokers(stack)
            await self._start_platform_broker(stack)
            twinzo = self.config.twinzo
            http = await stack.enter_async_context(
                twinzo_http_client(twinzo, user_agent=f"dtp-console/{__version__}")
            )
            store_feed = self.bus.subscribe(maxsize=50_000) if self.config.stores.enabled else None
            await self._open_stores(stack)
            if self.stores is None and store_feed is not None:
                store_feed.close()
                store_feed = None
            self._make_platform()
            client = TwinzoClient(http, twinzo, base_url=base_url, state=self.state)
            # Masked at the source: the banner, the UI and the stats JSON all read this.
            self.state.twinzo_url = mask_url(client.base_url)
            plain = urllib.parse.urlsplit(client.base_url)
            if plain.scheme == "http" and not is_loopback(plain.hostname):
                self.log.emit(
                    "WARN",
                    f"twinzo over plaintext http:// ({mask_url(client.base_url)}): device "
                    "passwords, tokens and the API key cross the network unencrypted",
                )
            if not twinzo.verify_tls:
                self.log.emit(
                    "WARN", f"TLS verification is OFF for twinzo ({self.state.twinzo_url})"
                )
            for plant in self.plants:
                plant_state = self.state.plants[plant.name] = PlantState(plant.name)
                lock = self._plant_lock(plant, plant_state)
                self.bridges[plant.name] = Bridge(
                    self.cells[plant.name],
                    twinzo,
                    client,
                    plant_state,
                    self.log,
                    address=self.addresses[plant.name],
                    log_every_n=self.config.logging.log_every_n,
                    may_post=lock.may_post if lock is not None else None,
                )
                if lock is not None:
                    lock.warm = self.bridges[plant.name].poster.warm_tokens
                    self.locks[plant.name] = lock
            async with asyncio.TaskGroup() as group:
                for bridge in self.bridges.values():
                    group.create_task(
                        self._supervise(f"bridge {bridge.name}", self._bridge_work(bridge), stop),
                        name=f"bridge:{bridge.name}",
                    )
                if self.simulate:
                    group.create_task(
                        self._supervise("simulator", self._run_simulator, stop), name="simulator"
                    )
                if self.stores is not None and store_feed is not None:
                    group.create_task(
                        self._supervise("stores", self.stores.run, stop), name="stores"
                    )
                    group.create_task(
                        self._feed_stores(self.stores, store_feed, stop), name="store-feed"
                    )
                if self._registry_wanted():
                    group.create_task(
                        self._supervise("registry", self._run_registry, stop), name="registry"
                    )
                if self.platform is not None:
                    group.create_task(
                        self._supervise("platform", self._run_platform, stop), name="platform"
                    )
                group.create_task(self._housekeeping(stop), name="housekeeping")
                self.ready.set()
                self.log.emit("INFO", self._banner())
            # Every worker has stopped: publish the folded lines still waiting for their
            # window to end, or the last "(+N like it)" / "… and N more" is lost.
            self.log.flush(final=True)

    def _plant_lock(self, plant: PlantConfig, state: PlantState) -> Any:
        """The plant's `PlantLock` when `ha` is on (None: the bridge posts unconditionally)."""
        if not self.config.ha.enabled:
            return None
        from dtp_console.ha import PlantLock

        return PlantLock(self.config.ha, plant.name, self.config.twinzo.client, state, self.log)

    def _bridge_work(self, bridge: Bridge) -> Callable[[asyncio.Event], Awaitable[None]]:
        """What supervises a bridge: its run, beside its plant's lock when `ha` is on."""
        lock = self.locks.get(bridge.name)
        if lock is None:
            return bridge.run
        from dtp_console.ha import run_with_lock

        return lambda stop: run_with_lock(lock, bridge.run, stop)

    def _banner(self) -> str:
        plants = ", ".join(
            f"{name} <- {host}:{port}" for name, (host, port) in self.addresses.items()
        )
        api = f"; api {self.api.url}" if self.api is not None else ""
        return mask_url(
            f"dtp-console {__version__}: twinzo {self.state.twinzo_url}; "
            f"plants: {plants or 'none'}{api}"
        )

    async def _start_api(self, stack: contextlib.AsyncExitStack) -> None:
        """Serve the HTTP API (`api.enabled`); `ApiBindError` when `api.listen` is taken."""
        cfg = self.config.api
        if not cfg.enabled:
            return
        from dtp_console.api.config import is_loopback_host
        from dtp_console.api.server import ApiServer

        def _record(record: EventRecord) -> bool:
            if self.stores is None:
                return False
            self.stores.submit_event(record)
            return True

        server = ApiServer(
            cfg,
            bus=self.bus,
            registry=lambda: self.registry,
            record_event=_record,
            engine=self,
            log=self.log,
        )
        await server.start()
        stack.push_async_callback(server.stop)
        self.api = server
        if cfg.tls is None and not is_loopback_host(cfg.address[0]):
            self.log.emit(
                "WARN",
                f"api on {server.url} is plaintext http on a non-loopback address "
                "(api.allow_plaintext_remote): bearer tokens cross the network unencrypted",
            )
        if not cfg.tokens:
            self.log.emit(
                "INFO", "api: no tokens configured (api.tokens); only health routes answer"
            )

    async def _start_sandbox(self, stack: contextlib.AsyncExitStack) -> str | None:
        cfg = self.config.sandbox
        if not cfg.enabled:
            return None
        from dtp_console.twinzo.sandbox import TwinzoSandbox

        twinzo = self.config.twinzo
        logins = {login for p in self.config.plants for login in p.device_map.values()}
        branch = next((p.twinzo.branch for p in self.config.plants if p.twinzo.branch), None)
        self.sandbox = TwinzoSandbox(
            cfg,
            client=twinzo.client,
            password=twinzo.password.get_secret_value(),
            api_key=twinzo.api_key.get_secret_value(),
            logins=logins or None,
            branch=branch,
        )
        await stack.enter_async_context(self.sandbox)
        url: str = self.sandbox.url
        self.log.emit("INFO", f"twinzo sandbox listening on {url}")
        return url

    async def _start_brokers(self, stack: contextlib.AsyncExitStack) -> None:
        for plant in self.plants:
            broker = plant.broker
            if not broker.embedded:
                self.addresses[plant.name] = (broker.host, broker.port)
                continue
            from dtp_console.simulator.broker import EmbeddedBroker

            embedded = EmbeddedBroker("127.0.0.1", broker.port)
            port = await embedded.start()
            stack.push_async_callback(embedded.stop)
            self.addresses[plant.name] = ("127.0.0.1", port)
            self.log.emit("INFO", f"embedded MQTT broker for {plant.name} on 127.0.0.1:{port}")

    def _platform_wanted(self) -> bool:
        """Whether the platform worker runs: `platform.enabled`, by default with the simulator."""
        enabled = self.config.platform.enabled
        return self.simulate if enabled is None else enabled

    async def _start_platform_broker(self, stack: contextlib.AsyncExitStack) -> None:
        if not (self.simulate or self._platform_wanted()):
            return
        if "broker" in self.config.simulator.model_fields_set:
            self.log.emit(
                "WARN", "simulator.broker is deprecated: it is platform.broker now (same fields)"
            )
        platform = self.config.platform.broker
        if not platform.embedded:
            self.platform_address = (platform.host, platform.port)
            return
        from dtp_console.simulator.broker import EmbeddedBroker

        embedded = EmbeddedBroker("127.0.0.1", platform.port)
        port = await embedded.start()
        stack.push_async_callback(embedded.stop)
        self.platform_address = ("127.0.0.1", port)
        self.log.emit("INFO", f"embedded platform broker (dtp/#) on 127.0.0.1:{port}")

    def _make_platform(self) -> None:
        if not self._platform_wanted() or self.platform_address is None:
            return
        from dtp_console.ingest.worker import PlatformWorker

        room = self.config.simulator.generators.room.topic
        worker = PlatformWorker(
            self.config.platform,
            self.log,
            reading_topics=frozenset({room}),
            topic_counts=self.state.platform_topics,
        )
        worker.stores = self.stores
        self.platform = worker
        self.state.platform = worker.state
        self.state.platform_stats = worker.stats_dict

    async def _run_platform(self, stop: asyncio.Event) -> None:
        assert self.platform is not None
        assert self.platform_address is not None
        await self.platform.run(self.platform_address, stop)

    async def _open_stores(self, stack: contextlib.AsyncExitStack) -> None:
        self._warn_plaintext_registry()
        if not self.config.stores.enabled:
            return
        from dtp_console.stores.service import StoreService

        # A store that cannot open is a red badge and a log line (the service catches it);
        # a failure building the service itself must not stop the bridges either.
        try:
            service = StoreService(self.config.stores, self.bus, self.log)
            await stack.enter_async_context(service)
        except Exception as exc:
            reason = mask_url(f"{type(exc).__name__}: {exc}".splitlines()[0])
            self.log.emit("FAIL", f"stores not started: {reason}; bridges run without them")
            return
        self.stores = service
        self.state.store_stats = service.stats_dict
        for plant in self.plants:
            service.sync_device_map(plant.name, plant.device_map, snapshot=False)

    def _warn_plaintext_registry(self) -> None:
        registry = self.config.registry
        if not registry.enabled or registry.postgres_dsn is None:
            return
        from dtp_console.pg import plaintext_warning

        warning = plaintext_warning(
            "registry.postgres_dsn",
            registry.postgres_dsn.get_secret_value(),
            registry.postgres_sslmode,
            registry.postgres_ca_file,
        )
        if warning:
            self.log.emit("WARN", warning)

    async def _feed_stores(
        self, stores: StoreService, feed: Subscription, stop: asyncio.Event
    ) -> None:
        """Failures and registry changes from the bus become events and graph updates."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            for event in feed.drain():
                if isinstance(event, LogLine):
                    stores.submit_log(event)
                elif isinstance(event, TwinUpdated | TwinDeleted):
                    stores.submit_registry(event)
                    twin = event.twin
                    if (
                        isinstance(event, TwinUpdated)
                        and twin.status != "deprecated"
                        and twin.source
                    ):
                        # Every registered version of a twin file is archived (manifest pattern).
                        stores.archive_twin_file(Path(twin.source), twin.id)
            if stop.is_set():
                feed.close()
                return

    def _registry_wanted(self) -> bool:
        registry = self.config.registry
        if not registry.enabled:
            return False
        if not registry.twins_root.is_dir():
            self.log.emit("INFO", f"registry idle: no twins folder at {registry.twins_root}")
            return False
        return True

    async def _run_registry(self, stop: asyncio.Event) -> None:
        from dtp_console.registry.runner import run_registry

        def _opened(service: Any) -> None:
            self.registry = service

        try:
            await run_registry(self.config.registry, self.bus, stop=stop, on_open=_opened)
        finally:
            self.registry = None

    # -- the UI's door (`dtp_console.view.ConsoleEngine`) ------------------------------

    @property
    def rings(self) -> Rings | None:
        """The platform worker's per-stream rings while it runs, else None."""
        return None if self.platform is None else self.platform.rings

    @property
    def twins(self) -> LoggedRegistry | None:
        """The running registry as the UI sees it (lifecycle moves logged), or None."""
        service = self.registry
        if service is None:
            self._twins = None
        elif self._twins is None or self._twins.service is not service:
            from dtp_console.commands import LoggedRegistry

            self._twins = LoggedRegistry(service, self.log)
        return self._twins

    @property
    def store_health(self) -> Mapping[str, StoreHealth]:
        """The stores service's latest check per store (its own dict, not a copy)."""
        return {} if self.stores is None else self.stores.health

    def subscribe(self, *, maxsize: int) -> Subscription:
        """A bounded reader of the bus (events from now on)."""
        return self.bus.subscribe(maxsize=maxsize)

    def device_map(self, plant_name: str) -> dict[str, str] | None:
        """The running device map of a plant, or None while its bridge is not running."""
        bridge = self.bridges.get(plant_name)
        return None if bridge is None else dict(bridge.device_map)

    @property
    def link(self) -> LinkStatus | None:
        """None: this engine runs in the UI's own process."""
        return None

    @property
    def read_only(self) -> str | None:
        """None: the in-process UI may change everything."""
        return None

    async def save_affine(
        self, plant_name: str, values: Mapping[str, float], *, reason: str
    ) -> AffineSaved:
        """Validate, write (atomically, comments kept) and apply a plant's affine; log, event.

        Raises `ConfigWriteError` for an invalid affine or a file that cannot be written;
        the running affine stays in force.
        """
        from dtp_console.commands import save_affine

        return await save_affine(
            plant_name,
            values,
            reason=reason,
            config_path=self.config_path,
            files=self._files,
            bridge=self.bridges.get(plant_name),
            stores=self.stores,
            log=self.log,
        )

    def capture_point(
        self, plant_name: str, vendor_id: str, twinzo_x: float, twinzo_y: float, name: str
    ) -> ControlPoint:
        """Pair a robot's last vendor position with where twinzo shows it (`ValueError` if none)."""
        from dtp_console.commands import capture_point

        return capture_point(
            plant_name,
            vendor_id,
            twinzo_x,
            twinzo_y,
            name,
            bridge=self.bridges.get(plant_name),
            state=self.state.plants.get(plant_name),
        )

    async def save_device_map(
        self,
        plant_name: str,
        mapping: Mapping[str, str],
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Persist the operator's device-map edits atomically, apply them live; return the map.

        The edits are what changed from `base` (the map the editor opened with; by
        default the running one) to `mapping`; they are applied to the map in the file
        now, so mappings added to the file meanwhile survive. Raises `ValueError` for an
        invalid map, `DeviceMapConflictError` when a vendor id changed both ways and
        `ConfigWriteError` when the file cannot be written; the old map stays in force.
        """
        problems = mapping_problems(mapping)
        if problems:
            raise ValueError("; ".join(problems))
        bridge = self.bridges.get(plant_name)
        if bridge is None:
            msg = f"no running bridge for plant {plant_name!r}"
            raise ValueError(msg)
        base = dict(bridge.device_map) if base is None else base
        newest = True
        if self.config_path is not None:
            from dtp_console.config.writer import merge_device_map

            path, edited = self.config_path, mapping
            mapping, generation = await self._files.write(
                lambda: merge_device_map(path, plant_name, base, edited)
            )
            newest = self._files.newest("device_map", plant_name, generation)
        else:
            mapping = dict(mapping)
        before = dict(bridge.device_map)
        if newest:  # else a later save, whose merge holds this one, already runs
            bridge.apply_device_map(mapping)
        added = sorted(set(mapping) - set(before))
        removed = sorted(set(before) - set(mapping))
        changed = sorted(k for k in mapping if k in before and before[k] != mapping[k])
        if self.stores is not None:
            self.stores.sync_device_map(plant_name, mapping)
            self.stores.submit_event(
                EventRecord(
                    ts=dt.datetime.now(dt.UTC),
                    severity=1,
                    source="device-map",
                    body={
                        "plant": plant_name,
                        "devices": len(mapping),
                        "added": {k: mapping[k] for k in added},
                        "removed": removed,
                        "changed": {k: [before[k], mapping[k]] for k in changed},
                    },
                )
            )
        self.log.emit(
            "INFO",
            f"device map of {plant_name} saved: {len(mapping)} devices"
            f" (+{len(added)} -{len(removed)} ~{len(changed)})",
            plant_name,
        )
        return dict(mapping)

    async def _run_simulator(self, stop: asyncio.Event) -> None:
        from dtp_console.simulator.runner import run_simulator

        await run_simulator(
            self.config,
            self.addresses,
            stop,
            bus=self.bus,
            plants=[p.name for p in self.plants],
            platform_address=self.platform_address,
        )

    async def _supervise(
        self, name: str, work: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        backoff = Backoff(1.0, 30.0)
        while not stop.is_set():
            self.workers.running(name)
            try:
                await work(stop)
                break
            except Exception as exc:
                self.workers.crashed(name)
                delay = backoff.next()
                # An exception's text may carry a URL with credentials (a driver error).
                text = mask_url(repr(exc))
                self.log.emit("FAIL", f"{name} crashed: {text}; restarting in {delay:.1f}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        self.workers.ended(name)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Summaries of folded log lines, and a live `reload` whenever the file changes."""
        mtime = self._config_mtime()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            self.log.flush()
            current = self._config_mtime()
            if current != mtime:
                mtime = current
                self.reload()

    def _config_mtime(self) -> float | None:
        if self.config_path is None:
            return None
        try:
            return os.stat(self.config_path).st_mtime
        except OSError:
            return None

    def reload(self) -> None:
        """Re-read the config file: apply what reloads live to every running plant, and
        name what needs a restart (it keeps running with the old value).

        All or nothing per file: a file that does not load changes nothing.
        """
        if self.config_path is None:
            return
        try:
            fresh = load_config(self.config_path)
        except ConfigError as exc:
            self.log.emit("WARN", f"config reload failed, keeping the running config: {exc}")
            return
        from dtp_console.config.reload import plan_reload, restart_warnings

        plan = plan_reload(self.config, fresh, self.cells)
        for plant_name, line in restart_warnings(plan):
            self.log.emit("WARN", line, plant_name if plant_name in self.cells else None)
        twinzo = plan.config.twinzo
        for name, cell in self.cells.items():
            before, plant = cell.plant, plan.config.plant(name)
            if plant is before and twinzo is cell.twinzo:
                continue
            bridge = self.bridges.get(name)
            if bridge is not None:
                bridge.apply_plant(plant, twinzo)
            else:
                cell.replace(plant, twinzo)
            self._say_reloaded(before, plant, plan.live.get(f"plants[{name}]", []))
        if "twinzo" in plan.live:
            self.log.emit("INFO", f"config of twinzo reloaded: {', '.join(plan.live['twinzo'])}")
            if "password" in plan.live["twinzo"] and self.sandbox is not None:
                self.log.emit(
                    "WARN",
                    "the twinzo sandbox keeps accepting the old twinzo.password until a restart",
                )
        self._config = plan.config
        self._config_versions = self._versions()

    def _say_reloaded(self, before: PlantConfig, plant: PlantConfig, fields: list[str]) -> None:
        """One line per kind of live change of a plant (the device map also goes to the stores)."""
        name = plant.name
        if plant.device_map != before.device_map:
            if self.stores is not None:
                self.stores.sync_device_map(name, plant.device_map)
            self.log.emit(
                "INFO", f"device map of {name} reloaded ({len(plant.device_map)} devices)", name
            )
        if plant.affine != before.affine:
            self.log.emit("INFO", f"affine of {name} reloaded", name)
        others = [f for f in fields if f not in ("device_map", "affine")]
        if others:
            self.log.emit("INFO", f"config of {name} reloaded: {', '.join(others)}", name)
