"""The twinzo v3 localization body as our client sends it: typed, built and encoded here.

The types are twinzo's own SDK's (tdevkit `LocationContract`): `Timestamp` long
(unix ms), `SectorId` int?, `X/Y/Z` float? (single precision), `Interval` int?,
`Battery` byte?, `IsMoving` bool. A .NET deserializer refuses `79.0` for a byte,
so integers go as JSON integers, and an unknown battery goes as null, never an
invented value.

The bodies are `TypedDict`s: mypy checks every key and value, and at run time a
body is the plain dict orjson encodes, so the bridge's hot path (thousands of
bodies a second) pays nothing for the types. The sandbox's validator
(`sandbox_schema`) is written from the SDK contract on its own and must not
import this module: a fake built from our encoder would agree with every bug in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypedDict

import orjson

__all__ = [
    "INT32_MAX",
    "DeviceLocations",
    "LocationBody",
    "battery_byte",
    "encode_batch",
    "encode_locations",
    "location_body",
]

#: The largest .NET `int` (`Interval`, `SectorId`).
INT32_MAX = 2**31 - 1

_json = orjson.dumps


class LocationBody(TypedDict):
    """One location object of `POST /v3/localization` (tdevkit `LocationContract`)."""

    Timestamp: int
    """long: unix milliseconds."""
    SectorId: int | None
    """int?: the twinzo sector."""
    X: float | None
    """float? (single precision): twinzo millimetres."""
    Y: float | None
    Z: float | None
    Interval: int | None
    """int?: milliseconds since the device's previous position (capped to int32)."""
    Battery: int | None
    """byte?: an integer 0–100; null when unknown."""
    IsMoving: bool
    LocalizationAreas: list[int]
    NoGoAreas: list[int]


class DeviceLocations(TypedDict):
    """One device of `POST /v3/localization/batch`."""

    Login: str
    Locations: list[LocationBody]


def battery_byte(battery: float | None) -> int | None:
    """A battery percentage as twinzo's `byte?`: an integer 0–100 (rounded half up and
    clamped), or None when unknown or not a finite number."""
    if battery is None or not math.isfinite(battery):
        return None
    return max(0, min(100, math.floor(battery + 0.5)))


def location_body(
    timestamp_ms: int,
    sector_id: int,
    x: float,
    y: float,
    z: float,
    interval_ms: int,
    battery: float | None,
    moving: bool,
) -> LocationBody:
    """The location object for one position (twinzo mm), typed as the SDK declares it.

    Coordinates go with 0.1 mm (more is noise and bytes); `Interval` is capped to
    int32 (a device silent for 25 days would overflow it); `Battery` as `battery_byte`.
    Positional on purpose: keyword passing costs on the hot path.
    """
    return {
        "Timestamp": int(timestamp_ms),
        "SectorId": int(sector_id),
        "X": round(x, 1),
        "Y": round(y, 1),
        "Z": round(z, 1),
        "Interval": min(int(interval_ms), INT32_MAX),
        "Battery": battery_byte(battery),
        "IsMoving": bool(moving),
        "LocalizationAreas": [],
        "NoGoAreas": [],
    }


def encode_locations(locations: Sequence[LocationBody]) -> bytes:
    """The JSON body of `POST /v3/localization` (one device's locations)."""
    return _json(locations if isinstance(locations, list) else list(locations))


def encode_batch(devices: Mapping[str, Sequence[LocationBody]]) -> bytes:
    """The JSON body of `POST /v3/localization/batch`: one entry per device login."""
    body: list[DeviceLocations] = [
        {"Login": login, "Locations": list(locations)} for login, locations in devices.items()
    ]
    return _json(body)
