"""Vendor payload parsers: bytes → a `Reading`, or a `Rejection` with a reason.

Parsers never raise on bad input. Rejection reasons are a small fixed set so
they can be counted (`rejected:<reason>`); the human detail travels alongside.
Numbers may arrive as JSON numbers or numeric strings; booleans, non-numeric
strings and non-finite values are rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from dtp_console.bridge.clock import TimestampUnit, UnitError, to_unix_ms
from dtp_console.config.model import GenericFields

__all__ = [
    "Parser",
    "Reading",
    "Rejection",
    "RobotReport",
    "StatusOnly",
    "parse_ati",
    "parse_generic",
    "parse_hitech",
]


@dataclass(frozen=True, slots=True)
class RobotReport:
    """What a VDA 5050 message says beside a position: sequence, localization, status.

    Fields a message does not carry are None (a `visualization` says nothing about
    errors, so its `errors` is None, not "no errors").
    """

    topic: str
    """The VDA 5050 topic: `visualization`, `state` or `connection`."""
    header_id: int | None = None
    """`headerId`: +1 per message and topic; None when the message has none."""
    map_id: str | None = None
    localized: bool | None = None
    """`agvPosition.positionInitialized` (3.0: `mobileRobotPosition.localized`)."""
    localization_score: float | None = None
    driving: bool | None = None
    operating_mode: str | None = None
    errors: tuple[tuple[str, str], ...] | None = None
    """`(errorLevel, errorType: description)` of each error (a bounded number)."""
    e_stop: str | None = None
    """`safetyState.eStop` (3.0: `activeEmergencyStop`): `NONE`, `AUTOACK`, `MANUAL`, …"""
    connection: str | None = None
    """`connectionState`: `ONLINE`, `OFFLINE` or `CONNECTIONBROKEN`."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One position report in vendor units."""

    vendor_id: str
    x: float
    y: float
    z: float = 0.0
    battery: float | None = None
    timestamp_ms: int | None = None
    """The vendor's own timestamp in unix ms; None when the payload has none."""
    timestamp_unit: str | None = None
    """The unit the vendor's timestamp was read in (`s`, `ms`, `us`, `ns`)."""
    report: RobotReport | None = None
    """VDA 5050 only: sequence, localization and robot status."""


@dataclass(frozen=True, slots=True)
class StatusOnly:
    """A valid message that carries no position (e.g. HiTech `/battery`)."""

    vendor_id: str
    battery: float | None = None
    status: str | None = None
    timestamp_ms: int | None = None
    """The vendor's own timestamp in unix ms (VDA 5050); None when absent."""
    report: RobotReport | None = None
    """VDA 5050 only: sequence, connection and robot status."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was not used. `reason` is from a fixed set; `detail` is free text."""

    reason: str
    detail: str = ""
    vendor_id: str | None = None


ParseResult = Reading | StatusOnly | Rejection
Parser = Callable[[str, bytes], ParseResult]


class _FieldError(Exception):
    """Internal: a field failed validation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise _FieldError("wrong_type", f"{field} is {_kind(value)}, not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _FieldError("wrong_type", f"{field} is {value[:40]!r}, not a number") from None
    else:
        raise _FieldError("wrong_type", f"{field} is {_kind(value)}, not a number")
    if not math.isfinite(number):
        raise _FieldError("non_finite", f"{field} is {value!r}")
    return number


def _optional_number(value: Any, field: str) -> float | None:
    return None if value is None else _number(value, field)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


#: Longer ids are refused: they would bloat the unknown-device list and every log line.
MAX_ID_LENGTH = 128


def _vendor_id(value: Any, field: str) -> str:
    if isinstance(value, str) and value.strip():
        if len(value.strip()) > MAX_ID_LENGTH:
            raise _FieldError("missing_id", f"{field} is {len(value.strip())} characters long")
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None:
        raise _FieldError("missing_id", f"no {field}")
    raise _FieldError("missing_id", f"{field} is {_kind(value)}")


def _battery(value: Any) -> float | None:
    """Battery is optional decoration: a bad value is dropped, it never costs the position."""
    try:
        battery = _optional_number(value, "battery")
    except _FieldError:
        return None
    if battery is None or not 0 <= battery <= 100:
        return None
    return battery


def _load(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _FieldError("invalid_json", str(exc)[:120]) from None
    if not isinstance(data, dict):
        raise _FieldError("not_object", f"payload is a JSON {_kind(data)}")
    return data


def _timestamp(value: Any, unit: TimestampUnit) -> tuple[int | None, str | None]:
    """The vendor timestamp in unix ms and the unit it was read in (None, None when absent)."""
    if value is None:
        return None, None
    number = _number(value, "timestamp")
    try:
        return to_unix_ms(number, unit)
    except UnitError as exc:
        raise _FieldError("bad_timestamp", str(exc)[:120]) from None


def parse_ati(topic: str, payload: bytes) -> ParseResult:  # noqa: ARG001 - uniform signature
    """ATI fleet manager `ati_fm/sherpa/status`: pose in metres, only `fleet` mode is live."""
    vendor_id: str | None = None
    try:
        data = _load(payload)
        vendor_id = _vendor_id(data.get("sherpa_name"), "sherpa_name")
        mode = data.get("mode")
        if not isinstance(mode, str) or mode.strip().lower() != "fleet":
            raise _FieldError("not_in_fleet", f"mode is {mode!r}")
        if data.get("disabled") is True:
            raise _FieldError("disabled", "robot is disabled")
        pose = data.get("pose")
        if pose is None or pose == []:
            raise _FieldError("no_pose", "no pose")
        if not isinstance(pose, list) or len(pose) not in (3, 6):
            shape = f"{len(pose)} values" if isinstance(pose, list) else _kind(pose)
            raise _FieldError("bad_pose", f"pose has {shape}, expected 3 or 6")
        x = _number(pose[0], "pose[0]")
        y = _number(pose[1], "pose[1]")
        z = _number(pose[2], "pose[2]") if len(pose) == 6 else 0.0
        return Reading(vendor_id, x, y, z, _battery(data.get("battery_status")))
    except _FieldError as bad:
        return Rejection(bad.reason, bad.detail, vendor_id)


_HITECH_IDS = ("device_id", "amr_id", "id")


def parse_hitech(topic: str, payload: bytes, unit: TimestampUnit = "auto") -> ParseResult:
    """HiTech `hitech/amr/{id}/position|battery|status`: millimetres, nested or flat.

    `timestamp` is read in `unit` (`auto`: by magnitude, seconds to nanoseconds).
    """
    vendor_id: str | None = None
    try:
        data = _load(payload)
        raw_id = next((data[k] for k in _HITECH_IDS if data.get(k) not in (None, "")), None)
        if raw_id is None:
            levels = topic.split("/")
            raw_id = levels[2] if len(levels) >= 4 and levels[0] == "hitech" else None
        vendor_id = _vendor_id(raw_id, "device_id")
        position = data.get("position")
        source: dict[str, Any]
        if isinstance(position, dict):
            source = position
        elif position is None and ("x" in data or "y" in data):
            source = data
        elif position is None:
            status = data.get("status")
            return StatusOnly(vendor_id, _battery(data.get("battery")), _text(status))
        else:
            raise _FieldError("wrong_type", f"position is {_kind(position)}")
        if source.get("x") is None or source.get("y") is None:
            raise _FieldError("missing_position", "position needs x and y")
        timestamp, read_as = _timestamp(data.get("timestamp"), unit)
        return Reading(
            vendor_id,
            _number(source["x"], "x"),
            _number(source["y"], "y"),
            _optional_number(source.get("z"), "z") or 0.0,
            _battery(data.get("battery")),
            timestamp,
            read_as,
        )
    except _FieldError as bad:
        return Rejection(bad.reason, bad.detail, vendor_id)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


_MISSING = object()


def _path(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is _MISSING:
            return None
    return node


def parse_generic(fields: GenericFields, unit: TimestampUnit = "auto") -> Parser:
    """A parser for a payload whose field paths come from config.

    The timestamp is read in `fields.timestamp_unit`, else in `unit`.
    """
    ts_unit: TimestampUnit = fields.timestamp_unit or unit

    def _parse(topic: str, payload: bytes) -> ParseResult:
        vendor_id: str | None = None
        try:
            data = _load(payload)
            if fields.id_topic_level is not None:
                levels = topic.split("/")
                level = fields.id_topic_level
                raw_id: Any = levels[level] if level < len(levels) else None
            else:
                raw_id = _path(data, fields.id)
            vendor_id = _vendor_id(raw_id, fields.id)
            x, y = _path(data, fields.x), _path(data, fields.y)
            if x is None or y is None:
                raise _FieldError("missing_position", f"needs {fields.x} and {fields.y}")
            z = _optional_number(_path(data, fields.z), fields.z) if fields.z else None
            battery = _battery(_path(data, fields.battery)) if fields.battery else None
            ts, read_as = (
                _timestamp(_path(data, fields.timestamp), ts_unit)
                if fields.timestamp
                else (None, None)
            )
            return Reading(
                vendor_id,
                _number(x, fields.x),
                _number(y, fields.y),
                z or 0.0,
                battery,
                ts,
                read_as,
            )
        except _FieldError as bad:
            return Rejection(bad.reason, bad.detail, vendor_id)

    return _parse
