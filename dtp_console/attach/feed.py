"""The attach state feed: one tick per API server, a delta per client, bounded queues.

While at least one attach client is connected, one task ticks every `TICK_S`
(≤ 10 Hz on the service's own clock). Each tick encodes the engine's state once
for every client — a device whose counters and times did not move since the
last tick reuses its encoding — and gives each client what changed since its
last frame (`wire.Differ`), queued as one SSE frame. Bus events (log lines, store
health, twin changes) are encoded once and offered to every client; a change of
a running device map or affine is a `maps` event. With no client, nothing runs
and nothing subscribes to the bus: the feed costs the bridges nothing.

Offering never waits: each client has a bounded queue (`api.stream_queue`
frames), and a client whose queue is full is cut off (counted) instead of
slowing the tick, the bridges or the other clients; it reconnects and gets a
fresh snapshot. The queue and cut-off are the portal stream's (`StreamClient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from dtp_console.api.stream import OwnerLookup, StreamClient, StreamEvent, encode_event
from dtp_console.api.visibility import flagged_dependencies_known, unknown_to
from dtp_console.attach.wire import (
    Differ,
    encode_auth,
    encode_device,
    encode_plant_summary,
    map_etag,
)
from dtp_console.events import (
    Event,
    LogLine,
    StoreHealth,
    Subscription,
    TwinDeleted,
    TwinUpdated,
)
from dtp_console.view import ConsoleEngine

if TYPE_CHECKING:
    from dtp_console.api.tokens import Principal
    from dtp_console.config.model import Affine
    from dtp_console.registry.model import TwinRecord
    from dtp_console.state import DeviceState, EngineState

__all__ = [
    "TICK_S",
    "FeedClient",
    "FeedStats",
    "RunningBridge",
    "ServedEngine",
    "StateFeed",
    "maps_body",
]

TICK_S = 0.1
"""Seconds between two state frames of a client (at most)."""
#: Every this many ticks each device is encoded whatever its signature (a field that
#: moves without moving a counter shows within a second), and the stores are read.
_FULL_EVERY = 10
#: Events the feed's bus subscription holds between two ticks.
_BUS_QUEUE = 20_000
_logger = logging.getLogger(__name__)


class RunningBridge(Protocol):
    """What the feed reads of a running bridge."""

    @property
    def affine(self) -> Affine:
        """The vendor → twinzo affine in force."""
        ...


class ServedEngine(ConsoleEngine, Protocol):
    """The engine an API serves: the UI's door plus its config file and running bridges."""

    @property
    def config_path(self) -> Path | None:
        """The config file commands write to (None: the console runs without one)."""
        ...

    @property
    def bridges(self) -> Mapping[str, RunningBridge]:
        """The running bridges by plant name."""
        ...


@dataclass(slots=True)
class FeedStats:
    """Counters of the attach state stream."""

    ticks: int = 0
    """Ticks run (one shared encode each)."""
    devices_encoded: int = 0
    """Device encodings made (a device that did not change reuses the last one)."""
    devices_reused: int = 0
    """Devices whose encoding of the previous tick was reused."""
    deltas_shared: int = 0
    """Client deltas taken from another client's in the same tick (same plants, same
    picture last tick): diffed and encoded once."""
    frames: int = 0
    """Frames queued to clients (snapshots, deltas, events)."""
    bytes: int = 0
    """Bytes of frames written to clients (before compression)."""
    wire_bytes: int = 0
    """Bytes written to clients' sockets (after compression, when they accept gzip)."""
    cut_off: int = 0
    """Clients cut off because their queue was full (too slow)."""
    refused: int = 0
    """Clients refused because `api.max_stream_clients` were connected."""
    bus_dropped: int = 0
    """Bus events the feed's own subscription lost (it fell behind the bus)."""
    clients: int = 0
    """Clients connected now."""
    tick_seconds: float = 0.0
    """Time spent in ticks (encode, diffs, queueing): the feed's cost to the event loop."""
    compress_seconds: float = 0.0
    """Time spent compressing frames for clients that accept gzip (one stream each)."""
    tick_max_s: float = 0.0
    """The longest tick (the longest the feed held the event loop at once)."""
    errors: int = 0
    """Ticks or events that failed (a defect: logged with its traceback, the feed goes on)."""
    owner_lookups: int = 0
    """Queries of the tenants of twin events' dependencies (one per batch of events)."""
    owner_lookups_failed: int = 0
    """Of those, failed ones (restricted tokens were then told every dependency is unknown)."""


@dataclass(eq=False, slots=True)
class FeedClient:
    """One attach client: its grants, the plants whose devices it follows, what it got."""

    stream: StreamClient
    """The bounded queue and cut-off (shared with the portal stream)."""
    devices: frozenset[str]
    """Plants whose devices it receives (every plant's summary it always does)."""
    differ: Differ = field(default_factory=Differ)
    sent_bytes: int = 0
    """Bytes written to it (the route counts)."""
    diffed_tick: int = -1
    """The tick whose state its `differ` last saw (-1: only its snapshot so far)."""

    @property
    def principal(self) -> Principal:
        """Who is reading."""
        return self.stream.principal


def maps_body(engine: ServedEngine) -> dict[str, Any]:
    """Every running device map (with its etag) and affine: the `maps` event's data."""
    device_maps: dict[str, Any] = {}
    affines: dict[str, Any] = {}
    for plant in engine.plants:
        mapping = engine.device_map(plant.name)
        if mapping is not None:
            device_maps[plant.name] = {"map": mapping, "etag": map_etag(mapping)}
        bridge = engine.bridges.get(plant.name)
        if bridge is not None:
            affines[plant.name] = bridge.affine.model_dump(mode="json")
    return {"device_maps": device_maps, "affines": affines}


def _frame(event: str, data: Any) -> bytes:
    # orjson escapes every control character: a vendor id cannot end the SSE line.
    return b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(data))


def _signature(d: DeviceState) -> tuple[Any, ...]:
    """What moves when anything a reader shows of the device moves (checked per tick).

    Values only, never a mutable object (it would compare equal to itself after an
    in-place change); whatever this misses still shows within `_FULL_EVERY` ticks.
    """
    r = d.robot
    robot = (
        None
        if r is None
        else (r.connection, r.driving, r.operating_mode, r.e_stop, r.errors, r.map_id,
              r.localization_score, r.lost, r.restarts, r.duplicates)
    )  # fmt: skip
    return (
        d.messages,
        d.last_heard_at,
        d.last_post_at,
        d.posts_failed,
        d.ghost,
        d.ghost_since,
        d.implausible_jumps,
        d.login,
        d.refusing_since,
        d.last_accepted_at,
        robot,
    )


class StateFeed:
    """Engine state → shared encode per tick → per-client deltas and events."""

    def __init__(
        self,
        engine: Callable[[], ServedEngine | None],
        *,
        queue_size: int,
        max_clients: int,
        tick_s: float = TICK_S,
        owners: OwnerLookup | None = None,
        others: Callable[[], int] | None = None,
    ) -> None:
        """`owners` finds the tenants of dependencies (the portal stream's lookup); None:
        tokens restricted to some tenants see every dependency of a twin as unknown.
        `others`: clients of the server's other streams, which share `max_clients`."""
        self._engine = engine
        self._owners = owners
        self._others = others
        self._queue_size = queue_size
        self._max_clients = max_clients
        self._tick_s = tick_s
        self._clients: set[FeedClient] = set()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._devices: dict[tuple[str, str], tuple[DeviceState, tuple[Any, ...], dict[str, Any]]]
        self._devices = {}
        self._maps_key: Any = None
        self._stores: Any = None
        self._tick_no = 0
        self.stats = FeedStats()

    @property
    def active(self) -> bool:
        """Whether the tick runs or the feed reads the bus (only while clients are attached)."""
        return self._subscription is not None or (self._task is not None and not self._task.done())

    # -- clients --------------------------------------------------------------------

    def attach(
        self, principal: Principal, devices: Collection[str], abort: Callable[[], None]
    ) -> FeedClient | None:
        """Register a client (None: too many, or no engine) with its snapshot queued.

        Synchronous: nothing can fall between the snapshot and the first delta.
        """
        engine = self._engine()
        if engine is None:
            return None
        others = 0 if self._others is None else self._others()
        if len(self._clients) + others >= self._max_clients:
            self.stats.refused += 1
            return None
        client = FeedClient(
            StreamClient(principal, None, self._queue_size, abort), frozenset(devices)
        )
        self._clients.add(client)
        self.stats.clients = len(self._clients)
        self._ensure_running()
        current = self._encode(engine, {*client.devices})
        self._send_state(client, current, "snapshot")
        self._offer(client, _frame("maps", maps_body(engine)))
        # The latest check of each store, so a fresh client's badges do not wait for the next.
        for health in list(engine.store_health.values()):
            self._offer(client, _frame("store", dataclasses.asdict(health)))
        return client

    def detach(self, client: FeedClient) -> None:
        """Forget a client (idempotent); the tick stops with the last one."""
        self._clients.discard(client)
        self.stats.clients = len(self._clients)

    def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        engine = self._engine()
        if engine is not None and self._subscription is None:
            self._subscription = engine.subscribe(maxsize=_BUS_QUEUE)
        self._maps_key = None if engine is None else self._maps_signature(engine)
        self._task = asyncio.create_task(self._run(), name="api-attach-feed")

    async def close(self) -> None:
        """Stop the tick and end every client's stream (server shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._leave_bus()
        for client in list(self._clients):
            client.stream.close()
        self._clients.clear()
        self.stats.clients = 0

    def _leave_bus(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        self._devices.clear()

    # -- the tick -------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pump = asyncio.create_task(self._pump(), name="api-attach-events")
        try:
            while self._clients:
                started = loop.time()
                began = time.perf_counter()
                try:
                    self.tick()
                except Exception:  # a defect: logged and counted, the streams go on
                    self.stats.errors += 1
                    _logger.exception("attach feed: a tick failed")
                took = time.perf_counter() - began
                self.stats.tick_seconds += took
                self.stats.tick_max_s = max(self.stats.tick_max_s, took)
                await asyncio.sleep(max(0.0, self._tick_s - (loop.time() - started)))
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            if not self._clients:
                self._leave_bus()

    async def _pump(self) -> None:
        """Bus events out as they come (as the portal stream's hub does), not per tick:
        a burst between two ticks would otherwise land in a client's queue at once."""
        subscription = self._subscription
        if subscription is None:
            return
        while True:
            events = [await subscription.get(), *subscription.drain()]
            owners = await self._lookup_owners(events)
            for event in events:
                try:
                    self._forward(event, owners)
                except Exception:  # a defect: logged and counted, the streams go on
                    self.stats.errors += 1
                    _logger.exception("attach feed: forwarding %s failed", type(event).__name__)
            self.stats.bus_dropped = subscription.dropped

    def tick(self) -> None:
        """One round: a `maps` event when a map or affine changed, then every client's delta."""
        engine = self._engine()
        if engine is None:
            return
        self.stats.ticks += 1
        self._tick_no += 1
        key = self._maps_signature(engine)
        if key != self._maps_key:
            self._maps_key = key
            self._broadcast(_frame("maps", maps_body(engine)))
        if self._tick_no % _FULL_EVERY == 0:
            self._stores = None
            self._devices.clear()
        followed = {plant for c in self._clients for plant in c.devices}
        current = self._encode(engine, followed)
        # Clients that follow the same plants and were all diffed last tick remember the
        # same picture (a Differ keeps the last `current` it saw), so they get the same
        # delta: it is diffed and encoded once for them all (each still compresses its own).
        shared: dict[frozenset[str], tuple[Differ, bytes | None]] = {}
        previous = self._tick_no - 1
        for client in list(self._clients):
            in_step = client.diffed_tick == previous
            client.diffed_tick = self._tick_no
            ahead = shared.get(client.devices) if in_step else None
            if ahead is not None:
                client.differ.adopt(ahead[0])
                self.stats.deltas_shared += 1
                if ahead[1] is not None:
                    self._offer(client, ahead[1])
                continue
            frame = self._send_state(client, current, "delta")
            if in_step:
                shared[client.devices] = (client.differ, frame)

    def _send_state(self, client: FeedClient, current: dict[str, Any], event: str) -> bytes | None:
        plants = {
            name: {"plant": plant["plant"], "devices": plant["devices"]}
            if name in client.devices and "devices" in plant
            else {"plant": plant["plant"]}
            for name, plant in current["plants"].items()
        }
        delta = client.differ.diff({**current["shared"], "plants": plants})
        if delta is None:
            return None
        frame = _frame(event, {"mono": current["mono"], "wall": current["wall"], **delta})
        self._offer(client, frame)
        return frame

    def _encode(self, engine: ServedEngine, followed: set[str]) -> dict[str, Any]:
        state = engine.state
        plants: dict[str, Any] = {}
        for name, plant in state.plants.items():
            entry: dict[str, Any] = {"plant": encode_plant_summary(plant)}
            if name in followed:
                entry["devices"] = self._encode_devices(name, plant.devices)
            plants[name] = entry
        return {
            "mono": round(time.monotonic(), 3),
            "wall": round(time.time(), 3),
            "plants": plants,
            "shared": {
                "auth": {login: encode_auth(a) for login, a in state.auth.items()},
                "twinzo_url": state.twinzo_url,
                "platform": None
                if state.platform is None
                else encode_plant_summary(state.platform),
                "stores": self._read_stores(state),
            },
        }

    def _encode_devices(
        self, plant: str, devices: Mapping[str, DeviceState]
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for vendor_id, device in devices.items():
            key = (plant, vendor_id)
            signature = _signature(device)
            cached = self._devices.get(key)
            if cached is not None and cached[0] is device and cached[1] == signature:
                out[vendor_id] = cached[2]
                self.stats.devices_reused += 1
                continue
            encoded = encode_device(device)
            self._devices[key] = (device, signature, encoded)
            out[vendor_id] = encoded
            self.stats.devices_encoded += 1
        return out

    def _read_stores(self, state: EngineState) -> Any:
        if state.store_stats is None:
            return None
        if self._stores is None:
            self._stores = state.store_stats()
        return self._stores

    def _maps_signature(self, engine: ServedEngine) -> Any:
        return [
            (p.name, engine.device_map(p.name), _affine_of(engine, p.name)) for p in engine.plants
        ]

    # -- events ---------------------------------------------------------------------

    async def _lookup_owners(self, events: list[Event]) -> dict[str, str] | None:
        """Tenants of the dependencies the batch's twins were found to have (one query, and
        only while a restricted token reads); None: unknown, every dependency is hidden."""
        wanted: set[str] = set()
        for event in events:
            twin = _reader_dependent(event)
            if twin is not None:
                wanted |= flagged_dependencies_known(twin)
        if not wanted or all(c.principal.all_tenants for c in self._clients):
            return {}
        if self._owners is None:
            return None
        self.stats.owner_lookups += 1
        try:
            return await self._owners(wanted)
        except Exception:  # the feed must go on: counted, logged, and it hides
            self.stats.owner_lookups_failed += 1
            _logger.warning("attach feed: the tenants of dependencies could not be looked up")
            return None

    def _forward(self, event: Event, owners: Mapping[str, str] | None = None) -> None:
        if isinstance(event, LogLine):
            body = {"ts": event.ts, "level": event.level, "text": event.text, "plant": event.plant}
            self._broadcast(_frame("log", body))
        elif isinstance(event, StoreHealth):
            self._broadcast(_frame("store", dataclasses.asdict(event)))
        else:
            encoded = encode_event(event)
            if encoded is None:
                return
            kind, tenant, body = encoded
            item = StreamEvent(0, tenant, _frame("twin", {"kind": kind, **body}))
            twin = _reader_dependent(event)
            views: dict[frozenset[str], StreamEvent] = {}
            for client in list(self._clients):
                if not client.stream.wants(item):
                    continue
                principal = client.principal
                if twin is None or principal.all_tenants:
                    self._offer_item(client, item)
                    continue
                view = views.get(principal.tenants)
                if view is None:  # once per grant set, shared by its readers
                    view = views[principal.tenants] = _view(
                        item, twin, kind, body, unknown_to(principal, twin, owners)
                    )
                self._offer_item(client, view)

    def _broadcast(self, frame: bytes) -> None:
        item = StreamEvent(0, "", frame)
        for client in list(self._clients):
            self._offer_item(client, item)

    def _offer(self, client: FeedClient, frame: bytes) -> None:
        self._offer_item(client, StreamEvent(0, "", frame))

    def _offer_item(self, client: FeedClient, item: StreamEvent) -> None:
        if client not in self._clients:
            return
        try:
            client.stream.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._clients.discard(client)
            self.stats.cut_off += 1
            self.stats.clients = len(self._clients)
            client.stream.cut_off()
            return
        self.stats.frames += 1


def _reader_dependent(event: Event) -> TwinRecord | None:
    """The twin whose dependency flags depend on the reader (None: one frame for all).

    A hard delete's record carries no flags: adding some would tell hidden from absent.
    """
    if isinstance(event, TwinUpdated) or (isinstance(event, TwinDeleted) and not event.hard):
        return event.twin
    return None


def _view(
    item: StreamEvent, twin: TwinRecord, kind: str, body: dict[str, Any], unknown: list[str]
) -> StreamEvent:
    """The twin event as a token restricted to some tenants may read it (`api.visibility`):
    a dependency of a tenant it does not see is unknown, as one that names no twin."""
    if unknown == twin.unknown_dependencies:
        return item
    shown = {**body, "twin": {**body["twin"], "unknown_dependencies": unknown}}
    return StreamEvent(0, item.tenant, _frame("twin", {"kind": kind, **shown}))


def _affine_of(engine: ServedEngine, plant: str) -> Any:
    bridge = engine.bridges.get(plant)
    return None if bridge is None else bridge.affine
