"""The VDA 5050 payload format (v2.1.0, and the 3.0 draft's renamed fields).

Topics are `interfaceName/majorVersion/manufacturer/serialNumber/topic`; the
device id is `manufacturer/serialNumber`, taken from the topic (what the broker's
ACLs protect) and checked against the header's copy when the payload has one.
`visualization` and `state` carry `agvPosition` (3.0: `mobileRobotPosition`) in
metres; `state` adds battery, errors, safety and operating mode; `connection`
says `ONLINE`, `OFFLINE` or `CONNECTIONBROKEN` (the robot's retained last will).

The parser judges shape only. Policy — localization floor, map table, the
`headerId` sequence, presence — is the bridge's (`robot_status`), so a state
message of an unlocalized robot still updates its battery and errors.
Duplicate JSON keys: the last one wins (as orjson and Python's `json` read them).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from dtp_console.bridge.clock import UnitError, to_unix_ms
from dtp_console.bridge.parse import (
    MAX_ID_LENGTH,
    ParseResult,
    Reading,
    Rejection,
    RobotReport,
    StatusOnly,
    _battery,
    _FieldError,
    _kind,
    _load,
    _number,
    _optional_number,
    _vendor_id,
)
from dtp_console.config.model import VDA5050_TOPICS, PlantConfig

__all__ = ["CONNECTION_STATES", "MAX_ERRORS", "iso_to_unix_ms", "parse_vda5050"]

CONNECTION_STATES = frozenset({"ONLINE", "OFFLINE", "CONNECTIONBROKEN"})
#: Errors kept per message; a robot reporting hundreds is shown as "the first few + N".
MAX_ERRORS = 8
_MAX_HEADER_ID = 2**32 - 1
_MAX_TEXT = 120
_MAX_WORD = 24
#: Longest ISO 8601 text accepted (`2026-01-01T00:00:00.123456789+01:00` is 35).
_MAX_ISO_LENGTH = 40
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2}))",
    re.ASCII | re.IGNORECASE,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_to_unix_ms(text: str) -> int:
    """An ISO 8601 date-time with a zone (`Z` or `±hh:mm`) in unix ms; ValueError saying why.

    Fractions of any precision up to nanoseconds are cut to milliseconds. A time
    without a zone is refused: it is local time on some unknown clock.
    """
    if len(text) > _MAX_ISO_LENGTH:
        msg = f"timestamp is {len(text)} characters long"
        raise ValueError(msg)
    match = _ISO.fullmatch(text)
    if match is None:
        msg = f"timestamp {text!r} is not ISO 8601 with a time zone"
        raise ValueError(msg)
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om = match.groups()
    if zulu:
        zone = UTC
    else:
        if int(oh) > 23 or int(om) > 59:
            msg = f"timestamp {text!r} has an impossible offset"
            raise ValueError(msg)
        offset = timedelta(hours=int(oh), minutes=int(om))
        zone = timezone(-offset if sign == "-" else offset)
    # datetime refuses Feb 30, hour 24 and second 60 (a leap second cannot be placed).
    try:
        stamp = datetime(  # noqa: DTZ001 - the zone is set right after
            int(year), int(month), int(day), int(hour), int(minute), int(second)
        ).replace(tzinfo=zone)
    except ValueError as exc:
        msg = f"timestamp {text!r} is no date-time: {exc}"
        raise ValueError(msg) from None
    ms = (stamp - _EPOCH) // timedelta(milliseconds=1)
    if fraction:
        ms += int(fraction[:3].ljust(3, "0"))
    return ms


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            ms = iso_to_unix_ms(value)
            return to_unix_ms(ms, "ms")[0]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return to_unix_ms(_number(value, "timestamp"), "auto")[0]
    except (ValueError, UnitError) as exc:
        raise _FieldError("bad_timestamp", str(exc)[:_MAX_TEXT]) from None
    raise _FieldError("bad_timestamp", f"timestamp is {_kind(value)}, not ISO 8601 text")


def _header_id(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError("wrong_type", f"headerId is {_kind(value)}, not an integer")
    if not 0 <= value <= _MAX_HEADER_ID:
        raise _FieldError("wrong_type", f"headerId {value} is outside 0..2^32-1")
    return value


def _flag(value: Any, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _FieldError("wrong_type", f"{field} is {_kind(value)}, not a boolean")


def _word(value: Any) -> str | None:
    """An enum-like value (`AUTOMATIC`, `MANUAL`, …), bounded; None when it is no text."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:_MAX_WORD]


def _text(value: Any) -> str:
    return value.strip()[:_MAX_TEXT] if isinstance(value, str) else ""


def _errors(value: Any) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _FieldError("wrong_type", f"errors is {_kind(value)}, not a list")
    errors: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            continue  # one malformed entry does not cost the robot's position
        if len(errors) == MAX_ERRORS:
            errors.append(("INFO", f"+{len(value) - MAX_ERRORS} more errors"))
            break
        level = (_word(item.get("errorLevel")) or "UNKNOWN").upper()
        kind, detail = _text(item.get("errorType")), _text(item.get("errorDescription"))
        errors.append((level, f"{kind}: {detail}" if kind and detail else kind or detail or "?"))
    return tuple(errors)


def _object(data: dict[str, Any], *names: str) -> dict[str, Any] | None:
    """The first of `names` present in `data` as an object; wrong_type if it is not one."""
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise _FieldError("wrong_type", f"{name} is {_kind(value)}, not an object")
        return value
    return None


def _device_key(topic: str, data: dict[str, Any]) -> str:
    levels = topic.split("/")
    manufacturer = _vendor_id(levels[2], "manufacturer")
    serial = _vendor_id(levels[3], "serialNumber")
    for field, expected in (("manufacturer", levels[2]), ("serialNumber", levels[3])):
        said = data.get(field)
        if said is not None and said != expected:
            shown = said[:40] if isinstance(said, str) else _kind(said)
            raise _FieldError("id_mismatch", f"{field} {shown!r} is not the topic's {expected!r}")
    key = f"{manufacturer}/{serial}"
    if len(key) > MAX_ID_LENGTH:
        raise _FieldError("missing_id", f"manufacturer/serialNumber is {len(key)} characters long")
    return key


def _check_topic(topic: str, plant: PlantConfig) -> str:
    """The VDA 5050 topic name (`state`, …) of `topic`, or a rejection."""
    levels = topic.split("/")
    if len(levels) != 5:
        raise _FieldError(
            "bad_topic", "expected interfaceName/majorVersion/manufacturer/serial/topic"
        )
    cfg = plant.vda5050
    if cfg.interface_name is not None and levels[0] != cfg.interface_name:
        raise _FieldError(
            "bad_topic", f"interface {levels[0][:40]!r} is not {cfg.interface_name!r}"
        )
    if levels[1] != cfg.major_version:
        raise _FieldError(
            "wrong_version", f"version {levels[1][:40]!r} is not {cfg.major_version!r}"
        )
    if levels[4] not in VDA5050_TOPICS:
        raise _FieldError("unsupported_topic", f"topic {levels[4][:40]!r} carries no position")
    return levels[4]


def parse_vda5050(topic: str, payload: bytes, *, plant: PlantConfig) -> ParseResult:
    """A VDA 5050 `visualization`, `state` or `connection` message of `plant`."""
    vendor_id: str | None = None
    try:
        kind = _check_topic(topic, plant)
        data = _load(payload)
        vendor_id = _device_key(topic, data)
        header = _header_id(data.get("headerId"))
        stamp = _timestamp(data.get("timestamp"))
        if kind == "connection":
            state = data.get("connectionState")
            if not isinstance(state, str) or state not in CONNECTION_STATES:
                shown = state[:40] if isinstance(state, str) else _kind(state)
                raise _FieldError("wrong_type", f"connectionState is {shown!r}")
            report = RobotReport(kind, header, connection=state)
            return StatusOnly(vendor_id, None, state, stamp, report)
        return _position_message(kind, data, vendor_id, header, stamp)
    except _FieldError as bad:
        return Rejection(bad.reason, bad.detail, vendor_id)


def _position_message(
    kind: str, data: dict[str, Any], vendor_id: str, header: int | None, stamp: int | None
) -> ParseResult:
    position = _object(data, "agvPosition", "mobileRobotPosition")
    battery: float | None = None
    errors: tuple[tuple[str, str], ...] | None = None
    e_stop = mode = None
    driving = _flag(data.get("driving"), "driving")
    if kind == "state":
        power = _object(data, "batteryState", "powerSupply")
        if power is not None:
            raw = power.get("batteryCharge", power.get("stateOfCharge"))
            battery = _battery(raw)
        errors = _errors(data.get("errors"))
        safety = _object(data, "safetyState")
        if safety is not None:
            e_stop = _word(safety.get("eStop", safety.get("activeEmergencyStop")))
        mode = _word(data.get("operatingMode"))
    if position is None:
        report = RobotReport(
            kind, header, driving=driving, operating_mode=mode, errors=errors, e_stop=e_stop
        )
        return StatusOnly(vendor_id, battery, mode, stamp, report)
    if position.get("x") is None or position.get("y") is None:
        raise _FieldError("missing_position", "agvPosition needs x and y")
    x, y = _number(position["x"], "x"), _number(position["y"], "y")
    _optional_number(position.get("theta"), "theta")
    localized = _flag(
        position.get("positionInitialized", position.get("localized")), "positionInitialized"
    )
    score = _optional_number(position.get("localizationScore"), "localizationScore")
    if score is not None and not 0.0 <= score <= 1.0:
        raise _FieldError("wrong_type", f"localizationScore {score:g} is outside 0.0-1.0")
    map_id = position.get("mapId")
    if map_id is not None and not isinstance(map_id, str):
        raise _FieldError("wrong_type", f"mapId is {_kind(map_id)}, not text")
    report = RobotReport(
        kind,
        header,
        map_id=map_id[:MAX_ID_LENGTH] if map_id else None,
        localized=localized,
        localization_score=score,
        driving=driving,
        operating_mode=mode,
        errors=errors,
        e_stop=e_stop,
    )
    return Reading(vendor_id, x, y, 0.0, battery, stamp, None, report)
