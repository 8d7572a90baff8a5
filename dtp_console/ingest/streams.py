"""Generic field-path mapping of other twins' topics (`platform.streams`).

Pure: no I/O, never raises. A message on a stream's topic becomes an
observation (the number at the `value` path) or an event (the whole object);
what cannot be mapped is a `Mapped` with the reason in `rejected`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import orjson
from paho.mqtt.client import topic_matches_sub

from dtp_console.config.model import PlatformStream
from dtp_console.simulator.config import stable_signal_id
from dtp_console.stores.mapping import Mapped, parse_ts
from dtp_console.stores.records import EventRecord, Observation, Signal

__all__ = ["StreamMapper", "field_at"]

_MISSING = object()


def field_at(data: Any, path: str) -> Any:
    """The value at a dotted path (`data.value`; list indexes as numbers), or `_MISSING`."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part, _MISSING)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
        if data is _MISSING:
            return _MISSING
    return data


class StreamMapper:
    """Maps messages of the configured generic streams (first matching stream wins)."""

    def __init__(self, streams: Sequence[PlatformStream]) -> None:
        self.streams = list(streams)

    def stream_for(self, topic: str) -> PlatformStream | None:
        """The first stream whose topic filter matches `topic`."""
        return next((s for s in self.streams if topic_matches_sub(s.topic, topic)), None)

    def map(
        self, stream: PlatformStream, topic: str, payload: bytes, received: dt.datetime
    ) -> Mapped:
        """The records of one message of `stream`, or a rejection with its reason."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return Mapped(rejected="malformed JSON")
        if not isinstance(data, dict):
            return Mapped(rejected="not a JSON object")
        raw_ts = field_at(data, stream.ts)
        try:
            ts = parse_ts(None if raw_ts is _MISSING else raw_ts, received)
        except ValueError as exc:
            return Mapped(rejected=str(exc))
        source = data.get("source") if isinstance(data.get("source"), str) else "platform"
        assert isinstance(source, str)
        if stream.kind == "event":
            event = EventRecord(ts=ts, severity=stream.severity, source=source, body=data)
            return Mapped(events=[event], kind="stream_event")
        value = field_at(data, stream.value)
        if value is _MISSING:
            return Mapped(rejected=f"no {stream.value}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Mapped(rejected=f"{stream.value} is not a number")
        if not math.isfinite(value):
            return Mapped(rejected=f"{stream.value} is not finite")
        signal_id = stable_signal_id(topic)
        signal = Signal(signal_id, stream.name or topic, stream.unit)
        observation = Observation(signal_id, ts, float(value), source=source)
        return Mapped(signals=[signal], observations=[observation], kind="stream")
