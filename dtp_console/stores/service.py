"""The store service: feeds the configured stores from the engine, checks their health.

The engine hands it platform MQTT messages, log lines, registry changes,
device-map edits and twin files through synchronous methods that only map and
queue — they never wait on a store. Each store role has its own bounded spool
(`dtp_console.stores.spool`); `run()` drives the spools' flush tasks and the
health worker, which pings every store on an interval and publishes a
`StoreHealth` event per store (the latest is kept in `health`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from dtp_console import yamlsafe
from dtp_console.events import Bus, Event, LogLine, OpsLog, StoreHealth, TwinDeleted, TwinUpdated
from dtp_console.registry.model import TwinRecord, default_twin_id
from dtp_console.stores.config import StoresConfig
from dtp_console.stores.disk_spool import DiskSpool, SpoolDiskError, spool_path
from dtp_console.stores.mapping import Mapped, PlatformMapper, event_from_log, event_from_registry
from dtp_console.stores.plan import StorePlan, plan_stores
from dtp_console.stores.protocols import (
    BlobStore,
    EventStore,
    GraphStore,
    ObservationStore,
    Store,
    StoreError,
)
from dtp_console.stores.records import BlobPut, EventRecord, GraphChange, Observation, Signal
from dtp_console.stores.spool import Spool, SpoolStats
from dtp_console.urls import check_url, is_loopback, mask_url

__all__ = ["GraphOp", "StoreService"]

#: One relationship change, applied to whichever graph store serves the role.
GraphOp = GraphChange
#: Twin files larger than this are not archived.
_MAX_TWIN_FILE = 1 << 20
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def _stamp(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S.%fZ")


def _slug(text: str) -> str:
    return _SLUG.sub("-", text).strip("-.") or "unnamed"


def _asset_of(twin: TwinRecord) -> str | None:
    for key in ("asset_id", "asset"):
        value = twin.metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class StoreService:
    """Feeds the platform's stores and watches their health.

    `async with StoreService(config, bus, log) as service:` builds and opens
    the adapters (a store that is down is retried by its spool and the health
    worker; it never stops the console); `await service.run(stop)` until stop.
    """

    def __init__(
        self, config: StoresConfig, bus: Bus, log: OpsLog, *, plan: StorePlan | None = None
    ) -> None:
        self.config = config
        self._bus = bus
        self._log = log
        self.plan = plan if plan is not None else (plan_stores(config) if config.enabled else None)
        self.mapper = PlatformMapper()
        """Mapping counters of platform messages (mapped per kind, rejected per reason)."""
        self.health: dict[str, StoreHealth] = {}
        """The latest health check of each store, by store name."""
        self.spools: dict[str, Spool[Any] | DiskSpool[Any]] = {}
        """Spools by `<role>:<store>` (`observations:postgres`, `blobs:folder`, …)."""
        self._opened: set[str] = set()
        self._signals: dict[uuid.UUID, Signal] = {}
        self._device_maps: dict[str, dict[str, str]] = {}
        self._last_success: dict[str, float] = {}
        self._observation_spools: list[Spool[Any] | DiskSpool[Any]] = []
        self._event_spool: Spool[Any] | DiskSpool[Any] | None = None
        self._graph_spool: Spool[Any] | DiskSpool[Any] | None = None
        self._blob_spool: Spool[Any] | DiskSpool[Any] | None = None
        if self.plan is not None:
            self._make_spools(self.plan)

    # -- construction ---------------------------------------------------------------------

    def _spool(
        self, key: str, write: Callable[[list[Any]], Awaitable[None]], batch_size: int
    ) -> Spool[Any] | DiskSpool[Any]:
        cfg = self.config
        spool: Spool[Any] | DiskSpool[Any]
        if cfg.spool == "disk":
            role, store = key.split(":", 1)
            spool = DiskSpool(
                key,
                write,
                self._log,
                spool_path(cfg.spool_root, store, role),
                max_records=cfg.spool_max,
                max_bytes=cfg.spool_max_bytes,
                batch_size=batch_size,
                flush_interval_s=cfg.flush_interval_ms / 1000,
                retry_initial_s=cfg.retry_initial_s,
                retry_max_s=cfg.retry_max_s,
                sync=cfg.spool_sync,
            )
            self.spools[key] = spool
            return spool
        spool = Spool(
            key,
            write,
            self._log,
            max_records=cfg.spool_max,
            batch_size=batch_size,
            flush_interval_s=cfg.flush_interval_ms / 1000,
            retry_initial_s=cfg.retry_initial_s,
            retry_max_s=cfg.retry_max_s,
        )
        self.spools[key] = spool
        return spool

    def _make_spools(self, plan: StorePlan) -> None:
        cfg = self.config
        for store in plan.observations:
            batch = cfg.influx.batch_size if store.name == "influx" else cfg.postgres.batch_size
            key = f"observations:{store.name}"
            self._observation_spools.append(
                self._spool(key, self._observation_writer(store), batch)
            )
        if plan.events is not None:
            key = f"events:{plan.events.name}"
            self._event_spool = self._spool(key, self._event_writer(plan.events), 1_000)
        if plan.relationships is not None:
            # Graph changes are applied one by one; small batches keep a retry cheap.
            key = f"relationships:{plan.relationships.name}"
            self._graph_spool = self._spool(key, self._graph_writer(plan.relationships), 100)
        if plan.blobs is not None:
            key = f"blobs:{plan.blobs.name}"
            self._blob_spool = self._spool(key, self._blob_writer(plan.blobs), 10)

    async def _ensure_open(self, store: Store) -> None:
        if store.name not in self._opened:
            await store.open()
            self._opened.add(store.name)

    def _observation_writer(
        self, store: ObservationStore
    ) -> Callable[[list[Signal | Observation]], Awaitable[None]]:
        async def write(batch: list[Signal | Observation]) -> None:
            await self._ensure_open(store)
            signals = {r.signal_id: r for r in batch if isinstance(r, Signal)}
            if signals:
                await store.write_signals(list(signals.values()))
            observations = [r for r in batch if isinstance(r, Observation)]
            if observations:
                await store.write_observations(observations)

        return write

    def _event_writer(self, store: EventStore) -> Callable[[list[EventRecord]], Awaitable[None]]:
        async def write(batch: list[EventRecord]) -> None:
            await self._ensure_open(store)
            await store.write_events(batch)

        return write

    def _graph_writer(self, store: GraphStore) -> Callable[[list[GraphChange]], Awaitable[None]]:
        async def write(batch: list[GraphChange]) -> None:
            # Merges are idempotent, so a batch retried after a partial failure is safe.
            await self._ensure_open(store)
            for change in batch:
                await getattr(store, change.op)(*change.args)

        return write

    def _blob_writer(self, store: BlobStore) -> Callable[[list[BlobPut]], Awaitable[None]]:
        async def write(batch: list[BlobPut]) -> None:
            await self._ensure_open(store)
            for put in batch:
                await store.put(put.key, put.data, put.content_type, put.source)

        return write

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> StoreService:
        if self.plan is None:
            return self
        for bad in self.plan.unavailable:
            self._log.emit(
                "FAIL", f"store {bad.name} ({bad.role}) unavailable: {mask_url(bad.error)}"
            )
        for warning in plaintext_warnings(self.config):
            self._log.emit("WARN", warning)
        for spool in self.spools.values():
            if isinstance(spool, DiskSpool):
                try:
                    await spool.open()
                except SpoolDiskError as exc:  # the CLI refuses this at start; later, a red badge
                    spool.disk_error = str(exc)
                    self._log.emit(
                        "FAIL", f"store {spool.name}: spool unusable: {exc}; records wait in memory"
                    )
        await asyncio.gather(*(self._open_at_start(s) for s in self.plan.stores.values()))
        return self

    async def _open_at_start(self, store: Store) -> None:
        """Open one store; whatever goes wrong is a logged red badge, never a dead console."""
        assert self.plan is not None
        role = self.plan.role_of(store.name)
        try:
            async with asyncio.timeout(self.config.probe_timeout_s):
                await self._ensure_open(store)
        except (StoreError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self.config.probe_timeout_s:g}s"
            self._log.limited(
                "WARN",
                f"store-open:{store.name}",
                f"store {store.name} ({role}) not reachable: {mask_url(reason)}; "
                "spooling and retrying",
            )
        except Exception as exc:  # an adapter or driver bug: this store only is down
            reason = mask_url(f"{type(exc).__name__}: {exc}".splitlines()[0])
            self._log.emit(
                "FAIL", f"store {store.name} ({role}) failed to open: {reason}; retrying"
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.plan is None:
            return
        for spool in self.spools.values():
            if isinstance(spool, DiskSpool):  # `run()` closes them; if it never ran, here
                await spool.save_and_close()
        for store in self.plan.stores.values():
            try:
                await store.close()
            except Exception as error:  # one store's close must not skip the others
                reason = mask_url(str(error).splitlines()[0] if str(error) else repr(error))
                self._log.emit("WARN", f"store {store.name}: close failed: {reason}")
        self._opened.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush the spools and check health until `stop`; then write what is spooled."""
        if self.plan is None:
            await stop.wait()
            return
        async with asyncio.TaskGroup() as tasks:
            for key, spool in self.spools.items():
                tasks.create_task(spool.run(stop, self.config.drain_timeout_s), name=f"spool {key}")
            tasks.create_task(self._health_loop(stop), name="store health")

    # -- intake (synchronous, never waits on a store) ---------------------------------------

    def submit_mqtt(self, topic: str, payload: bytes) -> None:
        """Map one platform message and queue its records (rejections are counted)."""
        if self.plan is None:
            return
        self.submit_mapped(self.mapper.map(topic, payload))

    def submit_mapped(self, mapped: Mapped) -> None:
        """Queue the records of one message the platform worker already mapped."""
        if self.plan is None or mapped.rejected is not None:
            return
        fresh = [s for s in mapped.signals if self._signals.get(s.signal_id) != s]
        for signal in fresh:
            self._signals[signal.signal_id] = signal
        if fresh or mapped.observations:
            for spool in self._observation_spools:
                spool.submit_many([*fresh, *mapped.observations])
        if mapped.events and self._event_spool is not None:
            self._event_spool.submit_many(mapped.events)

    def submit_log(self, line: LogLine) -> None:
        """Queue a bridge failure (`FAIL` line) as a severity-3 event; other lines are ignored."""
        record = event_from_log(line)
        if record is not None and self._event_spool is not None:
            self._event_spool.submit(record)

    def submit_event(self, record: EventRecord) -> None:
        """Queue one platform event as it is (e.g. an operator's device-map edit)."""
        if self._event_spool is not None:
            self._event_spool.submit(record)

    def submit_registry(self, event: Event) -> None:
        """Queue a registry change: an event-log entry and the twin's relationships."""
        if not isinstance(event, TwinUpdated | TwinDeleted) or self.plan is None:
            return
        if self._event_spool is not None:
            self._event_spool.submit(event_from_registry(event))
        if self._graph_spool is None:
            return
        twin = event.twin
        if isinstance(event, TwinDeleted) and event.hard:
            self._graph_spool.submit(GraphChange("remove_twin", (twin.id,)))
            return
        asset = _asset_of(twin)
        self._graph_spool.submit(
            GraphChange("merge_twin", (twin.id, twin.name, twin.tenant, twin.status, asset))
        )
        keep: list[tuple[str, Literal["static", "dynamic"]]] = [
            *((t, "static") for t in twin.dependencies.static),
            *((t, "dynamic") for t in twin.dependencies.dynamic),
        ]
        self._graph_spool.submit_many(
            [_dependency(twin.id, t, "static") for t in twin.dependencies.static]
            + [_dependency(twin.id, t, "dynamic") for t in twin.dependencies.dynamic]
            + [GraphChange("prune_dependencies", (twin.id, keep))]
        )

    def sync_device_map(
        self, plant: str, mapping: Mapping[str, str], *, snapshot: bool = True
    ) -> None:
        """Bring a plant's devices in the graph in line with `mapping`; snapshot it as a blob.

        Devices absent from `mapping` but present in the last map synced for
        the plant are removed. The snapshot goes to
        `device-maps/<plant>/<UTC timestamp>.json` (plant name made key-safe).
        """
        if self.plan is None:
            return
        previous = self._device_maps.get(plant, {})
        current = {str(k): str(v) for k, v in mapping.items()}
        if self._graph_spool is not None:
            for vendor_id, login in current.items():
                if previous.get(vendor_id) != login:
                    self._graph_spool.submit(_device(plant, vendor_id, login))
            for vendor_id in previous.keys() - current.keys():
                self._graph_spool.submit(_device_removal(plant, vendor_id))
        self._device_maps[plant] = current
        if snapshot and self._blob_spool is not None:
            now = dt.datetime.now(dt.UTC)
            body = {
                "plant": plant,
                "ts": now.isoformat(),
                "device_map": dict(sorted(current.items())),
            }
            data = json.dumps(body, indent=2).encode()
            key = f"device-maps/{_slug(plant)}/{_stamp(now)}.json"
            self._blob_spool.submit(BlobPut(key, data, "application/json", f"device-map:{plant}"))

    def archive_twin_file(self, path: Path, twin_id: str | None = None) -> None:
        """Queue a copy of a twin file as blob `twins/<id>/<UTC timestamp>.<ext>`.

        The file (at most 1 MiB) is read now, so the archive is the version
        that triggered the call; the id is read from its `@id` when not given.
        """
        if self._blob_spool is None:
            return
        path = Path(path)
        try:
            if path.stat().st_size > _MAX_TWIN_FILE:
                self._log.limited("WARN", "twin-archive", f"twin file {path} too large to archive")
                return
            data = path.read_bytes()
        except OSError as exc:
            self._log.limited(
                "WARN", "twin-archive", f"cannot archive twin file {path}: {exc.strerror or exc}"
            )
            return
        twin_id = twin_id or _twin_id_of(data) or default_twin_id(path.parent)
        suffix = path.suffix.lower() if path.suffix.lower() in (".yaml", ".yml", ".json") else ""
        content_type = "application/json" if suffix == ".json" else "application/yaml"
        key = f"twins/{_slug(twin_id)}/{_stamp(dt.datetime.now(dt.UTC))}{suffix or '.yaml'}"
        self._blob_spool.submit(BlobPut(key, data, content_type, f"twin-file:{path}"))

    # -- health ---------------------------------------------------------------------------

    def stats(self) -> list[SpoolStats]:
        """Counters of every spool."""
        return [spool.stats() for spool in self.spools.values()]

    def stats_dict(self) -> dict[str, Any]:
        """JSON-ready spool counters and latest health (the stats JSON's `stores`)."""
        stats = [spool.stats() for spool in self.spools.values()]
        spools = {s.name: s.as_dict() for s in stats}
        return {
            "spool": self.config.spool,
            "dropped": sum(s.dropped for s in stats),
            "pending": sum(s.pending for s in stats),
            "replayed": sum(s.replayed for s in stats),
            "on_disk": sum(s.on_disk for s in stats),
            "bytes_on_disk": sum(s.bytes_on_disk for s in stats),
            "spools": spools,
            "health": {
                name: {"ok": h.ok, "latency_ms": h.latency_ms, "error": h.error}
                for name, h in sorted(self.health.items())
            },
        }

    async def check_health(self) -> list[StoreHealth]:
        """Ping every store once (concurrently), publish and keep the results."""
        if self.plan is None:
            return []
        results = await asyncio.gather(*(self._check(s) for s in self.plan.stores.values()))
        for result in results:
            before = self.health.get(result.name)
            self.health[result.name] = result
            self._bus.publish(result)
            if not result.ok:
                self._log.limited(
                    "FAIL", f"store-health:{result.name}", f"store {result.name}: {result.error}"
                )
            elif before is not None and not before.ok:
                self._log.emit("INFO", f"store {result.name} is healthy again")
        return list(results)

    async def _check(self, store: Store) -> StoreHealth:
        assert self.plan is not None
        role = self.plan.role_of(store.name)
        started = time.perf_counter()
        error: str | None = None
        try:
            async with asyncio.timeout(self.config.probe_timeout_s):
                await self._ensure_open(store)
                await store.ping()
        except TimeoutError:
            error = f"no answer within {self.config.probe_timeout_s:g}s"
        except StoreError as exc:
            error = mask_url(str(exc))
        except Exception as exc:  # an adapter bug must not stop the health worker
            error = mask_url(f"{type(exc).__name__}: {exc}".splitlines()[0])
        latency = (time.perf_counter() - started) * 1000
        if error is None:
            self._last_success[store.name] = time.time()
        spools = [s for k, s in self.spools.items() if k.endswith(f":{store.name}")]
        ages = [a for s in spools if isinstance(s, DiskSpool) and (a := s.oldest_age_s())]
        disk_errors = [s.disk_error for s in spools if isinstance(s, DiskSpool) and s.disk_error]
        return StoreHealth(
            name=store.name,
            role=role,
            ok=error is None,
            latency_ms=round(latency, 2) if error is None else None,
            last_success=self._last_success.get(store.name),
            error=error,
            spool_pending=sum(s.pending for s in spools),
            spool_oldest_s=max(ages) if ages else None,
            spool_error=disk_errors[0] if disk_errors else None,
        )

    async def _health_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.check_health()
            try:
                async with asyncio.timeout(self.config.health_interval_s):
                    await stop.wait()
            except TimeoutError:
                pass


def plaintext_warnings(config: StoresConfig) -> list[str]:
    """Warnings for credentials that may travel unencrypted or unverified to a remote host."""
    from dtp_console.pg import plaintext_warning

    found: list[str] = []
    pg = config.postgres
    if pg.dsn is not None:
        warning = plaintext_warning(
            "stores.postgres", pg.dsn.get_secret_value(), pg.sslmode, pg.ca_file
        )
        if warning:
            found.append(warning)
    influx, neo4j = config.influx, config.neo4j
    if influx.url and influx.token and influx.token.get_secret_value():
        found += _clear_url_warning("stores.influx", influx.url, ("http",), "the token", "https://")
    if neo4j.uri and neo4j.password and neo4j.password.get_secret_value():
        found += _clear_url_warning(
            "stores.neo4j", neo4j.uri, ("bolt", "neo4j"), "the password", "bolt+s:// or neo4j+s://"
        )
    return found


def _clear_url_warning(
    what: str, url: str, plain: tuple[str, ...], secret: str, fix: str
) -> list[str]:
    try:
        check_url(
            url, (*plain, "https", "bolt+s", "bolt+ssc", "neo4j+s", "neo4j+ssc"), userinfo_hint=""
        )
    except ValueError:
        return []  # refused at load already
    parts = urlsplit(url)
    if parts.scheme.lower() not in plain or is_loopback(parts.hostname):
        return []
    return [
        f"{what}: {secret} goes in clear to {parts.hostname}:{parts.port or 'default port'} "
        f"({parts.scheme}://); use {fix}"
    ]


def _dependency(source: str, target: str, kind: Literal["static", "dynamic"]) -> GraphChange:
    return GraphChange("merge_dependency", (source, target, kind))


def _device(plant: str, vendor_id: str, login: str) -> GraphChange:
    return GraphChange("merge_device", (plant, vendor_id, login))


def _device_removal(plant: str, vendor_id: str) -> GraphChange:
    return GraphChange("remove_device", (plant, vendor_id))


def _twin_id_of(data: bytes) -> str | None:
    try:
        raw = yamlsafe.load(data.decode("utf-8", "replace"))
    except (yaml.YAMLError, RecursionError):
        return None
    value = raw.get("@id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value.strip() else None
