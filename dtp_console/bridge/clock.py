"""Vendor clocks: timestamp units, and how far a robot's clock is from ours.

Publishers in the field stamp reports in unix seconds, milliseconds or
microseconds (some in nanoseconds), and their clocks jump and drift. This
module turns a vendor number into unix milliseconds (by magnitude, unless the
plant pins the unit) and keeps, per device, a robust estimate of the offset
between the vendor's stamp and our receive time.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

__all__ = [
    "TIMESTAMP_UNITS",
    "ClockEstimate",
    "TimestampUnit",
    "UnitError",
    "to_unix_ms",
]

TimestampUnit = Literal["auto", "s", "ms", "us", "ns"]
TIMESTAMP_UNITS: tuple[str, ...] = ("auto", "s", "ms", "us", "ns")

_PER_MS = {"s": 1e-3, "ms": 1.0, "us": 1e3, "ns": 1e6}
#: Magnitude bands for `auto`: each unit's plausible values span 1973..5138 (as unix time).
#: 1e11 s, 1e11 ms, 1e11 µs … are the boundaries; anything below 1e8 s (1973) is no clock.
_AUTO_BANDS: tuple[tuple[float, float, str], ...] = (
    (1e8, 1e11, "s"),
    (1e11, 1e14, "ms"),
    (1e14, 1e17, "us"),
    (1e17, 1e20, "ns"),
)
#: Anything that converts beyond this (~year 287,000) is garbage and would overflow int64 JSON.
_MAX_MS = 2**53


class UnitError(ValueError):
    """A vendor timestamp that is no unix time in any unit (the message says why)."""


def to_unix_ms(value: float, unit: TimestampUnit) -> tuple[int, str]:
    """`value` in unix milliseconds and the unit it was read in.

    With `auto` the unit follows from the magnitude: seconds for 1e8–1e11,
    milliseconds up to 1e14, microseconds up to 1e17, nanoseconds up to 1e20.
    Raises `UnitError` for negative, non-finite and out-of-band values.
    """
    if not math.isfinite(value) or value < 0:
        msg = f"timestamp {value!r} is not a unix time"
        raise UnitError(msg)
    if unit == "auto":
        for low, high, band in _AUTO_BANDS:
            if low <= value < high:
                unit = band  # type: ignore[assignment]
                break
        else:
            msg = f"timestamp {value:.6g} is no unix time in s, ms, us or ns"
            raise UnitError(msg)
    ms = value / _PER_MS[unit]
    if not 0 <= ms < _MAX_MS:
        msg = f"timestamp {value:.6g} {unit} is out of range"
        raise UnitError(msg)
    return int(ms), unit


#: Offsets kept per device; the median of this many resists a few wild reports.
_WINDOW = 9


class ClockEstimate:
    """A running, robust estimate of `vendor timestamp − receive time` for one device.

    The median of the last few offsets: one report stamped years ahead does not
    move it, a clock that jumps for good moves it within a few reports, and a
    steady drift shows as it happens. The offset includes network and broker
    latency, so a healthy clock reads slightly negative.
    """

    __slots__ = ("_offsets", "samples")

    def __init__(self) -> None:
        self._offsets: deque[int] = deque(maxlen=_WINDOW)
        self.samples = 0
        """Offsets seen in total."""

    def add(self, offset_ms: int) -> None:
        """Record one report's offset (vendor stamp minus receive time, ms)."""
        self._offsets.append(offset_ms)
        self.samples += 1

    @property
    def offset_ms(self) -> int | None:
        """The median of the recent offsets; None before the first report."""
        if not self._offsets:
            return None
        ordered = sorted(self._offsets)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) // 2
