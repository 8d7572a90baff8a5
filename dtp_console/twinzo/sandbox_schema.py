"""Strict request-body validation for the twinzo sandbox.

Each parser takes the decoded JSON value and either returns typed data or raises
`BodyError` whose message names the offending location index and field, so a
client bug shows up as a precise HTTP 400 instead of silently accepted data.

The types are twinzo's own SDK's (tdevkit `DeviceLocationContract`), as a .NET
System.Text.Json deserializer reads them: `Timestamp` long, `SectorId` int?,
`X/Y/Z` float? (single precision), `Interval` int?, `Battery` byte? (0–100 by
contract), `IsMoving` bool. An integer type takes only a JSON integer token:
`79.0` for a byte is refused, as the real deserializer refuses it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "LOCATION_FIELDS",
    "BodyError",
    "LocationIn",
    "parse_auth",
    "parse_batch",
    "parse_locations",
]

#: The exact keys of one location object of `POST /v3/localization`.
LOCATION_FIELDS: frozenset[str] = frozenset(
    {
        "Timestamp",
        "SectorId",
        "X",
        "Y",
        "Z",
        "Interval",
        "Battery",
        "IsMoving",
        "LocalizationAreas",
        "NoGoAreas",
    }
)
_AUTH_FIELDS: frozenset[str] = frozenset({"client", "login", "password"})
_DEVICE_FIELDS: frozenset[str] = frozenset({"Login", "Locations"})
#: A plausible `Timestamp` (unix ms, by the sandbox's clock): not older than a year, not more
#: than a day ahead. Seconds (1970), microseconds (year 50,000+) and wild clocks are 400s.
TIMESTAMP_PAST_S = 366 * 86_400.0
TIMESTAMP_FUTURE_S = 86_400.0
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
#: The largest finite single-precision float (.NET `float`, the SDK's X/Y/Z).
_FLOAT32_MAX = 3.4028234663852886e38


class BodyError(ValueError):
    """A request body that breaks the contract; the message is sent back with HTTP 400."""


@dataclass(frozen=True, slots=True)
class LocationIn:
    """One validated location as sent by a client, typed as tdevkit's `LocationContract`."""

    timestamp: int
    sector_id: int | None
    x: float | None
    y: float | None
    z: float | None
    interval: int | None
    battery: int | None
    """`byte?`: an integer 0–100, or None when the device did not report one."""
    is_moving: bool


def _show(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # pragma: no cover - decoded JSON always serialises
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_keys(obj: Any, expected: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        msg = f"{where}: expected a JSON object, got {_show(obj)}"
        raise BodyError(msg)
    missing = sorted(expected - obj.keys())
    if missing:
        msg = f"{where}: missing field {missing[0]!r}"
        raise BodyError(msg)
    unknown = sorted(obj.keys() - expected)
    if unknown:
        msg = f"{where}: unknown field {unknown[0]!r}"
        raise BodyError(msg)
    return obj


def _integer(
    obj: dict[str, Any], key: str, where: str, bounds: tuple[int, int], sdk: str
) -> int | None:
    """A JSON integer within `bounds` (None stays None only for nullable `sdk` types).

    `79.0` is refused: System.Text.Json reads integer types from integer tokens only.
    """
    value = obj[key]
    if value is None and sdk.endswith("?"):
        return None
    low, high = bounds
    # bool is an int subclass in Python but not a number in the contract.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"{where}.{key}: expected a JSON integer {low}..{high} ({sdk}), got {_show(value)}"
        raise BodyError(msg)
    return value


def _single(obj: dict[str, Any], key: str, where: str) -> float | None:
    """A `float?`: a finite JSON number within single precision, or null."""
    value = obj[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}.{key}: expected a number (float?), got {_show(value)}"
        raise BodyError(msg)
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        msg = f"{where}.{key}: expected a finite single-precision number, got {_show(value)}"
        raise BodyError(msg)
    return float(value)


def _parse_location(obj: Any, where: str, now_s: float) -> LocationIn:
    loc = _check_keys(obj, LOCATION_FIELDS, where)
    timestamp = _integer(loc, "Timestamp", where, _INT64, "long")
    assert timestamp is not None  # `long` is not nullable
    low_ms, high_ms = (now_s - TIMESTAMP_PAST_S) * 1000, (now_s + TIMESTAMP_FUTURE_S) * 1000
    if not low_ms <= timestamp <= high_ms:
        msg = (
            f"{where}.Timestamp: expected unix milliseconds within a year before and a day "
            f"after now, got {timestamp}"
        )
        raise BodyError(msg)
    interval = _integer(loc, "Interval", where, (0, _INT32[1]), "int?")
    battery = _integer(loc, "Battery", where, (0, 100), "byte?")
    if not isinstance(loc["IsMoving"], bool):
        msg = f"{where}.IsMoving: expected a boolean, got {_show(loc['IsMoving'])}"
        raise BodyError(msg)
    for key in ("LocalizationAreas", "NoGoAreas"):
        areas = loc[key]
        if not isinstance(areas, list) or any(
            isinstance(a, bool) or not isinstance(a, int) for a in areas
        ):
            msg = f"{where}.{key}: expected an array of area ids, got {_show(areas)}"
            raise BodyError(msg)
    return LocationIn(
        timestamp=timestamp,
        sector_id=_integer(loc, "SectorId", where, _INT32, "int?"),
        x=_single(loc, "X", where),
        y=_single(loc, "Y", where),
        z=_single(loc, "Z", where),
        interval=interval,
        battery=battery,
        is_moving=loc["IsMoving"],
    )


def parse_locations(data: Any, where: str = "", now_s: float | None = None) -> list[LocationIn]:
    """Validate a non-empty JSON array of location objects.

    `where` prefixes error messages (the batch parser passes the device's path).
    Messages look like ``location[2].X: expected a number (float?), got true``.
    `now_s` is the clock `Timestamp` is checked against (the wall clock by default).
    """
    now = time.time() if now_s is None else now_s
    label = f"{where}Locations" if where else "body"
    if not isinstance(data, list):
        msg = f"{label}: expected a JSON array of locations, got {_show(data)}"
        raise BodyError(msg)
    if not data:
        msg = f"{label}: expected at least one location, got an empty array"
        raise BodyError(msg)
    return [_parse_location(item, f"{where}location[{i}]", now) for i, item in enumerate(data)]


def parse_batch(data: Any, now_s: float | None = None) -> list[tuple[str, list[LocationIn]]]:
    """Validate a batch body: a non-empty array of ``{"Login", "Locations"}`` objects."""
    if not isinstance(data, list):
        msg = f"body: expected a JSON array of devices, got {_show(data)}"
        raise BodyError(msg)
    if not data:
        msg = "body: expected at least one device, got an empty array"
        raise BodyError(msg)
    devices: list[tuple[str, list[LocationIn]]] = []
    for i, item in enumerate(data):
        where = f"device[{i}]"
        device = _check_keys(item, _DEVICE_FIELDS, where)
        login = device["Login"]
        if not isinstance(login, str) or not login:
            msg = f"{where}.Login: expected a non-empty string, got {_show(login)}"
            raise BodyError(msg)
        devices.append((login, parse_locations(device["Locations"], f"{where}.", now_s)))
    return devices


def parse_auth(data: Any) -> tuple[str, str, str]:
    """Validate an authenticate body; returns ``(client, login, password)``."""
    body = _check_keys(data, _AUTH_FIELDS, "body")
    for key in ("client", "login", "password"):
        if not isinstance(body[key], str):
            msg = f"body.{key}: expected a string, got {_show(body[key])}"
            raise BodyError(msg)
    return body["client"], body["login"], body["password"]
