"""Bounded in-memory rings of the platform's recent data, for the twin view.

The platform worker appends every observation to its stream's ring and every
event to its topic's ring; nothing reads them unless the twin view is open, so
keeping them costs one deque append per record. Both the number of streams and
the points per stream are bounded. No Textual here: the UI samples these.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventEntry", "Rings", "StreamRing", "belongs_to"]

#: Most streams (and event topics) remembered; further ones are counted, not kept.
MAX_STREAMS = 512
#: Events kept per topic.
EVENTS_PER_TOPIC = 50


@dataclass(slots=True)
class StreamRing:
    """The recent values of one signal."""

    signal_id: uuid.UUID
    topic: str
    name: str
    unit: str | None
    points: deque[tuple[float, float]]
    """`(epoch seconds, value)`, oldest first."""
    twin: str | None = None
    """The twin the stream's config names (generic streams); None: matched by topic."""
    threshold: float | None = None
    """Alert threshold from the stream's config or the latest alert naming one."""
    last_seen: float = 0.0
    """When the last value arrived (epoch seconds, the receive time)."""

    def latest(self) -> float | None:
        """The latest value, or None."""
        return self.points[-1][1] if self.points else None

    def window(self, window_s: float, now: float | None = None) -> list[float]:
        """The values of the last `window_s` seconds, oldest first."""
        cutoff = (time.time() if now is None else now) - window_s
        return [v for t, v in self.points if t >= cutoff]


@dataclass(slots=True)
class EventEntry:
    """One recent event."""

    ts: float
    """Epoch seconds."""
    topic: str
    severity: int
    source: str
    body: dict[str, Any]


@dataclass
class Rings:
    """Every stream's ring and every event topic's recent events."""

    points: int = 600
    window_s: float = 600.0
    streams: dict[uuid.UUID, StreamRing] = field(default_factory=dict)
    events: dict[str, deque[EventEntry]] = field(default_factory=dict)
    overflow: int = 0
    """Records not kept because `MAX_STREAMS` streams or event topics were known."""

    def observe(
        self,
        signal_id: uuid.UUID,
        topic: str,
        ts: float,
        value: float,
        *,
        name: str,
        unit: str | None,
        twin: str | None = None,
        threshold: float | None = None,
    ) -> None:
        """Append one value to its stream's ring (created on first use while room is left)."""
        ring = self.streams.get(signal_id)
        if ring is None:
            if len(self.streams) >= MAX_STREAMS:
                self.overflow += 1
                return
            ring = self.streams[signal_id] = StreamRing(
                signal_id, topic, name, unit, deque(maxlen=self.points), twin, threshold
            )
        ring.name, ring.unit = name, unit
        if threshold is not None:
            ring.threshold = threshold
        ring.points.append((ts, value))
        ring.last_seen = ts

    def event(self, entry: EventEntry) -> None:
        """Remember one event of its topic; an alert naming a threshold sets its streams'."""
        ring = self.events.get(entry.topic)
        if ring is None:
            if len(self.events) >= MAX_STREAMS:
                self.overflow += 1
                return
            ring = self.events[entry.topic] = deque(maxlen=EVENTS_PER_TOPIC)
        ring.append(entry)
        threshold = entry.body.get("threshold")
        if isinstance(threshold, int | float) and not isinstance(threshold, bool):
            parent = _parent(entry.topic)
            for stream in self.streams.values():
                if stream.topic.startswith(parent + "/"):
                    stream.threshold = float(threshold)

    def streams_of(self, twin_id: str, data_streams: Iterable[str]) -> list[StreamRing]:
        """The streams of a twin: named for it, or under one of its data streams' topics."""
        filters = _mqtt_filters(data_streams)
        return sorted(
            (
                s
                for s in self.streams.values()
                if s.twin == twin_id or (s.twin is None and belongs_to(s.topic, filters))
            ),
            key=lambda s: s.name,
        )

    def events_of(self, data_streams: Iterable[str], limit: int = 20) -> list[EventEntry]:
        """A twin's recent events, newest first."""
        filters = _mqtt_filters(data_streams)
        out = [e for topic, ring in self.events.items() if belongs_to(topic, filters) for e in ring]
        out.sort(key=lambda e: e.ts, reverse=True)
        return out[:limit]


def _parent(topic: str) -> str:
    return topic.rpartition("/")[0] or topic


def _mqtt_filters(data_streams: Iterable[str]) -> list[str]:
    out = []
    for stream in data_streams:
        scheme, _, rest = stream.partition(":")
        if scheme.upper() == "MQTT" and rest:
            out.append(rest)
    return out


def belongs_to(topic: str, filters: Iterable[str]) -> bool:
    """Whether `topic` is one of a twin's data streams or lives beside one.

    A twin lists e.g. `MQTT:dtp/lift/alerts`; its vibration comes on
    `dtp/lift/Lift_001/vibration`, under the same parent (`dtp/lift`).
    """
    from paho.mqtt.client import topic_matches_sub

    for pattern in filters:
        if topic_matches_sub(pattern, topic):
            return True
        parent = _parent(pattern)
        # Two levels at least (`dtp/lift`): a one-level parent would claim every topic.
        sibling = "/" in parent and "+" not in parent and "#" not in parent
        if sibling and topic.startswith(parent + "/"):
            return True
    return False
