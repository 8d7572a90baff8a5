"""Outbox accounting: latest wins, one in flight per device, retries and intervals."""

from __future__ import annotations

from dtp_console.bridge.outbox import Location, Outbox
from dtp_console.state import PlantCounters


def _loc(login: str, ts: int, x: float = 0.0) -> Location:
    return Location(
        login=login,
        vendor_id=f"v-{login}",
        timestamp_ms=ts,
        x=x,
        y=0.0,
        z=0.0,
        battery=None,
        moving=False,
        interval_ms=1000,
        received_at=0.0,
    )


def test_latest_wins_and_counts_coalesced() -> None:
    counters = PlantCounters()
    counters.received = 3
    outbox = Outbox(counters, min_interval_s=0.0)
    outbox.put(_loc("a", 1))
    outbox.put(_loc("a", 2))
    outbox.put(_loc("a", 3))
    assert counters.outcomes["coalesced"] == 2
    ready = outbox.take_ready(now=0.0)
    assert [loc.timestamp_ms for loc in ready] == [3]
    assert counters.pending == 1  # the one in flight has no outcome yet


def test_one_in_flight_per_device_and_min_interval() -> None:
    counters = PlantCounters()
    outbox = Outbox(counters, min_interval_s=1.0)
    outbox.put(_loc("a", 1))
    first = outbox.take_ready(now=10.0)
    outbox.put(_loc("a", 2))
    assert outbox.take_ready(now=10.0) == []  # in flight
    outbox.done(first[0], now=10.0)
    assert outbox.take_ready(now=10.5) == []  # posted less than 1 s ago
    assert [loc.timestamp_ms for loc in outbox.take_ready(now=11.0)] == [2]


def test_retry_puts_back_unless_newer_arrived() -> None:
    counters = PlantCounters()
    outbox = Outbox(counters, min_interval_s=0.0)
    outbox.put(_loc("a", 1))
    (loc,) = outbox.take_ready(now=0.0)
    outbox.retry(loc, now=0.0, delay_s=2.0)
    assert loc.attempts == 1
    assert outbox.take_ready(now=1.0) == []  # backing off
    (again,) = outbox.take_ready(now=2.0)
    assert again is loc
    outbox.put(_loc("a", 5))  # newer one while the retry is in flight
    outbox.retry(again, now=2.0, delay_s=0.0)
    assert counters.outcomes["coalesced"] == 1
    (newest,) = outbox.take_ready(now=2.0)
    assert newest.timestamp_ms == 5


def test_devices_are_independent_and_discard_counts() -> None:
    counters = PlantCounters()
    counters.received = 3
    outbox = Outbox(counters, min_interval_s=0.0)
    for login in ("a", "b", "c"):
        outbox.put(_loc(login, 1))
    assert len(outbox.take_ready(now=0.0, limit=2)) == 2
    assert len(outbox) == 1
    assert outbox.discard_all("dropped:shutdown") == 1
    assert counters.outcomes["dropped:shutdown"] == 1
    assert counters.pending == 2


def test_payload_matches_twinzo_contract() -> None:
    body = _loc("a", 1_700_000_000_000, x=1234.56).payload(sector_id=2)
    assert body == {
        "Timestamp": 1_700_000_000_000,
        "SectorId": 2,
        "X": 1234.6,
        "Y": 0.0,
        "Z": 0.0,
        "Interval": 1000,
        "Battery": None,
        "IsMoving": False,
        "LocalizationAreas": [],
        "NoGoAreas": [],
    }
