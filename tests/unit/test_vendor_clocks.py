"""twinzo's field types, and vendor clocks that lie (issue: robots frozen by one bad stamp).

`Bridge.handle` runs with a fixed receive clock, so every case is exact. What
ends in the outbox is checked against the sandbox's SDK-typed validation — the
same rules a .NET deserializer applies to tdevkit's `LocationContract`.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest

from dtp_console.bridge.clock import ClockEstimate, UnitError, to_unix_ms
from dtp_console.bridge.outbox import Location
from dtp_console.bridge.parse import Reading, parse_ati, parse_hitech
from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.sandbox_schema import BodyError, parse_locations
from dtp_console.twinzo.wire import LocationBody, battery_byte

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)


def _plant(**changes: Any) -> PlantConfig:
    body: dict[str, Any] = {
        "name": "HiTech Plant",
        "format": "hitech",
        "device_map": {"amr-1": "tugger-03", "amr-2": "tugger-04"},
        "twinzo": {"sector_id": 1},
        "min_post_interval_ms": 0,
        **changes,
    }
    return ConsoleConfig.model_validate({"plants": [body]}).plants[0]


def _bridge(plant: PlantConfig | None = None, clock: list[float] | None = None) -> Bridge:
    now = clock if clock is not None else [NOW_S]
    plant = plant or _plant()
    return Bridge(
        plant,
        TwinzoConfig(),
        cast(TwinzoClient, object()),  # handle() does no I/O
        PlantState(plant.name),
        OpsLog(Bus(), 10.0),
        address=("127.0.0.1", 1),
        wall_clock=lambda: now[0],
    )


def _msg(stamp: float | None, vendor: str = "amr-1", x: float = 1000.0, **extra: Any) -> bytes:
    body: dict[str, Any] = {"device_id": vendor, "position": {"x": x, "y": 2000.0}, **extra}
    if stamp is not None:
        body["timestamp"] = stamp
    return orjson.dumps(body)


def _feed(bridge: Bridge, payload: bytes) -> str:
    bridge.state.counters.received += 1  # the MQTT queue counts arrivals
    return bridge.handle("hitech/amr/amr-1/position", payload, now=1.0)


def _taken(bridge: Bridge) -> list[Location]:
    """Take what is pending as the poster would, and mark its posts done."""
    taken = bridge.outbox.take_all()
    for location in taken:
        bridge.outbox.done(location, 0.0)
    return taken


def _sent(bridge: Bridge) -> list[LocationBody]:
    """The bodies the poster would send now, validated as twinzo's SDK reads them."""
    bodies = [loc.payload(bridge.plant.twinzo.sector_id) for loc in _taken(bridge)]
    parse_locations(orjson.loads(orjson.dumps(bodies)), now_s=NOW_S)
    return bodies


# -- field types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("battery", "sent"),
    [
        (79.0, 79),
        (79.4, 79),
        (79.5, 80),
        (100.0, 100),
        (100.4, 100),
        (-0.3, 0),
        (0.0, 0),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_battery_is_a_byte_or_null(battery: float | None, sent: int | None) -> None:
    assert battery_byte(battery) == sent
    assert type(battery_byte(battery)) is (int if sent is not None else type(None))


def test_every_location_field_has_the_sdk_type() -> None:
    bridge = _bridge()
    assert _feed(bridge, _msg(NOW_MS, battery=79.0)) == "queued"
    (body,) = _sent(bridge)
    raw = orjson.dumps(body).decode()
    assert '"Battery":79,' in raw  # a JSON integer, never 79.0
    assert type(body["Timestamp"]) is int
    assert type(body["SectorId"]) is int
    assert type(body["Interval"]) is int
    assert type(body["IsMoving"]) is bool
    assert all(type(body[k]) is float for k in ("X", "Y", "Z"))


@pytest.mark.parametrize(
    "payload",
    [
        _msg(NOW_MS),  # HiTech without a battery
        _msg(NOW_MS, battery="n/a"),
        _msg(NOW_MS, battery=250),
        _msg(NOW_MS, battery=None),
    ],
    ids=["missing", "text", "out-of-range", "null"],
)
def test_no_battery_from_the_vendor_sends_none(payload: bytes) -> None:
    bridge = _bridge()
    assert _feed(bridge, payload) == "queued"
    assert [b["Battery"] for b in _sent(bridge)] == [None]


def test_ati_without_battery_status_sends_none() -> None:
    plant = _plant(format="ati_sherpa", device_map={"ati_amr_001": "tugger-05-old"})
    bridge = _bridge(plant)
    payload = orjson.dumps({"sherpa_name": "ati_amr_001", "mode": "fleet", "pose": [1, 2, 0]})
    assert bridge.handle("ati_fm/sherpa/status", payload, now=1.0) == "queued"
    assert [b["Battery"] for b in _sent(bridge)] == [None]


def test_the_strict_contract_refuses_what_we_used_to_send() -> None:
    """The sandbox's SDK types are not vacuous: the old body (Battery 79.0) is a 400."""
    location = Location("tugger-03", "amr-1", NOW_MS, 1.0, 2.0, 0.0, 79.0, False, 1000, 0.0)
    old_body = {**location.payload(1), "Battery": 79.0}
    with pytest.raises(BodyError, match=r"location\[0\]\.Battery: expected a JSON integer"):
        parse_locations([old_body], now_s=NOW_S)
    with pytest.raises(BodyError, match=r"Timestamp"):
        parse_locations([{**location.payload(1), "Timestamp": NOW_MS // 1000}], now_s=NOW_S)
    with pytest.raises(BodyError, match=r"location\[0\]\.X"):
        parse_locations([{**location.payload(1), "X": 1e39}], now_s=NOW_S)


# -- units ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "ms", "read_as"),
    [
        (NOW_S, "auto", NOW_MS, "s"),
        (NOW_S + 0.25, "auto", NOW_MS + 250, "s"),
        (NOW_MS, "auto", NOW_MS, "ms"),
        (NOW_MS * 1000, "auto", NOW_MS, "us"),
        (NOW_MS * 1_000_000, "auto", NOW_MS, "ns"),
        (NOW_MS, "ms", NOW_MS, "ms"),
        (NOW_S, "s", NOW_MS, "s"),
        (10.0, "s", 10_000, "s"),  # a pinned unit is taken as it is (then the clock check)
    ],
)
def test_units_by_magnitude_or_pinned(value: float, unit: Any, ms: int, read_as: str) -> None:
    assert to_unix_ms(value, unit) == (ms, read_as)


@pytest.mark.parametrize("value", [0.0, 5.0, 99_999_999.0, 1e20, 1e300, -1.0, float("nan")])
def test_no_unix_time_in_any_unit(value: float) -> None:
    with pytest.raises(UnitError):
        to_unix_ms(value, "auto")


def test_seconds_micro_and_nanoseconds_are_converted_and_counted() -> None:
    bridge = _bridge()
    for i, stamp in enumerate([NOW_S, NOW_MS * 1000 + 1_000_000, NOW_MS * 1_000_000 + 2e9]):
        assert _feed(bridge, _msg(stamp, x=1000.0 + i)) == "queued"
        assert _taken(bridge)[0].timestamp_ms == NOW_MS + i * 1000
    assert _feed(bridge, _msg(NOW_MS + 3000)) == "queued"
    assert bridge.state.timestamps_converted == {"s": 1, "us": 1, "ns": 1}
    assert bridge.state.as_dict()["timestamps_converted"] == {"ns": 1, "s": 1, "us": 1}


def test_a_plant_can_pin_the_unit() -> None:
    bridge = _bridge(_plant(timestamp_unit="ms", clock_behind="reject"))
    # Seconds on a plant pinned to ms read as 1970: a lying clock, not a 1970 location.
    assert _feed(bridge, _msg(NOW_S)) == "rejected:clock_behind"
    parse = parse_hitech("t", _msg(NOW_S), unit="s")
    assert isinstance(parse, Reading)
    assert parse.timestamp_ms == NOW_MS


def test_generic_unit_defaults_to_the_plant_s() -> None:
    plant = _plant(
        format="generic",
        generic={"id": "id", "timestamp": "ts"},
        timestamp_unit="us",
        device_map={"r1": "tugger-09"},
    )
    bridge = _bridge(plant)
    payload = orjson.dumps({"id": "r1", "x": 1, "y": 2, "ts": NOW_MS * 1000})
    assert bridge.handle("t", payload, now=1.0) == "queued"
    assert _taken(bridge)[0].timestamp_ms == NOW_MS


# -- clocks that lie ----------------------------------------------------------------


def test_one_far_future_report_never_freezes_the_robot() -> None:
    """The defect: a report stamped years ahead made every later sane one `out_of_order`."""
    bridge = _bridge()
    assert _feed(bridge, _msg(NOW_MS - 1000)) == "queued"
    _taken(bridge)
    assert _feed(bridge, _msg(NOW_MS + 5 * 365 * 86_400_000, x=1500)) == "queued"
    (restamped,) = _taken(bridge)
    assert restamped.timestamp_ms == NOW_MS  # posted with the receive time
    for i in range(1, 4):
        assert _feed(bridge, _msg(NOW_MS + i * 500, x=1500 + i)) == "queued"
        assert _taken(bridge)[0].timestamp_ms == NOW_MS + i * 500
    assert bridge.state.clock_restamped == {"ahead": 1}
    assert "rejected:out_of_order" not in bridge.state.counters.outcomes


def test_far_future_can_be_rejected_instead_and_still_never_freezes() -> None:
    bridge = _bridge(_plant(clock_ahead="reject"))
    assert _feed(bridge, _msg(NOW_MS + 10**12)) == "rejected:clock_ahead"
    assert _feed(bridge, _msg(NOW_MS)) == "queued"
    assert _feed(bridge, _msg(NOW_MS + 10**12)) == "rejected:clock_ahead"
    assert _feed(bridge, _msg(NOW_MS + 500)) == "queued"


def test_a_report_from_the_past_is_rejected_and_never_the_reference() -> None:
    bridge = _bridge()
    assert _feed(bridge, _msg(NOW_MS)) == "queued"
    assert _feed(bridge, _msg(NOW_MS - 3600_000)) == "rejected:clock_behind"
    assert _feed(bridge, _msg(NOW_MS + 100)) == "queued"
    restamp = _bridge(_plant(clock_behind="restamp"))
    assert _feed(restamp, _msg(NOW_MS - 3600_000)) == "queued"
    assert _taken(restamp)[0].timestamp_ms == NOW_MS
    assert restamp.state.clock_restamped == {"behind": 1}


def test_the_tolerance_is_configurable() -> None:
    bridge = _bridge(_plant(clock_tolerance_s=5, clock_behind="reject"))
    assert _feed(bridge, _msg(NOW_MS - 4_000)) == "queued"
    assert _feed(bridge, _msg(NOW_MS - 6_000, vendor="amr-2")) == "rejected:clock_behind"


def test_a_clock_running_steadily_ahead_within_tolerance_is_accepted_and_shown() -> None:
    clock = [NOW_S]
    bridge = _bridge(clock=clock)
    for i in range(20):
        clock[0] = NOW_S + i * 0.5
        stamp = int(clock[0] * 1000) + 3_200 + (i % 3) * 10  # +3.2 s, a little jitter
        assert _feed(bridge, _msg(stamp, x=1000 + i)) == "queued"
    device = bridge.state.devices["amr-1"]
    assert device.clock_offset_ms is not None
    assert 3_200 <= device.clock_offset_ms <= 3_220
    facts = bridge.state.as_dict()["devices"]["tugger-03"]
    assert 3_200 <= facts["clock_offset_ms"] <= 3_220
    assert facts["clock_samples"] == 20


def test_the_offset_estimate_shrugs_off_a_wild_report_and_follows_a_real_jump() -> None:
    estimate = ClockEstimate()
    assert estimate.offset_ms is None
    for _ in range(8):
        estimate.add(100)
    estimate.add(10**12)
    assert estimate.offset_ms == 100
    for _ in range(5):
        estimate.add(3_600_000)
    assert estimate.offset_ms == 3_600_000


def test_duplicates_and_out_of_order_are_still_rejected_relative_to_sane_stamps() -> None:
    bridge = _bridge()
    assert _feed(bridge, _msg(NOW_MS)) == "queued"
    assert _feed(bridge, _msg(NOW_MS)) == "rejected:duplicate"
    assert _feed(bridge, _msg(NOW_MS - 1)) == "rejected:out_of_order"
    assert _feed(bridge, _msg(NOW_MS + 10**12)) == "queued"  # restamped, not the reference
    assert _feed(bridge, _msg(NOW_MS)) == "rejected:duplicate"
    assert _feed(bridge, _msg(NOW_MS + 1)) == "queued"


def test_a_rejected_position_does_not_become_the_reference() -> None:
    bridge = _bridge()
    assert _feed(bridge, _msg(NOW_MS, x=1e300)) == "rejected:out_of_range"
    assert _feed(bridge, _msg(NOW_MS)) == "queued"


@pytest.mark.parametrize("x", [1e300, -1e12, 1e8 + 1])
def test_finite_garbage_coordinates_are_rejected(x: float) -> None:
    bridge = _bridge()
    assert _feed(bridge, _msg(NOW_MS, x=x)) == "rejected:out_of_range"


def test_every_message_has_one_outcome_through_all_the_clock_cases() -> None:
    bridge = _bridge()
    stamps: list[float | None] = [
        NOW_MS,
        NOW_MS,
        NOW_MS - 5,
        NOW_MS + 10**12,
        NOW_MS - 10**11,
        NOW_S + 1,
        None,
        "soon",  # type: ignore[list-item]
        1e300,
        NOW_MS + 2000,
    ]
    for i, stamp in enumerate(stamps):
        _feed(bridge, _msg(stamp, x=1000 + i))
    bridge.outbox.discard_all("dropped:shutdown")
    counters = bridge.state.counters
    assert counters.pending == 0
    assert counters.received == counters.outcomes.total() == len(stamps)


def test_ati_reports_without_a_stamp_use_the_receive_clock() -> None:
    result = parse_ati("t", orjson.dumps({"sherpa_name": "a", "mode": "fleet", "pose": [1, 2, 3]}))
    assert isinstance(result, Reading)
    assert result.timestamp_ms is None
