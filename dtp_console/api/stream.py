"""The change stream: registry events from the bus, fanned out to SSE clients.

One hub task reads a bus subscription, encodes each `twin.update`,
`twin.delete` and `service.update` once as an SSE frame with an id, keeps the
last `replay` frames for `Last-Event-ID` resume, and offers the frame to every
client whose token sees the event's tenant. Offering never waits: each client
has a bounded queue, and a client whose queue is full is cut off (counted)
instead of slowing the hub, the registry or the other clients.

One part of a twin event depends on the reader: `unknown_dependencies` must
not tell a token restricted to some tenants that an id exists in another
(`api.visibility`). So for each batch it reads, the hub looks up the tenants
of the dependencies the registry found (one query, none when no event has
such a dependency), and an event whose answer differs per reader is encoded
once more per distinct answer on first delivery, cached per grant set; every
other event and every all-tenant token get the one shared frame.

Event ids are `<boot>-<seq>`: `boot` changes with every process, so an id from
an earlier run is recognised as unresumable rather than misread as a position.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from dtp_console.api.tokens import Principal
from dtp_console.api.visibility import flagged_dependencies_known, unknown_to
from dtp_console.events import Bus, Event, OpsLog, ServiceUpdated, TwinDeleted, TwinUpdated
from dtp_console.registry.model import TwinRecord

__all__ = [
    "OwnerLookup",
    "StreamClient",
    "StreamEvent",
    "StreamHub",
    "StreamStats",
    "encode_event",
]

#: Registered twin id → tenant for the given ids (`RegistryService.tenants_of`).
OwnerLookup = Callable[[Collection[str]], Awaitable[dict[str, str]]]

#: Events the bus subscription may hold before the hub reads them (it reads continuously).
_BUS_QUEUE = 20_000


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One encoded change: its sequence number, tenant and SSE frame(s)."""

    seq: int
    tenant: str
    frame: bytes
    """The frame as the registry tells it (what an all-tenant token gets)."""
    created: float = field(default_factory=time.monotonic)
    """Monotonic time the hub encoded it (delivery latency is measured from here)."""
    twin: TwinRecord | None = None
    """The flagged twin when its dependency flags depend on the reader; None: one frame."""
    owners: Mapping[str, str] | None = None
    """Tenant of each dependency the registry found (None: the lookup failed: all hidden)."""
    body: dict[str, Any] | None = None
    """The JSON body of `frame` (kept only with `twin`, to re-encode it)."""
    views: dict[frozenset[str], bytes] = field(default_factory=dict, compare=False, repr=False)
    """Frame per grant set, made on first delivery."""

    def frame_for(self, principal: Principal) -> bytes:
        """The frame as `principal` may read it (`api.visibility`)."""
        if self.twin is None or self.body is None or principal.all_tenants:
            return self.frame
        view = self.views.get(principal.tenants)
        if view is None:
            unknown = unknown_to(principal, self.twin, self.owners)
            if unknown == self.twin.unknown_dependencies:
                view = self.frame
            else:
                twin = {**self.body["twin"], "unknown_dependencies": unknown}
                head = self.frame[: self.frame.index(b"\ndata: ") + 1]
                view = head + b"data: %s\n\n" % orjson.dumps({**self.body, "twin": twin})
            self.views[principal.tenants] = view
        return view


@dataclass(slots=True)
class StreamStats:
    """Counters of the change stream (read by `/metrics`)."""

    events: int = 0
    """Change events encoded."""
    delivered: int = 0
    """Frames written to clients."""
    cut_off: int = 0
    """Clients cut off because their queue was full (too slow)."""
    refused: int = 0
    """Clients refused because `max_stream_clients` were connected."""
    bus_dropped: int = 0
    """Bus events the hub's own subscription lost (it fell behind the bus)."""
    owner_lookups: int = 0
    """Registry queries for the tenants of twins' dependencies (one per batch that needs it)."""
    owner_lookups_failed: int = 0
    """Of those, failed: restricted tokens then see every dependency of the batch as unknown."""
    clients: int = 0
    """Clients connected now."""


def _reader_dependent(event: Event) -> TwinRecord | None:
    """The flagged twin of an event whose dependency flags may differ per reader."""
    if isinstance(event, TwinUpdated) or (isinstance(event, TwinDeleted) and not event.hard):
        # A hard delete's record was never flagged (`api.visibility`): the same for all.
        return event.twin if flagged_dependencies_known(event.twin) else None
    return None


def encode_event(event: Event) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, tenant, JSON body) of a stream event, or None for other bus events."""
    if isinstance(event, TwinUpdated):
        body = {
            "twin": event.twin.model_dump(mode="json"),
            "previous_status": event.previous_status,
            "created": event.created,
            "reason": event.reason,
            "ts": event.ts,
        }
        return TwinUpdated.kind, event.twin.tenant, body
    if isinstance(event, TwinDeleted):
        body = {
            "twin": event.twin.model_dump(mode="json"),
            "hard": event.hard,
            "reason": event.reason,
            "ts": event.ts,
        }
        return TwinDeleted.kind, event.twin.tenant, body
    if isinstance(event, ServiceUpdated):
        body = {
            "service": event.service.model_dump(mode="json"),
            "previous_health": event.previous_health,
            "ts": event.ts,
        }
        return ServiceUpdated.kind, event.service.tenant, body
    return None


class StreamClient:
    """One connected stream reader: its grants, filter and bounded queue."""

    def __init__(
        self, principal: Principal, tenant: str | None, maxsize: int, abort: Callable[[], None]
    ) -> None:
        self.principal = principal
        self.tenant = tenant
        self.queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize=maxsize)
        self.cut = False
        """Set when the hub cut this client off for falling behind."""
        self._abort = abort

    def wants(self, event: StreamEvent) -> bool:
        """Whether the event's tenant is granted to the token and passes the filter."""
        if self.tenant is not None and event.tenant != self.tenant:
            return False
        return self.principal.sees(event.tenant)

    def cut_off(self) -> None:
        """Stop this client now: drop its connection (a write it is stuck in fails)."""
        self.cut = True
        self._abort()

    def close(self) -> None:
        """End the stream after what is queued (server shutdown); cut it if full."""
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.cut_off()


@dataclass(frozen=True, slots=True)
class Resume:
    """What a client attaching with `Last-Event-ID` gets before the live events."""

    backlog: list[StreamEvent]
    """Buffered events after the given id that the client may see, oldest first."""
    gap: bool
    """Events after the given id are no longer buffered (or it is from another run)."""


class StreamHub:
    """Bus → encoded frames → replay buffer and bounded per-client queues."""

    def __init__(
        self,
        bus: Bus,
        *,
        replay: int,
        queue_size: int,
        max_clients: int,
        owners: OwnerLookup | None = None,
        log: OpsLog | None = None,
        others: Callable[[], int] | None = None,
    ) -> None:
        """`owners` finds the tenants of dependencies; None: restricted tokens see all unknown.
        `others`: clients of the server's other streams, which share `max_clients`."""
        self._bus = bus
        self._others = others
        self._owners = owners
        self._log = log
        self._boot = f"{time.time_ns() // 1_000_000:x}"
        self._seq = 0
        self._replay: deque[StreamEvent] = deque(maxlen=replay) if replay else deque(maxlen=0)
        self._queue_size = queue_size
        self._max_clients = max_clients
        self._clients: set[StreamClient] = set()
        self._subscription = bus.subscribe(maxsize=_BUS_QUEUE)
        self.stats = StreamStats()

    # -- the hub task ---------------------------------------------------------------

    async def run(self) -> None:
        """Read the bus until cancelled; then close every client."""
        subscription = self._subscription
        try:
            while True:
                batch = [await subscription.get(), *subscription.drain()]
                owners = await self._lookup_owners(batch)
                for event in batch:
                    self.offer(event, owners)
                self.stats.bus_dropped = subscription.dropped
        finally:
            subscription.close()
            for client in list(self._clients):
                client.close()
            self._clients.clear()
            self.stats.clients = 0

    async def _lookup_owners(self, batch: list[Event]) -> dict[str, str] | None:
        """Tenants of the dependencies the batch's twins were found to have (one query)."""
        wanted = set()
        for event in batch:
            twin = _reader_dependent(event)
            if twin is not None:
                wanted |= flagged_dependencies_known(twin)
        if not wanted:
            return {}
        if self._owners is None:
            return None
        self.stats.owner_lookups += 1
        try:
            return await self._owners(wanted)
        except Exception as exc:  # the hub must go on: counted, logged, and it hides
            self.stats.owner_lookups_failed += 1
            if self._log is not None:
                why = (str(exc).splitlines() or [""])[0][:200]
                self._log.limited(
                    "WARN",
                    "api:stream-owners",
                    f"api: the stream cannot look up the tenants of dependencies "
                    f"({type(exc).__name__}: {why}); tokens restricted to some tenants "
                    "see those dependencies as unknown",
                )
            return None

    def offer(self, event: Event, owners: Mapping[str, str] | None = None) -> StreamEvent | None:
        """Encode a bus event (if it is a change), buffer it and fan it out.

        `owners`: the tenants of its twin's dependencies (from `_lookup_owners`); None
        shows a token restricted to some tenants every dependency as unknown.
        """
        encoded = encode_event(event)
        if encoded is None:
            return None
        kind, tenant, body = encoded
        self._seq += 1
        data = orjson.dumps(body)
        frame = b"id: %s-%d\nevent: %s\ndata: %s\n\n" % (
            self._boot.encode(),
            self._seq,
            kind.encode(),
            data,
        )
        twin = _reader_dependent(event)
        if twin is None:
            item = StreamEvent(self._seq, tenant, frame)
        else:
            item = StreamEvent(self._seq, tenant, frame, twin=twin, owners=owners, body=body)
        self._replay.append(item)
        self.stats.events += 1
        for client in list(self._clients):
            if not client.wants(item):
                continue
            try:
                client.queue.put_nowait(item)
            except asyncio.QueueFull:
                self._clients.discard(client)
                self.stats.cut_off += 1
                self.stats.clients = len(self._clients)
                client.cut_off()
        return item

    # -- clients --------------------------------------------------------------------

    def attach(
        self,
        principal: Principal,
        tenant: str | None,
        last_event_id: str | None,
        abort: Callable[[], None],
    ) -> tuple[StreamClient, Resume] | None:
        """Register a client (None: too many) and what it missed since `last_event_id`.

        Synchronous, so no event can fall between the backlog and the live queue.
        """
        others = 0 if self._others is None else self._others()
        if len(self._clients) + others >= self._max_clients:
            self.stats.refused += 1
            return None
        client = StreamClient(principal, tenant, self._queue_size, abort)
        resume = self._resume(client, last_event_id)
        self._clients.add(client)
        self.stats.clients = len(self._clients)
        return client, resume

    def release(self) -> None:
        """Leave the bus without running (the server never started)."""
        self._subscription.close()

    def detach(self, client: StreamClient) -> None:
        """Forget a client (idempotent)."""
        self._clients.discard(client)
        self.stats.clients = len(self._clients)

    def _resume(self, client: StreamClient, last_event_id: str | None) -> Resume:
        if last_event_id is None or not last_event_id.strip():
            return Resume([], gap=False)
        boot, _, seq_text = last_event_id.strip().rpartition("-")
        # ASCII digits only: `isdigit()` also passes '²' (int() refuses) and '١' (int() reads).
        digits = seq_text.isascii() and seq_text.isdigit()
        if boot != self._boot or not digits or len(seq_text) > 18 or int(seq_text) > self._seq:
            return Resume([e for e in self._replay if client.wants(e)], gap=True)
        seq = int(seq_text)
        backlog = [e for e in self._replay if e.seq > seq and client.wants(e)]
        oldest = self._replay[0].seq if self._replay else self._seq + 1
        return Resume(backlog, gap=seq + 1 < oldest and seq < self._seq)

    @property
    def last_id(self) -> str:
        """The id of the latest event (`<boot>-0` before any)."""
        return f"{self._boot}-{self._seq}"

    async def close(self, task: asyncio.Task[None] | None) -> None:
        """Cancel the hub task (closing every client) and wait for it."""
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
