"""Platform messages and engine events → store records (pure: no I/O, never raises).

- `dtp/sensors/<room>/temp` → a `Signal` and an `Observation` (°C);
- `dtp/lift/<id>/vibration` → a `Signal` and an `Observation` (RMS, mm/s), with
  the stable uuid5 signal id of the lift's topic;
- `dtp/lift/alerts` → an `EventRecord`, severity 2, source from the payload;
- `dtp/energy_hvac/events` → readings (`type: energy`) become three
  observations (kW, kWh, cost), state changes (`type: hvac_state`) an
  `EventRecord` of severity 1;
- bridge `FAIL` lines (auth and POST failures) → severity 3;
- registry `twin.update` / `twin.delete` → severity 1 for lifecycle changes
  (registered, status changed, deprecated, removed), 0 for other edits.

A payload that cannot be mapped is a counted rejection with a reason.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from dtp_console.events import LogLine, TwinDeleted, TwinUpdated
from dtp_console.simulator.config import stable_signal_id
from dtp_console.stores.records import EventRecord, Observation, Severity, Signal

__all__ = [
    "Mapped",
    "PlatformMapper",
    "energy_signal",
    "event_from_log",
    "event_from_registry",
    "parse_ts",
]

_ROOM_TEMP = re.compile(r"^dtp/sensors/([^/]+)/temp$")
_LIFT_VIBRATION = re.compile(r"^dtp/lift/([^/]+)/vibration$")
_LIFT_ALERTS = "dtp/lift/alerts"
_ENERGY = "dtp/energy_hvac/events"
#: Energy reading fields → (signal suffix, unit; None: the payload's currency).
_ENERGY_FIELDS: dict[str, tuple[str, str | None]] = {
    "kw": ("power", "kW"),
    "kwh": ("energy", "kWh"),
    "cost": ("cost", None),
}


class _Reject(Exception):  # noqa: N818 - internal control flow, never escapes
    """A payload that cannot be mapped; the message is the counted reason."""


@dataclass(slots=True)
class Mapped:
    """What one message maps to (all empty and `rejected` set when it cannot be mapped)."""

    signals: list[Signal] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    rejected: str | None = None
    """Why the message was rejected; None when it mapped."""
    kind: str | None = None
    """What it mapped as (`room_temp`, `lift_alert`, …); None when rejected."""


def parse_ts(value: Any, default: dt.datetime | None = None) -> dt.datetime:
    """An ISO 8601 string or epoch seconds/milliseconds as an aware UTC datetime.

    Missing (`None`) → `default`, or now. Raises `ValueError` for anything else.
    """
    if value is None:
        return default or dt.datetime.now(dt.UTC)
    if isinstance(value, bool):
        msg = "ts is a boolean"
        raise ValueError(msg)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            msg = "ts is not finite"
            raise ValueError(msg)
        seconds = value / 1000 if abs(value) > 1e11 else float(value)
        try:
            return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            msg = "ts is out of range"
            raise ValueError(msg) from None
    if isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            msg = f"ts {value[:40]!r} is not ISO 8601"
            raise ValueError(msg) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return stamp.astimezone(dt.UTC)
    msg = f"ts is a {type(value).__name__}"
    raise ValueError(msg)


def energy_signal(asset_id: str, key: str) -> uuid.UUID:
    """Stable signal id of an asset's energy reading (`kw`, `kwh`, `cost`)."""
    return stable_signal_id(f"{_ENERGY}/{asset_id}/{key}")


def _object(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _Reject("malformed JSON") from None
    if not isinstance(data, dict):
        raise _Reject("not a JSON object")
    return data


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Reject(f"{key} is not a number")
    if not math.isfinite(value):
        raise _Reject(f"{key} is not finite")
    return float(value)


def _text(data: dict[str, Any], key: str, default: str) -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise _Reject(f"{key} is not a non-empty string")
    return str(value)


def _ts(data: dict[str, Any], received: dt.datetime | None) -> dt.datetime:
    try:
        return parse_ts(data.get("ts"), received)
    except ValueError as exc:
        raise _Reject(str(exc)) from None


def _signal_id(data: dict[str, Any], fallback: uuid.UUID) -> uuid.UUID:
    value = data.get("signal_id")
    if value is None:
        return fallback
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _Reject("signal_id is not a UUID") from None


class PlatformMapper:
    """Maps platform MQTT messages to records and counts every outcome."""

    def __init__(self, *, reading_topics: frozenset[str] = frozenset()) -> None:
        self._reading_topics = reading_topics
        """Further topics carrying `{value, ts, name, unit}` readings (a renamed room sensor)."""
        self.mapped: Counter[str] = Counter()
        """Messages mapped, per kind (`room_temp`, `lift_vibration`, `lift_alert`, …)."""
        self.rejected: Counter[str] = Counter()
        """Messages rejected, per reason."""

    def map(self, topic: str, payload: bytes, received: dt.datetime | None = None) -> Mapped:
        """The records of one message; a rejection (counted) when it cannot be mapped.

        `received` stamps payloads without a `ts` (default: now).
        """
        try:
            kind, out = self._map(topic, payload, received)
        except _Reject as exc:
            reason = str(exc)
            self.rejected[reason] += 1
            return Mapped(rejected=reason)
        self.mapped[kind] += 1
        out.kind = kind
        return out

    def _map(self, topic: str, payload: bytes, received: dt.datetime | None) -> tuple[str, Mapped]:
        if match := _ROOM_TEMP.match(topic):
            data = _object(payload)
            fallback = stable_signal_id(topic)
            return "room_temp", self._reading(data, received, fallback, f"{match[1]} temperature")
        if match := _LIFT_VIBRATION.match(topic):
            data = _object(payload)
            # One id per lift whatever the payload claims: the topic names the lift.
            data = {**data, "signal_id": None}
            out = self._reading(data, received, stable_signal_id(topic), f"{match[1]} vibration")
            return "lift_vibration", out
        if topic in self._reading_topics:
            data = _object(payload)
            return "reading", self._reading(data, received, stable_signal_id(topic), topic)
        if topic == _LIFT_ALERTS:
            data = _object(payload)
            source = _text(data, "source", "lift")
            event = EventRecord(ts=_ts(data, received), severity=2, source=source, body=data)
            return "lift_alert", Mapped(events=[event])
        if topic == _ENERGY:
            return self._energy(_object(payload), received)
        raise _Reject("unmapped topic")

    @staticmethod
    def _reading(
        data: dict[str, Any], received: dt.datetime | None, fallback: uuid.UUID, name: str
    ) -> Mapped:
        signal_id = _signal_id(data, fallback)
        value = _number(data, "value")
        unit = data.get("unit")
        signal = Signal(
            signal_id, _text(data, "name", name), unit if isinstance(unit, str) else None
        )
        source = _text(data, "source", "dtp-console")
        observation = Observation(signal_id, _ts(data, received), value, source=source)
        return Mapped(signals=[signal], observations=[observation])

    @staticmethod
    def _energy(data: dict[str, Any], received: dt.datetime | None) -> tuple[str, Mapped]:
        kind = data.get("type")
        asset = _text(data, "asset_id", "hvac")
        source = _text(data, "source", "energy_hvac")
        ts = _ts(data, received)
        if kind == "hvac_state":
            if not isinstance(data.get("to"), str) or not data["to"]:
                raise _Reject("hvac_state without a new state")
            return "hvac_state", Mapped(
                events=[EventRecord(ts=ts, severity=1, source=source, body=data)]
            )
        if kind != "energy":
            raise _Reject("unknown energy event type")
        out = Mapped()
        currency = _text(data, "currency", "cost")
        for key, (suffix, unit) in _ENERGY_FIELDS.items():
            value = _number(data, key)
            signal_id = energy_signal(asset, key)
            out.signals.append(Signal(signal_id, f"{asset} {suffix}", unit or currency))
            out.observations.append(Observation(signal_id, ts, value, source=source))
        return "energy", out


def _log_kind(text: str) -> str:
    lowered = text.lower()
    if "oauth" in lowered or "auth" in lowered or "token" in lowered:
        return "auth"
    if "post" in lowered:
        return "post"
    return "other"


def event_from_log(line: LogLine) -> EventRecord | None:
    """A bridge `FAIL` line as a severity-3 event; None for any other level."""
    if line.level != "FAIL":
        return None
    source = f"bridge:{line.plant}" if line.plant else "dtp-console"
    body: dict[str, Any] = {"kind": _log_kind(line.text), "text": line.text}
    if line.plant:
        body["plant"] = line.plant
    ts = dt.datetime.fromtimestamp(line.ts, tz=dt.UTC)
    return EventRecord(ts=ts, severity=3, source=source, body=body)


def event_from_registry(event: TwinUpdated | TwinDeleted) -> EventRecord:
    """A registry change as an event: severity 1 for lifecycle changes, 0 for other edits."""
    twin = event.twin
    body: dict[str, Any] = {
        "kind": event.kind,
        "twin_id": twin.id,
        "tenant": twin.tenant,
        "status": twin.status,
        "reason": event.reason,
    }
    severity: Severity
    if isinstance(event, TwinDeleted):
        body["hard"] = event.hard
        severity = 1
    else:
        body["previous_status"] = event.previous_status
        body["created"] = event.created
        lifecycle = event.created or event.previous_status != twin.status
        severity = 1 if lifecycle else 0
    ts = dt.datetime.fromtimestamp(event.ts, tz=dt.UTC)
    return EventRecord(ts=ts, severity=severity, source="registry", body=body)
