"""Per-device latest-wins outbox: at most one pending location per device.

Intake puts, the poster takes. A newer position replaces a pending older one
(the older counts as `coalesced`), so a slow twinzo costs freshness, never
memory or MQTT intake. A device is posted at most every `min_interval_s` and
has at most one request in flight; after a retryable failure its (possibly
newer) location goes again once the poster's hold allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtp_console.state import PlantCounters
from dtp_console.twinzo.wire import LocationBody, location_body

__all__ = ["Location", "Outbox"]


@dataclass(slots=True)
class Location:
    """One position on its way to twinzo (twinzo mm)."""

    login: str
    vendor_id: str
    timestamp_ms: int
    x: float
    y: float
    z: float
    battery: float | None
    moving: bool
    interval_ms: int
    received_at: float
    """Monotonic receive time (for latency figures)."""
    attempts: int = 0
    sector_id: int | None = None
    """The twinzo sector of this position (VDA 5050 map table); the plant's when None."""

    def payload(self, sector_id: int) -> LocationBody:
        """The twinzo location object of this position (`sector_id`: the plant's sector,
        used when the position carries none)."""
        return location_body(
            self.timestamp_ms,
            sector_id if self.sector_id is None else self.sector_id,
            self.x,
            self.y,
            self.z,
            self.interval_ms,
            self.battery,
            self.moving,
        )


@dataclass(slots=True)
class _Slot:
    pending: Location | None = None
    in_flight: bool = False
    next_allowed: float = 0.0
    gone: str | None = None
    """Set by `discard`: the outcome of a retry that comes back for a device that left."""


class Outbox:
    """Latest-wins slots by device login, bounded by the number of devices."""

    def __init__(self, counters: PlantCounters, min_interval_s: float) -> None:
        self._counters = counters
        self._min_interval = min_interval_s
        self._slots: dict[str, _Slot] = {}
        self._dirty: dict[str, None] = {}

    def __len__(self) -> int:
        """Locations waiting (not in flight)."""
        return len(self._dirty)

    @property
    def min_interval_s(self) -> float:
        """The shortest time between two posts of one device (slots already waiting keep theirs)."""
        return self._min_interval

    @min_interval_s.setter
    def min_interval_s(self, value: float) -> None:
        self._min_interval = value

    @property
    def in_flight(self) -> int:
        """Devices with a request in flight."""
        return sum(1 for slot in self._slots.values() if slot.in_flight)

    def put(self, location: Location) -> None:
        """Queue `location`, replacing (and counting as coalesced) a pending older one."""
        slot = self._slots.get(location.login)
        if slot is None:
            slot = self._slots[location.login] = _Slot()
        if slot.pending is not None:
            self._counters.count("coalesced")
        slot.pending, slot.gone = location, None
        self._dirty[location.login] = None

    def discard(self, login: str, outcome: str) -> int:
        """Forget `login`'s pending location (counted as `outcome`), and its in-flight one
        if that comes back for a retry: the device left (a VDA 5050 robot went OFFLINE),
        its last position must not be posted again. Returns locations discarded now."""
        slot = self._slots.get(login)
        if slot is None:
            return 0
        slot.gone = outcome
        self._dirty.pop(login, None)
        if slot.pending is None:
            return 0
        slot.pending = None
        self._counters.count(outcome)
        return 1

    def take_ready(self, now: float, limit: int | None = None) -> list[Location]:
        """Pending locations whose device may be posted now; they become in flight."""
        ready: list[Location] = []
        for login in list(self._dirty):
            slot = self._slots[login]
            if slot.in_flight or now < slot.next_allowed or slot.pending is None:
                continue
            ready.append(slot.pending)
            slot.pending, slot.in_flight = None, True
            del self._dirty[login]
            if limit is not None and len(ready) >= limit:
                break
        return ready

    def take_all(self) -> list[Location]:
        """Every pending location of a device not in flight, ignoring intervals (drain)."""
        return self.take_ready(float("inf"))

    def done(self, location: Location, now: float) -> None:
        """The request for `location` ended (success or final failure)."""
        slot = self._slots[location.login]
        slot.in_flight = False
        slot.next_allowed = now + self._min_interval

    def hold(self, location: Location, now: float, delay_s: float) -> None:
        """The request ended with a final failure; keep the device quiet for `delay_s`."""
        slot = self._slots[location.login]
        slot.in_flight = False
        slot.next_allowed = now + max(delay_s, self._min_interval)

    def retry(self, location: Location, now: float, delay_s: float) -> None:
        """Try `location` again after `delay_s`, unless a newer one arrived meanwhile."""
        slot = self._slots[location.login]
        slot.in_flight = False
        slot.next_allowed = now + delay_s
        if slot.gone is not None and slot.pending is None:
            self._counters.count(slot.gone)
        elif slot.pending is None:
            location.attempts += 1
            slot.pending = location
            self._dirty[location.login] = None
        else:
            self._counters.count("coalesced")

    def discard_all(self, outcome: str) -> int:
        """Count every pending location as `outcome` and forget it (shutdown)."""
        count = 0
        for login in list(self._dirty):
            slot = self._slots[login]
            if slot.pending is not None:
                count += 1
                slot.pending = None
            del self._dirty[login]
        if count:
            self._counters.count(outcome, count)
        return count
