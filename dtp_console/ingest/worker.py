"""The platform worker: the twins' `dtp/#` topics → observations, events and rings.

It runs whenever the `platform` section is enabled — with the simulator's
generators in a demo, or the platform's real twin generators in production.
The MQTT side is the bridges' source (`dtp_console.mqtt.source.run_source`):
TLS with verification, user name and password, persistent sessions, reconnect
with jittered backoff, a bounded queue whose overflow is counted. Each message
is handled synchronously: mapped (the platform mapping, then the generic
`streams`), its records queued on the stores' spools, its values appended to
the twin view's rings. Every message ends in one counted outcome per topic
family (`dtp/lift`, `dtp/energy_hvac`, …): `mapped:<kind>`, `rejected:<reason>`,
`dropped:queue_full` or `failed:internal`, so `received == Σ outcomes` per
family once the queue is empty.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from dtp_console.config.model import PlatformConfig
from dtp_console.events import OpsLog
from dtp_console.ingest.rings import EventEntry, Rings
from dtp_console.ingest.streams import StreamMapper
from dtp_console.mqtt.source import run_source
from dtp_console.state import PlantCounters, PlantState
from dtp_console.stores.mapping import Mapped, PlatformMapper
from dtp_console.supervision import keep_running

__all__ = ["PlatformWorker", "topic_family"]

_logger = logging.getLogger("dtp_console.platform")
#: Most topic families counted apart; the rest are counted under `other`.
MAX_FAMILIES = 64
#: Most topics counted apart in `EngineState.platform_topics`.
_MAX_TOPICS = 500


class _Sink(Protocol):
    def submit_mapped(self, mapped: Mapped) -> None: ...


def topic_family(topic: str) -> str:
    """The family a topic is counted under: its first two levels (`dtp/lift`)."""
    levels = topic.split("/", 2)
    return "/".join(levels[:2])


class PlatformWorker:
    """Reads the platform broker and feeds the stores and the twin view's rings."""

    def __init__(
        self,
        config: PlatformConfig,
        log: OpsLog,
        *,
        reading_topics: frozenset[str] = frozenset(),
        topic_counts: Counter[str] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.log = log
        self.state = PlantState("platform")
        """Connection state and total counters (the badge reads these)."""
        self.families: dict[str, PlantCounters] = {}
        """Counters per topic family: `received == Σ outcomes` once drained."""
        self.rings = Rings(points=config.ring_points, window_s=config.ring_window_s)
        """Recent values per stream and events per topic, for the twin view."""
        self.stores: _Sink | None = None
        """Where mapped records go (the store service), when stores run."""
        self.restarts = 0
        self.wall_clock = wall_clock
        """Receive time of messages (epoch seconds); tests and snapshots pin it."""
        self._mapper = PlatformMapper(reading_topics=reading_topics)
        self._streams = StreamMapper(config.streams)
        self._topics = topic_counts if topic_counts is not None else Counter()

    # -- running --------------------------------------------------------------------------

    async def run(self, address: tuple[str, int], stop: asyncio.Event) -> None:
        """Read the broker until `stop`.

        The source runs in a `TaskGroup`, so it never outlives `run()`; a crash or an
        early end of it is logged as FAIL, counted (`restarts`, `source_restarts`) and
        restarted with backoff, as a bridge's source is.
        """

        def _died(_reason: str) -> None:
            self.restarts += 1
            self.state.source_restarts += 1

        async with asyncio.TaskGroup() as group:
            source = group.create_task(
                keep_running(
                    "the platform source",
                    lambda: run_source(
                        self.config,
                        address,
                        self.handle,
                        self.state,
                        self.log,
                        on_drop=self._dropped,
                    ),
                    stop,
                    self.log,
                    None,
                    _died,
                ),
                name="platform:source",
            )
            await stop.wait()
            source.cancel()

    # -- intake (synchronous, never raises) -------------------------------------------------

    def _family(self, topic: str) -> PlantCounters:
        family = topic_family(topic)
        counters = self.families.get(family)
        if counters is None:
            if len(self.families) >= MAX_FAMILIES:
                family = "other"
                counters = self.families.get(family)
            if counters is None:
                counters = self.families[family] = PlantCounters()
        return counters

    def _dropped(self, topic: str) -> None:
        counters = self._family(topic)
        counters.received += 1
        counters.count("dropped:queue_full")

    def handle(self, topic: str, payload: bytes) -> None:
        """Map one message, queue its records, remember its values; count its outcome."""
        counters = self._family(topic)
        counters.received += 1
        if topic in self._topics or len(self._topics) < _MAX_TOPICS:
            self._topics[topic] += 1
        try:
            outcome = self._handle(topic, payload)
        except Exception:  # a bug must cost one counted message, never the worker
            _logger.debug("platform message on %r failed", topic, exc_info=True)
            outcome = "failed:internal"
        counters.count(outcome)
        self.state.counters.count(outcome)

    def _handle(self, topic: str, payload: bytes) -> str:
        if len(payload) > self.config.max_payload_bytes:
            return "rejected:too_large"
        now = self.wall_clock()
        received = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        stream = self._streams.stream_for(topic)
        if self.config.mapping == "platform":
            mapped = self._mapper.map(topic, payload, received)
            if mapped.rejected == "unmapped topic" and stream is not None:
                mapped = self._streams.map(stream, topic, payload, received)
        elif stream is not None:
            mapped = self._streams.map(stream, topic, payload, received)
        else:
            mapped = Mapped(rejected="unmapped topic")
        if mapped.rejected is not None:
            return f"rejected:{mapped.rejected}"
        if self.stores is not None:
            self.stores.submit_mapped(mapped)
        names = {s.signal_id: s for s in mapped.signals}
        for obs in mapped.observations:
            if obs.value_double is None:
                continue
            signal = names.get(obs.signal_id)
            self.rings.observe(
                obs.signal_id,
                topic,
                now,
                obs.value_double,
                name=signal.name if signal else topic,
                unit=signal.unit if signal else None,
                twin=stream.twin if stream else None,
                threshold=stream.threshold if stream else None,
            )
        for event in mapped.events:
            self.rings.event(
                EventEntry(event.ts.timestamp(), topic, event.severity, event.source, event.body)
            )
        return f"mapped:{mapped.kind or 'record'}"

    # -- readers ----------------------------------------------------------------------------

    def totals(self) -> PlantCounters:
        """The families' counters summed."""
        total = PlantCounters()
        for counters in self.families.values():
            total.received += counters.received
            total.outcomes.update(counters.outcomes)
        return total

    def stats_dict(self) -> dict[str, Any]:
        """The worker's counters for `--stats-json`."""
        state = self.state
        return {
            "mqtt": state.mqtt,
            "mqtt_detail": state.mqtt_detail,
            "connects": state.connects,
            "restarts": self.restarts,
            "warnings": list(state.warnings),
            "received": state.counters.received,
            "pending": state.counters.pending,
            "outcomes": dict(sorted(state.counters.outcomes.items())),
            "families": {name: c.as_dict() for name, c in sorted(self.families.items())},
            "streams": len(self.rings.streams),
            "rings_overflow": self.rings.overflow,
        }
