"""`/metrics`: the engine's counters in the Prometheus text format (official client library).

Nothing on the hot path knows about Prometheus: workers keep counting into the
engine state (`dtp_console.state`) as they always have, and a custom collector
reads that state at scrape time. Each engine gets its own `CollectorRegistry`
(never the library's global default), so two engines in one process (tests,
a console embedding another) never mix their series.

Names follow the Prometheus conventions: a `dtp_` prefix, `_total` on
counters, base units (`_seconds`). The per-plant counters carry the stats
JSON's names: `dtp_plant_received_total` is `plants.<plant>.received` and
`dtp_plant_outcomes_total{outcome=...}` has one series per key of
`plants.<plant>.outcomes` (`forwarded`, `rejected:duplicate`, …), so
`received == sum(outcomes) + pending` holds here as it does there. Label values
(plant names, vendor ids, topics) are outside text: the library escapes them;
text Python cannot encode as UTF-8 (a lone surrogate) is replaced first, so a
scrape never fails on a name.

Registry twins by status are the one figure that needs I/O (a repository
read): they are cached for `TWIN_COUNT_TTL_S`, refreshed by one task at a
time, and a scrape waits at most `TWIN_COUNT_WAIT_S` for a refresh before it
answers with the previous figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from dtp_console import __version__
from dtp_console.registry.lifecycle import STATUSES
from dtp_console.state import TokenStatus

if TYPE_CHECKING:
    from dtp_console.registry.service import RegistryService
    from dtp_console.runtime import Engine
    from dtp_console.stores.service import StoreService

__all__ = ["CONTENT_TYPE", "TWIN_COUNT_TTL_S", "TWIN_COUNT_WAIT_S", "render_metrics"]

#: The `Content-Type` of `render_metrics()`'s body (the text format, version 0.0.4).
CONTENT_TYPE: str = CONTENT_TYPE_PLAIN_0_0_4
#: How long registry twin counts are reused before a scrape refreshes them.
TWIN_COUNT_TTL_S = 5.0
#: The longest a scrape waits for a registry refresh before it answers with older figures.
TWIN_COUNT_WAIT_S = 0.5
#: The outcomes every plant reports, 0 included, so `rate()` works before the first one.
_BASE_OUTCOMES = ("forwarded", "coalesced", "unknown_device", "status_only")
_TOKEN_STATUSES: tuple[TokenStatus, ...] = get_args(TokenStatus)


def _label(text: object) -> str:
    """A label value the exposition can always encode (the library escapes `\\`, `"`, LF)."""
    value = str(text)
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def _le(bound: float) -> str:
    """A bucket's `le` label as the library writes it (`0.005`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _TwinCounts:
    """Registry twins per status, cached so a scrape is cheap and never waits long."""

    def __init__(self) -> None:
        self.counts: dict[str, int] | None = None
        """The last figures read; None before the first read (or without a registry)."""
        self.read_at = -float("inf")
        """Monotonic time of the last successful read."""
        self.errors = 0
        """Reads that failed (the previous figures were kept)."""
        self._service: RegistryService | None = None
        self._task: asyncio.Task[dict[str, int]] | None = None

    async def refresh(self, service: RegistryService | None) -> None:
        """Bring the figures up to date if they are older than the TTL (bounded wait)."""
        if service is not self._service:
            # The registry worker restarted (or stopped): figures of the old one are void.
            self._service, self.counts, self.read_at = service, None, -float("inf")
            self._task = None
        if service is None or time.monotonic() - self.read_at < TWIN_COUNT_TTL_S:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                _count_twins(service), name="metrics:registry-twins"
            )
            self._task.add_done_callback(functools.partial(self._done, service=service))
        with contextlib.suppress(Exception):
            # shield: a scrape that gives up must not cancel the read the next one reuses.
            await asyncio.wait_for(asyncio.shield(self._task), TWIN_COUNT_WAIT_S)

    def _done(self, task: asyncio.Task[dict[str, int]], *, service: RegistryService) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            self.errors += 1
        elif service is self._service:
            self.counts, self.read_at = task.result(), time.monotonic()


async def _count_twins(service: RegistryService) -> dict[str, int]:
    # The repository directly: the service's unknown-dependency flagging is not needed here.
    twins = await service.repository.list_twins()
    counts = Counter(str(twin.status) for twin in twins)
    return {status: counts.get(status, 0) for status in (*STATUSES, *sorted(counts))}


class EngineCollector:
    """Reads one engine's state into metric families at scrape time (no I/O)."""

    def __init__(self, engine: Engine, twins: _TwinCounts) -> None:
        self._engine = weakref.ref(engine)
        self._twins = twins

    def collect(self) -> Iterable[Metric]:
        """Every family, from the state as it is now."""
        engine = self._engine()
        if engine is None:
            return []
        return [
            *_process(engine),
            *_plants(engine),
            *_devices(engine),
            *_twinzo(engine),
            *_stores(engine.stores),
            *_registry(engine, self._twins),
            *_platform(engine),
            *_api(engine),
        ]


def _process(engine: Engine) -> Iterator[Metric]:
    info = GaugeMetricFamily("dtp_build_info", "dtp-console version (always 1)", labels=["version"])
    info.add_metric([__version__], 1)
    yield info
    if engine.state.started_at:
        yield GaugeMetricFamily(
            "dtp_start_time_seconds",
            "When the engine started, in seconds since the epoch",
            value=engine.state.started_at,
        )
    yield GaugeMetricFamily(
        "dtp_engine_started",
        "1 once every worker of the engine has started",
        value=1 if engine.ready.is_set() else 0,
    )


def _plants(engine: Engine) -> Iterator[Metric]:
    plants = engine.state.plants
    received = CounterMetricFamily(
        "dtp_plant_received", "MQTT messages a bridge received", labels=["plant"]
    )
    outcomes = CounterMetricFamily(
        "dtp_plant_outcomes",
        "Received messages by outcome (the stats JSON's outcomes keys)",
        labels=["plant", "outcome"],
    )
    pending = GaugeMetricFamily(
        "dtp_plant_pending_messages",
        "Received messages with no outcome yet (queued, in the outbox or in flight)",
        labels=["plant"],
    )
    unknown = GaugeMetricFamily(
        "dtp_plant_unknown_device_ids",
        "Distinct unmapped vendor ids seen (at most 1000 are remembered)",
        labels=["plant"],
    )
    bounds = CounterMetricFamily(
        "dtp_plant_out_of_bounds", "Positions outside the floor bounds", labels=["plant"]
    )
    restarts = CounterMetricFamily(
        "dtp_plant_worker_restarts",
        "Times a bridge's MQTT source, poster or watch task died and was restarted",
        labels=["plant", "worker"],
    )
    connected = GaugeMetricFamily(
        "dtp_mqtt_connected", "1 while the plant's MQTT session is up", labels=["plant"]
    )
    connects = CounterMetricFamily(
        "dtp_mqtt_connects", "Successful MQTT connections (reconnects included)", labels=["plant"]
    )
    for name, plant in plants.items():
        label = _label(name)
        counters = plant.counters
        received.add_metric([label], counters.received)
        seen = {**dict.fromkeys(_BASE_OUTCOMES, 0), **counters.outcomes}
        for outcome, n in sorted(seen.items()):
            outcomes.add_metric([label, _label(outcome)], n)
        pending.add_metric([label], counters.pending)
        unknown.add_metric([label], len(plant.unknown))
        bounds.add_metric([label], plant.out_of_bounds)
        restarts.add_metric([label, "source"], plant.source_restarts)
        restarts.add_metric([label, "poster"], plant.poster_restarts)
        restarts.add_metric([label, "watch"], plant.watch_restarts)
        connected.add_metric([label], 1 if plant.mqtt == "connected" else 0)
        connects.add_metric([label], plant.connects)
    yield from (received, outcomes, pending, unknown, bounds, restarts, connected, connects)
    yield from _ha_roles(engine)


def _ha_roles(engine: Engine) -> Iterator[Metric]:
    """`dtp_plant_ha_role{plant,role}`: 1 for each plant's current role, 0 for the others."""
    plants = engine.state.plants
    if all(p.ha_role == "off" for p in plants.values()):
        return
    family = GaugeMetricFamily(
        "dtp_plant_ha_role",
        "High-availability role of each plant (1: the current one)",
        labels=["plant", "role"],
    )
    for name, plant in plants.items():
        for role in ("active", "standby", "no_lock"):
            family.add_metric([_label(name), role], 1.0 if plant.ha_role == role else 0.0)
    yield family


def _devices(engine: Engine) -> Iterator[Metric]:
    posts = CounterMetricFamily(
        "dtp_device_posts",
        "twinzo POSTs of a mapped device's locations, by result",
        labels=["plant", "vendor_id", "login", "result"],
    )
    messages = CounterMetricFamily(
        "dtp_device_messages",
        "Messages received from a mapped device",
        labels=["plant", "vendor_id", "login"],
    )
    for name, plant in engine.state.plants.items():
        label = _label(name)
        for device in plant.devices.values():
            ids = [label, _label(device.vendor_id), _label(device.login)]
            posts.add_metric([*ids, "ok"], device.posts_ok)
            posts.add_metric([*ids, "failed"], device.posts_failed)
            messages.add_metric(ids, device.messages)
    yield from (posts, messages)


def _twinzo(engine: Engine) -> Iterator[Metric]:
    state = engine.state
    latency = HistogramMetricFamily(
        "dtp_twinzo_post_duration_seconds",
        "Duration of twinzo POST attempts (failed ones too), by API path",
        labels=["path"],
    )
    for path, histogram in sorted(state.post_seconds.items()):
        buckets = [(_le(bound), n) for bound, n in histogram.cumulative()]
        latency.add_metric([_label(path)], buckets, histogram.sum)
    yield latency
    auths = CounterMetricFamily(
        "dtp_twinzo_authentications",
        "Device authentications started (POST /v3/authorization/authenticate)",
        labels=["login"],
    )
    refreshes = CounterMetricFamily(
        "dtp_twinzo_token_refreshes",
        "Device token refreshes started (GET /v3/authorization/token)",
        labels=["login"],
    )
    tokens = GaugeMetricFamily(
        "dtp_twinzo_tokens",
        "Device logins by token status (none, valid, refreshing, failed)",
        labels=["status"],
    )
    statuses: Counter[str] = Counter(dict.fromkeys(_TOKEN_STATUSES, 0))
    for login, auth in sorted(state.auth.items()):
        label = _label(login)
        auths.add_metric([label], auth.authentications)
        refreshes.add_metric([label], auth.refreshes)
        statuses[auth.status] += 1
    for status, n in statuses.items():
        tokens.add_metric([_label(status)], n)
    yield from (auths, refreshes, tokens)


def _stores(stores: StoreService | None) -> Iterator[Metric]:
    if stores is None:
        return
    labels = ["role", "store"]
    depth = GaugeMetricFamily(
        "dtp_store_spool_pending_records",
        "Records queued or in flight in a store's spool (its depth)",
        labels=labels,
    )
    submitted = CounterMetricFamily(
        "dtp_store_spool_submitted_records", "Records handed to a store's spool", labels=labels
    )
    written = CounterMetricFamily(
        "dtp_store_spool_written_records", "Records the store accepted", labels=labels
    )
    dropped = CounterMetricFamily(
        "dtp_store_spool_dropped_records",
        "Records dropped (spool full, or unwritten at shutdown)",
        labels=labels,
    )
    retries = CounterMetricFamily(
        "dtp_store_spool_write_retries", "Failed spool writes (each retried)", labels=labels
    )
    for stats in stores.stats():
        role, _, store = stats.name.partition(":")
        key = [_label(role), _label(store)]
        depth.add_metric(key, stats.pending)
        submitted.add_metric(key, stats.submitted)
        written.add_metric(key, stats.written)
        dropped.add_metric(key, stats.dropped)
        retries.add_metric(key, stats.retries)
    yield from (depth, submitted, written, dropped, retries)
    up = GaugeMetricFamily(
        "dtp_store_up", "1 when the store's last health check passed", labels=["store", "role"]
    )
    ping = GaugeMetricFamily(
        "dtp_store_ping_duration_seconds",
        "Duration of the store's last passing health check",
        labels=["store"],
    )
    for name, health in sorted(stores.health.items()):
        up.add_metric([_label(name), _label(health.role)], 1 if health.ok else 0)
        if health.latency_ms is not None:
            ping.add_metric([_label(name)], health.latency_ms / 1000)
    yield from (up, ping)


def _registry(engine: Engine, twins: _TwinCounts) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "dtp_registry_up",
        "1 while the twin registry worker has its repository open",
        value=1 if engine.registry is not None else 0,
    )
    if twins.counts is not None:
        by_status = GaugeMetricFamily(
            "dtp_registry_twins",
            f"Registered twins by lifecycle status (read at most every {TWIN_COUNT_TTL_S:g}s)",
            labels=["status"],
        )
        for status, n in twins.counts.items():
            by_status.add_metric([_label(status)], n)
        yield by_status
        yield GaugeMetricFamily(
            "dtp_registry_twins_age_seconds",
            "How old dtp_registry_twins is",
            value=max(0.0, time.monotonic() - twins.read_at),
        )
    yield CounterMetricFamily(
        "dtp_registry_twin_count_errors", "Failed reads of the twin counts", value=twins.errors
    )


def _platform(engine: Engine) -> Iterator[Metric]:
    topics = engine.state.platform_topics
    family = CounterMetricFamily(
        "dtp_platform_messages",
        "Messages seen per topic on the platform broker (at most 500 topics)",
        labels=["topic"],
    )
    for topic, n in sorted(topics.items()):
        family.add_metric([_label(topic)], n)
    yield family


def _api(engine: Engine) -> Iterator[Metric]:
    """The HTTP surface itself: requests by result, audited writes, the change stream."""
    server = engine.api
    if server is None:
        return
    stats, hub = server.stats, server.hub.stats
    requests = CounterMetricFamily(
        "dtp_api_requests", "HTTP API requests answered, by result", labels=["result"]
    )
    client_errors = stats.client_errors
    ok = stats.requests - stats.unauthorized - stats.forbidden - client_errors - stats.server_errors
    for result, n in (
        ("ok", max(0, ok)),
        ("unauthorized", stats.unauthorized),
        ("forbidden", stats.forbidden),
        ("client_error", client_errors),
        ("server_error", stats.server_errors),
    ):
        requests.add_metric([result], n)
    yield requests
    yield CounterMetricFamily(
        "dtp_api_writes", "Registry writes by an identified token", value=stats.writes
    )
    yield CounterMetricFamily(
        "dtp_api_writes_unrecorded",
        "Writes that could not get an event_log entry (stores off or failing)",
        value=stats.writes_unrecorded,
    )
    yield GaugeMetricFamily(
        "dtp_api_stream_clients", "Change-stream clients connected", value=hub.clients
    )
    for name, help_text, value in (
        ("dtp_api_stream_events", "Change events encoded for the stream", hub.events),
        ("dtp_api_stream_delivered", "Frames written to stream clients", hub.delivered),
        ("dtp_api_stream_cut_off", "Stream clients cut off for being too slow", hub.cut_off),
        ("dtp_api_stream_refused", "Stream clients refused (max_stream_clients)", hub.refused),
        ("dtp_api_stream_bus_dropped", "Bus events the stream hub lost", hub.bus_dropped),
        (
            "dtp_api_stream_owner_lookups",
            "Registry lookups of dependency owners (per-token unknown_dependencies)",
            hub.owner_lookups,
        ),
        (
            "dtp_api_stream_owner_lookups_failed",
            "Owner lookups that failed (restricted tokens saw every dependency as unknown)",
            hub.owner_lookups_failed,
        ),
    ):
        yield CounterMetricFamily(name, help_text, value=value)


class _EngineMetrics:
    def __init__(self, engine: Engine) -> None:
        self.twins = _TwinCounts()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(engine, self.twins))


_BY_ENGINE: weakref.WeakKeyDictionary[Any, _EngineMetrics] = weakref.WeakKeyDictionary()


def _metrics_of(engine: Engine) -> _EngineMetrics:
    metrics = _BY_ENGINE.get(engine)
    if metrics is None:
        metrics = _BY_ENGINE[engine] = _EngineMetrics(engine)
    return metrics


class _Frozen:
    """Families already collected: what the formatting thread reads (no engine state)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def render_metrics(engine: Engine) -> bytes:
    """The engine's metrics in the Prometheus text format (serve with `CONTENT_TYPE`).

    The state is read on the event loop, in one go (a consistent snapshot: no
    worker runs meanwhile); the text is formatted in a thread from that snapshot,
    so a large state (thousands of series, ~20 ms of formatting) never stalls
    the loop for the whole scrape.
    """
    metrics = _metrics_of(engine)
    await metrics.twins.refresh(engine.registry)
    families = list(metrics.registry.collect())
    return await asyncio.to_thread(generate_latest, _Frozen(families))
