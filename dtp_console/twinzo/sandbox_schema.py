"""Strict request-body validation for the twinzo sandbox.

Each parser takes the decoded JSON value and either returns typed data or raises
`BodyError` whose message names the offending location index and field, so a
client bug shows up as a precise HTTP 400 instead of silently accepted data.
"""

from __future__ import annotations

import math
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
# Unix milliseconds between 1973 and 5138: a value below is almost surely seconds,
# one above microseconds — both are client bugs worth a loud 400.
_MIN_TIMESTAMP_MS = 100_000_000_000
_MAX_TIMESTAMP_MS = 100_000_000_000_000


class BodyError(ValueError):
    """A request body that breaks the contract; the message is sent back with HTTP 400."""


@dataclass(frozen=True, slots=True)
class LocationIn:
    """One validated location as sent by a client."""

    timestamp: int
    sector_id: int
    x: float
    y: float
    z: float
    interval: int
    battery: float
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


def _int(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj[key]
    # bool is an int subclass in Python but not a number in the contract.
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{where}.{key}: expected an integer, got {_show(value)}"
        raise BodyError(msg)
    return value


def _number(obj: dict[str, Any], key: str, where: str) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}.{key}: expected a number, got {_show(value)}"
        raise BodyError(msg)
    if not math.isfinite(value):
        msg = f"{where}.{key}: expected a finite number, got {_show(value)}"
        raise BodyError(msg)
    return float(value)


def _parse_location(obj: Any, where: str) -> LocationIn:
    loc = _check_keys(obj, LOCATION_FIELDS, where)
    timestamp = _int(loc, "Timestamp", where)
    if not _MIN_TIMESTAMP_MS <= timestamp < _MAX_TIMESTAMP_MS:
        msg = f"{where}.Timestamp: expected unix milliseconds, got {timestamp}"
        raise BodyError(msg)
    interval = _int(loc, "Interval", where)
    if interval < 0:
        msg = f"{where}.Interval: expected a non-negative integer, got {interval}"
        raise BodyError(msg)
    battery = _number(loc, "Battery", where)
    if not 0 <= battery <= 100:
        msg = f"{where}.Battery: expected 0..100, got {_show(loc['Battery'])}"
        raise BodyError(msg)
    if not isinstance(loc["IsMoving"], bool):
        msg = f"{where}.IsMoving: expected a boolean, got {_show(loc['IsMoving'])}"
        raise BodyError(msg)
    for key in ("LocalizationAreas", "NoGoAreas"):
        if not isinstance(loc[key], list):
            msg = f"{where}.{key}: expected an array, got {_show(loc[key])}"
            raise BodyError(msg)
    return LocationIn(
        timestamp=timestamp,
        sector_id=_int(loc, "SectorId", where),
        x=_number(loc, "X", where),
        y=_number(loc, "Y", where),
        z=_number(loc, "Z", where),
        interval=interval,
        battery=battery,
        is_moving=loc["IsMoving"],
    )


def parse_locations(data: Any, where: str = "") -> list[LocationIn]:
    """Validate a non-empty JSON array of location objects.

    `where` prefixes error messages (the batch parser passes the device's path).
    Messages look like ``location[2].X: expected a number, got true``.
    """
    label = f"{where}Locations" if where else "body"
    if not isinstance(data, list):
        msg = f"{label}: expected a JSON array of locations, got {_show(data)}"
        raise BodyError(msg)
    if not data:
        msg = f"{label}: expected at least one location, got an empty array"
        raise BodyError(msg)
    return [_parse_location(item, f"{where}location[{i}]") for i, item in enumerate(data)]


def parse_batch(data: Any) -> list[tuple[str, list[LocationIn]]]:
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
        devices.append((login, parse_locations(device["Locations"], f"{where}.")))
    return devices


def parse_auth(data: Any) -> tuple[str, str, str]:
    """Validate an authenticate body; returns ``(client, login, password)``."""
    body = _check_keys(data, _AUTH_FIELDS, "body")
    for key in ("client", "login", "password"):
        if not isinstance(body[key], str):
            msg = f"body.{key}: expected a string, got {_show(body[key])}"
            raise BodyError(msg)
    return body["client"], body["login"], body["password"]
