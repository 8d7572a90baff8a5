"""The `vda5050` format: parsing schema-shaped messages and hostile ones, the `headerId`
sequence (gaps, restarts, duplicates), ISO timestamps, presence, and exact counters.

Fixtures are written from the public VDA 5050 v2.1.0 JSON schemas (`state`,
`visualization`, `connection`), field by field; none of their files is copied.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, cast

import orjson
import pytest

from dtp_console.bridge.formats import parser_for
from dtp_console.bridge.outbox import Location
from dtp_console.bridge.parse import Reading, Rejection, StatusOnly
from dtp_console.bridge.robot_status import MAX_GAP, judge_sequence
from dtp_console.bridge.vda5050 import MAX_ERRORS, iso_to_unix_ms
from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.headless import stats_line
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient

NOW_S = 1_800_000_000.0  # 2027-01-15T08:00:00Z
NOW_ISO = "2027-01-15T08:00:00.000Z"
NOW_MS = int(NOW_S * 1000)
ROBOT = "acme/AGV-7"


def _plant(**vda: Any) -> PlantConfig:
    body: dict[str, Any] = {
        "name": "VDA Plant",
        "format": "vda5050",
        "device_map": {ROBOT: "tugger-90", "acme/AGV-8": "tugger-91"},
        "twinzo": {"sector_id": 3},
        "affine": {"A": 1000, "D": 1000},
        "min_post_interval_ms": 0,
        "vda5050": vda,
    }
    return ConsoleConfig.model_validate({"plants": [body]}).plants[0]


def _position(**changes: Any) -> dict[str, Any]:
    return {
        "x": 12.5,
        "y": -3.25,
        "theta": 1.57,
        "mapId": "hall-1",
        "positionInitialized": True,
        "localizationScore": 0.93,
        "deviationRange": 0.05,
        **changes,
    }


def _header(header_id: int, serial: str = "AGV-7") -> dict[str, Any]:
    return {
        "headerId": header_id,
        "timestamp": NOW_ISO,
        "version": "2.1.0",
        "manufacturer": "acme",
        "serialNumber": serial,
    }


def visualization(header_id: int = 0, **changes: Any) -> dict[str, Any]:
    """A `visualization` message as its schema describes it."""
    return {
        **_header(header_id),
        "agvPosition": _position(),
        "velocity": {"vx": 0.4, "vy": 0.0, "omega": 0.0},
        **changes,
    }


def state(header_id: int = 0, **changes: Any) -> dict[str, Any]:
    """A `state` message with every required field of its schema."""
    return {
        **_header(header_id),
        "orderId": "order-1",
        "orderUpdateId": 0,
        "lastNodeId": "n1",
        "lastNodeSequenceId": 0,
        "driving": True,
        "paused": False,
        "operatingMode": "AUTOMATIC",
        "nodeStates": [],
        "edgeStates": [],
        "agvPosition": _position(),
        "actionStates": [],
        "batteryState": {"batteryCharge": 78.6, "charging": False, "reach": 4000},
        "errors": [],
        "information": [],
        "safetyState": {"eStop": "NONE", "fieldViolation": False},
        **changes,
    }


def connection(header_id: int = 0, state_: str = "ONLINE") -> dict[str, Any]:
    """A `connection` message (also the robot's last will, with `CONNECTIONBROKEN`)."""
    return {**_header(header_id), "connectionState": state_}


def _topic(kind: str, serial: str = "AGV-7", manufacturer: str = "acme") -> str:
    return f"uagv/v2/{manufacturer}/{serial}/{kind}"


def _parse(kind: str, body: Any, plant: PlantConfig | None = None, **topic: str) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return parser_for(plant or _plant())(_topic(kind, **topic), raw)


class _Lines:
    """The log lines a bridge published so far (as `LEVEL text`)."""

    def __init__(self, bus: Bus) -> None:
        self._subscription = bus.subscribe()
        self._seen: list[str] = []

    def _update(self) -> list[str]:
        for event in self._subscription.drain():
            if isinstance(event, LogLine):
                self._seen.append(f"{event.level} {event.text}")
        return self._seen

    def __iter__(self) -> Iterator[str]:
        return iter(self._update())


def _bridge(plant: PlantConfig | None = None) -> tuple[Bridge, _Lines]:
    plant = plant or _plant()
    bus = Bus()
    lines = _Lines(bus)
    bridge = Bridge(
        plant,
        TwinzoConfig(),
        cast(TwinzoClient, object()),  # handle() does no I/O
        PlantState(plant.name),
        OpsLog(bus, 10.0),
        address=("127.0.0.1", 1),
        wall_clock=lambda: NOW_S,
    )
    return bridge, lines


def _feed(bridge: Bridge, kind: str, body: Any, serial: str = "AGV-7") -> str:
    bridge.state.counters.received += 1  # the MQTT queue counts arrivals
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return bridge.handle(_topic(kind, serial), raw, now=1.0)


def _taken(bridge: Bridge) -> list[Location]:
    taken = bridge.outbox.take_all()
    for location in taken:
        bridge.outbox.done(location, 0.0)
        bridge.state.counters.count("forwarded")
    return taken


def _balanced(bridge: Bridge) -> None:
    _taken(bridge)
    counters = bridge.state.counters
    assert counters.received == counters.outcomes.total(), counters.as_dict()


# --- parsing ---------------------------------------------------------------------------


def test_visualization_is_a_reading_in_metres_with_its_report() -> None:
    result = _parse("visualization", visualization(41))
    assert isinstance(result, Reading)
    assert (result.vendor_id, result.x, result.y) == (ROBOT, 12.5, -3.25)
    assert result.timestamp_ms == NOW_MS
    assert result.battery is None
    report = result.report
    assert report is not None
    assert (report.topic, report.header_id, report.map_id) == ("visualization", 41, "hall-1")
    assert report.localized is True
    assert report.localization_score == pytest.approx(0.93)
    assert report.errors is None  # a visualization says nothing about errors


def test_state_carries_battery_errors_safety_mode_and_driving() -> None:
    errors = [
        {
            "errorType": "orderNoRoute",
            "errorLevel": "WARNING",
            "errorReferences": [],
            "errorDescription": "no route to n9",
        },
        {"errorType": "laserDirty", "errorLevel": "FATAL"},
    ]
    body = state(7, errors=errors, safetyState={"eStop": "MANUAL", "fieldViolation": True})
    result = _parse("state", body)
    assert isinstance(result, Reading)
    assert result.battery == pytest.approx(78.6)
    report = result.report
    assert report is not None
    assert report.errors == (("WARNING", "orderNoRoute: no route to n9"), ("FATAL", "laserDirty"))
    assert (report.e_stop, report.operating_mode, report.driving) == ("MANUAL", "AUTOMATIC", True)


def test_state_without_a_position_is_status_only() -> None:
    body = state(3)
    del body["agvPosition"]
    result = _parse("state", body)
    assert isinstance(result, StatusOnly)
    assert result.battery == pytest.approx(78.6)
    assert result.report is not None and result.report.header_id == 3


def test_draft_3_names_are_read_too() -> None:
    body = state(2, safetyState={"activeEmergencyStop": "REMOTE", "fieldViolation": False})
    del body["agvPosition"], body["batteryState"]
    body["mobileRobotPosition"] = {
        "x": 1.0,
        "y": 2.0,
        "theta": 0.0,
        "mapId": "m",
        "localized": False,
    }
    body["powerSupply"] = {"stateOfCharge": 55.0, "charging": True}
    result = _parse("state", body)
    assert isinstance(result, Reading)
    assert result.battery == 55.0
    assert result.report is not None
    assert (result.report.localized, result.report.e_stop) == (False, "REMOTE")


@pytest.mark.parametrize("state_", ["ONLINE", "OFFLINE", "CONNECTIONBROKEN"])
def test_connection_states(state_: str) -> None:
    result = _parse("connection", connection(5, state_))
    assert isinstance(result, StatusOnly)
    assert result.report is not None and result.report.connection == state_


@pytest.mark.parametrize(
    ("kind", "body", "reason"),
    [
        ("connection", connection(1, "online"), "wrong_type"),
        ("connection", {**connection(1), "connectionState": None}, "wrong_type"),
        ("connection", {**connection(1), "connectionState": ["ONLINE"]}, "wrong_type"),
        ("connection", {**connection(1), "connectionState": {"a": 1}}, "wrong_type"),
        ("visualization", visualization(headerId="7"), "wrong_type"),
        ("visualization", visualization(headerId=True), "wrong_type"),
        ("visualization", visualization(headerId=2**32), "wrong_type"),
        ("visualization", visualization(headerId=-1), "wrong_type"),
        ("visualization", visualization(headerId=1.5), "wrong_type"),
        ("visualization", visualization(agvPosition=_position(x="NaN")), "non_finite"),
        ("visualization", visualization(agvPosition=_position(y=[1])), "wrong_type"),
        ("visualization", visualization(agvPosition=_position(theta="north")), "wrong_type"),
        ("visualization", visualization(agvPosition={"y": 1.0}), "missing_position"),
        ("visualization", visualization(agvPosition=[1.0, 2.0]), "wrong_type"),
        (
            "visualization",
            visualization(agvPosition=_position(positionInitialized="false")),
            "wrong_type",
        ),
        ("visualization", visualization(agvPosition=_position(localizationScore=5)), "wrong_type"),
        ("visualization", visualization(agvPosition=_position(mapId=7)), "wrong_type"),
        ("visualization", visualization(manufacturer="evil"), "id_mismatch"),
        ("visualization", visualization(serialNumber=7), "id_mismatch"),
        ("state", state(errors="everything"), "wrong_type"),
        ("state", state(safetyState="red"), "wrong_type"),
        ("visualization", b"[1, 2]", "not_object"),
        ("visualization", b'{"headerId": 1, "agvPosition": {"x": NaN, "y": 1}}', "invalid_json"),
        ("visualization", b"{" * 5000, "invalid_json"),
        ("visualization", b"\xff\xfe", "invalid_json"),
    ],
)
def test_hostile_messages_are_rejected_with_a_reason(kind: str, body: Any, reason: str) -> None:
    result = _parse(kind, body)
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result


def test_deeply_nested_and_huge_values_are_refused_or_ignored() -> None:
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    result = _parse("visualization", visualization(information=nested))
    assert isinstance(result, Reading)  # unknown keys are not read at all
    huge = _parse("visualization", visualization(agvPosition=_position(x=1e308 * 10)))
    assert isinstance(huge, Rejection)  # orjson reads 1e309 as an error, not inf


def test_broken_error_entries_do_not_cost_the_position() -> None:
    errors: list[Any] = ["oops", None, {"errorLevel": 5}] + [
        {"errorType": f"e{i}", "errorLevel": "WARNING"} for i in range(50)
    ]
    result = _parse("state", state(errors=errors))
    assert isinstance(result, Reading)
    assert result.report is not None and result.report.errors is not None
    assert len(result.report.errors) == MAX_ERRORS + 1
    assert result.report.errors[0] == ("UNKNOWN", "?")
    assert result.report.errors[-1][1].startswith("+")


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("uagv/v2/acme/AGV-7", "bad_topic"),
        ("uagv/v2/acme/AGV-7/state/extra", "bad_topic"),
        ("uagv/v1/acme/AGV-7/state", "wrong_version"),
        ("uagv/v2/acme/AGV-7/order", "unsupported_topic"),
        ("uagv/v2/acme/AGV-7/factsheet", "unsupported_topic"),
        ("uagv/v2//AGV-7/state", "missing_id"),
        ("uagv/v2/acme/ /state", "missing_id"),
        (f"uagv/v2/acme/{'s' * 200}/state", "missing_id"),
    ],
)
def test_topics_that_are_not_a_robot_position(topic: str, reason: str) -> None:
    result = parser_for(_plant())(topic, orjson.dumps(state()))
    assert isinstance(result, Rejection)
    assert result.reason == reason


def test_configured_interface_name_is_enforced_and_derives_the_subscriptions() -> None:
    plant = _plant(interface_name="fleet", major_version="v3")
    assert plant.topics == [
        "fleet/v3/+/+/visualization",
        "fleet/v3/+/+/state",
        "fleet/v3/+/+/connection",
    ]
    assert _plant().topics[0] == "+/v2/+/+/visualization"
    result = parser_for(plant)("uagv/v3/acme/AGV-7/state", orjson.dumps(state()))
    assert isinstance(result, Rejection) and result.reason == "bad_topic"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "v\n2"])
def test_config_refuses_unusable_topic_levels(bad: str) -> None:
    with pytest.raises(ValueError, match="topic level"):
        _plant(major_version=bad)


def test_control_characters_markup_and_non_ascii_in_ids_stay_text() -> None:
    for manufacturer, serial in [
        ("ac\x1b[2Jme", "AGV\u202e7"),
        ("[bold red]x", "ロボット-1[link=x]"),
    ]:
        body = {**visualization(), "manufacturer": manufacturer, "serialNumber": serial}
        result = _parse("visualization", body, manufacturer=manufacturer, serial=serial)
        assert isinstance(result, Reading)
        assert result.vendor_id == f"{manufacturer}/{serial}"


def test_duplicate_json_keys_the_last_one_wins() -> None:
    raw = (
        b'{"headerId": 1, "headerId": 2, "timestamp": "' + NOW_ISO.encode() + b'",'
        b' "agvPosition": {"x": 1, "y": 2, "x": 9, "positionInitialized": false,'
        b' "positionInitialized": true}}'
    )
    result = _parse("visualization", raw)
    assert isinstance(result, Reading)
    assert result.x == 9
    assert result.report is not None
    assert (result.report.header_id, result.report.localized) == (2, True)


# --- timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00Z", NOW_MS),
        ("2027-01-15T08:00:00.5Z", NOW_MS + 500),
        ("2027-01-15T08:00:00.123456789Z", NOW_MS + 123),
        ("2027-01-15T09:30:00+01:30", NOW_MS),
        ("2027-01-15T03:00:00.250-05:00", NOW_MS + 250),
        ("2027-01-15T08:00:00+0000", NOW_MS),
        ("2027-01-15 08:00:00z", NOW_MS),
        ("2027-01-15T08:00:00,5Z", NOW_MS + 500),
    ],
)
def test_iso_timestamps(text: str, expected: int) -> None:
    assert iso_to_unix_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2027-01-15T08:00:00",  # no zone: local time of an unknown clock
        "2027-02-30T08:00:00Z",
        "2027-01-15T24:00:00Z",
        "2027-01-15T08:00:60Z",
        "2027-01-15T08:00:00+25:00",
        "0000-01-01T00:00:00Z",
        "2027-01-15",
        "1800000000",
        "٢٠٢٧-01-15T08:00:00Z",  # Arabic-Indic digits are digits to `\\d` without ASCII
        "2027-01-15T08:00:00Z" + " " * 50,
        "2027-01-15T08:00:00Z\n",
        "",
    ],
)
def test_hostile_timestamps_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        iso_to_unix_ms(text)
    result = _parse("visualization", visualization(timestamp=text))
    assert isinstance(result, Rejection) and result.reason == "bad_timestamp"


@pytest.mark.parametrize("stamp", ["1969-12-31T23:59:59Z", [NOW_ISO], {"iso": NOW_ISO}, True])
def test_timestamps_that_are_no_unix_time(stamp: Any) -> None:
    result = _parse("visualization", visualization(timestamp=stamp))
    assert isinstance(result, Rejection) and result.reason == "bad_timestamp"


def test_missing_timestamp_and_header_are_receive_time_and_unsequenced() -> None:
    body = visualization()
    del body["timestamp"], body["headerId"]
    result = _parse("visualization", body)
    assert isinstance(result, Reading)
    assert result.timestamp_ms is None
    assert result.report is not None and result.report.header_id is None


def test_lying_iso_clock_goes_through_the_vendor_clock_rules() -> None:
    bridge, _ = _bridge()
    ahead = visualization(0, timestamp="2031-01-01T00:00:00Z")
    behind = visualization(1, timestamp="2020-01-01T00:00:00Z")
    assert _feed(bridge, "visualization", ahead) == "queued"  # restamped by default
    assert bridge.state.clock_restamped["ahead"] == 1
    assert _feed(bridge, "visualization", behind) == "rejected:clock_behind"
    _balanced(bridge)


# --- headerId sequence -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "new", "verdict", "missing"),
    [
        (None, 5, "first", 0),
        (5, 6, "next", 0),
        (5, 9, "gap", 3),
        (5, 5, "duplicate", 0),
        (5000, 0, "reset", 0),
        (5000, 3, "reset", 0),
        (9, 8, "reset", 0),
        (2**32 - 1, 0, "reset", 0),
        (5, 5 + MAX_GAP + 1, "gap", MAX_GAP),
        (5, 5 + MAX_GAP + 2, "reset", 0),
    ],
)
def test_judge_sequence(last: int | None, new: int, verdict: str, missing: int) -> None:
    assert judge_sequence(last, new) == (verdict, missing)


def _at(x: float, header_id: int) -> dict[str, Any]:
    stamp = f"2027-01-15T08:00:{header_id % 60:02d}.{header_id // 60:03d}Z"
    return visualization(header_id, timestamp=stamp, agvPosition=_position(x=x))


def test_gaps_are_lost_resets_are_restarts_duplicates_are_rejected() -> None:
    bridge, lines = _bridge()
    outcomes = [
        _feed(bridge, "visualization", _at(1.0, 10)),
        _feed(bridge, "visualization", _at(1.1, 11)),
        _feed(bridge, "visualization", _at(1.2, 15)),  # 12, 13, 14 lost
        _feed(bridge, "visualization", _at(1.2, 15)),  # duplicate
        _feed(bridge, "visualization", _at(1.3, 0)),  # restart
        _feed(bridge, "visualization", _at(1.4, 1)),
        _feed(bridge, "state", {**state(3), "timestamp": "2027-01-15T08:00:02.500Z"}),
        _feed(bridge, "state", {**state(5), "timestamp": "2027-01-15T08:00:02.600Z"}),
    ]
    assert outcomes.count("rejected:duplicate") == 1
    robot = bridge.state.devices[ROBOT].robot
    assert robot is not None
    assert (robot.lost, robot.restarts, robot.duplicates) == (4, 1, 1)
    sequence = bridge.state.sequence
    assert sequence is not None
    assert (sequence.lost, sequence.restarts, sequence.duplicates) == (4, 1, 1)
    assert any("restarted" in line for line in lines)
    stats = bridge.state.as_dict()
    assert stats["sequence"]["lost"] == 4
    assert stats["devices"]["tugger-90"]["robot"]["lost"] == 4
    orjson.dumps(stats)
    _balanced(bridge)


def test_sequences_are_per_robot_and_per_topic() -> None:
    bridge, _ = _bridge()
    _feed(bridge, "visualization", _at(1.0, 1))
    _feed(bridge, "state", state(100))
    _feed(bridge, "connection", connection(7))
    other = {**visualization(50), "serialNumber": "AGV-8"}
    _feed(bridge, "visualization", other, serial="AGV-8")
    _feed(bridge, "visualization", _at(1.0, 2))
    assert bridge.state.sequence is not None and bridge.state.sequence.lost == 0
    _balanced(bridge)


def test_unknown_robots_are_counted_not_sequenced() -> None:
    bridge, _ = _bridge()
    body = {**visualization(1), "serialNumber": "AGV-99"}
    assert _feed(bridge, "visualization", body, serial="AGV-99") == "unknown_device"
    assert bridge.state.unknown["acme/AGV-99"] == 1
    _balanced(bridge)


# --- localization, maps, status --------------------------------------------------------


def test_not_localized_and_low_score_are_rejected_but_status_still_counts() -> None:
    bridge, _ = _bridge(_plant(min_localization_score=0.5))
    lost = state(1, agvPosition=_position(positionInitialized=False))
    assert _feed(bridge, "state", lost) == "rejected:not_localized"
    device = bridge.state.devices[ROBOT]
    assert device.battery == pytest.approx(78.6)  # the state's battery is still taken
    low = visualization(2, agvPosition=_position(localizationScore=0.2))
    assert _feed(bridge, "visualization", low) == "rejected:low_localization"
    fine = visualization(3, agvPosition=_position(localizationScore=0.5))
    fine["timestamp"] = "2027-01-15T08:00:01Z"
    assert _feed(bridge, "visualization", fine) == "queued"
    _balanced(bridge)


def test_map_ids_choose_the_sector_and_unknown_ones_are_counted() -> None:
    bridge, _ = _bridge(_plant(map_sectors={"hall-1": 7}))
    assert _feed(bridge, "visualization", _at(1.0, 1)) == "queued"
    other = _at(1.0, 2)
    other["agvPosition"]["mapId"] = "hall-9"
    assert _feed(bridge, "visualization", other) == "queued"
    sectors = [loc.payload(3)["SectorId"] for loc in bridge.outbox.take_all()]
    assert sectors == [3]  # latest wins per device: hall-9 → the plant's sector
    assert bridge.state.sequence is not None
    assert bridge.state.sequence.unknown_maps == {"hall-9": 1}
    bridge, _ = _bridge(_plant(map_sectors={"hall-1": 7}))
    _feed(bridge, "visualization", _at(1.0, 1))
    assert [loc.payload(3)["SectorId"] for loc in bridge.outbox.take_all()] == [7]


def test_drop_unknown_maps() -> None:
    bridge, _ = _bridge(_plant(map_sectors={"hall-2": 7}, drop_unknown_maps=True))
    assert _feed(bridge, "visualization", _at(1.0, 1)) == "rejected:unknown_map"
    _balanced(bridge)


def test_position_goes_through_the_affine_in_millimetres() -> None:
    bridge, _ = _bridge()
    _feed(bridge, "visualization", visualization(1))
    (location,) = bridge.outbox.take_all()
    assert (location.x, location.y) == (12_500.0, -3_250.0)
    assert location.timestamp_ms == NOW_MS


def test_errors_and_estop_are_shown_and_logged_once_per_change() -> None:
    bridge, lines = _bridge()
    errors = [
        {
            "errorType": "laser\x1b[31m",
            "errorLevel": "FATAL",
            "errorDescription": "dirty\nFAKE OK line",
        }
    ]
    for header_id in range(3):
        body = state(header_id, errors=errors, safetyState={"eStop": "AUTOACK"})
        body["timestamp"] = f"2027-01-15T08:00:0{header_id}Z"
        _feed(bridge, "state", body)
    robot = bridge.state.devices[ROBOT].robot
    assert robot is not None
    assert robot.worst_error == "FATAL" and robot.e_stop == "AUTOACK"
    assert robot.operating_mode == "AUTOMATIC" and robot.driving is True
    fatal = [line for line in lines if "FATAL" in line]
    assert len(fatal) == 1
    assert "\x1b" not in fatal[0] and "\n" not in fatal[0]
    assert len([line for line in lines if "emergency stop AUTOACK" in line]) == 1
    cleared = state(3, safetyState={"eStop": "NONE"}, timestamp="2027-01-15T08:00:05Z")
    _feed(bridge, "state", cleared)
    assert robot.errors == () and robot.e_stop == "NONE"
    assert any("errors cleared" in line for line in lines)
    assert any("emergency stop released" in line for line in lines)
    _balanced(bridge)


# --- presence --------------------------------------------------------------------------


def test_offline_robot_is_offline_and_its_last_position_is_not_posted() -> None:
    bridge, lines = _bridge()
    assert _feed(bridge, "connection", connection(0)) == "status_only"
    assert _feed(bridge, "visualization", visualization(0)) == "queued"
    assert _feed(bridge, "connection", connection(1, "OFFLINE")) == "status_only"
    robot = bridge.state.devices[ROBOT].robot
    assert robot is not None and robot.offline
    assert bridge.outbox.take_all() == []
    assert bridge.state.counters.outcomes["dropped:offline"] == 1
    assert any("OFFLINE" in line for line in lines)
    _balanced(bridge)


def test_a_retry_in_flight_is_not_reposted_after_the_robot_left() -> None:
    bridge, _ = _bridge()
    _feed(bridge, "visualization", visualization(0))
    (in_flight,) = bridge.outbox.take_all()
    _feed(bridge, "connection", connection(0, "CONNECTIONBROKEN"))
    bridge.outbox.retry(in_flight, 0.0, 0.0)  # its POST failed retryably meanwhile
    assert bridge.outbox.take_all() == []
    assert bridge.state.counters.outcomes["dropped:offline"] == 1
    counters = bridge.state.counters
    assert counters.received == counters.outcomes.total()


def test_last_will_with_a_reused_header_id_still_drives_presence() -> None:
    bridge, _ = _bridge()
    _feed(bridge, "connection", connection(4))
    # The will was set at connect time with the then-current headerId.
    assert _feed(bridge, "connection", connection(4, "CONNECTIONBROKEN")) == "status_only"
    robot = bridge.state.devices[ROBOT].robot
    assert robot is not None and robot.connection == "CONNECTIONBROKEN"
    assert (robot.restarts, robot.duplicates) == (0, 0)
    assert _feed(bridge, "connection", connection(5)) == "status_only"
    assert robot.connection == "ONLINE" and robot.lost == 0
    _balanced(bridge)


def test_counters_add_up_over_a_hostile_mix() -> None:
    bridge, _ = _bridge(_plant(min_localization_score=0.4, map_sectors={"hall-1": 4}))
    bodies: list[tuple[str, Any]] = [
        ("connection", connection(0)),
        ("visualization", visualization(0)),
        ("visualization", visualization(0)),
        ("visualization", b"{broken"),
        ("visualization", visualization(5, agvPosition=_position(x=math.inf))),
        ("visualization", visualization(6, agvPosition=_position(positionInitialized=False))),
        ("visualization", visualization(7, agvPosition=_position(localizationScore=0.1))),
        ("visualization", visualization(8, timestamp="yesterday")),
        ("state", state(0)),
        ("state", state(0)),
        ("connection", connection(1, "OFFLINE")),
        ("connection", connection(1, "OFFLINE")),
        ("connection", connection(1, "CONNECTIONBROKEN")),
    ]
    for kind, body in bodies:
        _feed(bridge, kind, body)
    bridge.state.counters.received += 1
    bridge.handle("uagv/v2/acme/AGV-7/state", b"x" * 70_000, now=1.0)
    _balanced(bridge)
    outcomes = bridge.state.counters.outcomes
    assert outcomes["rejected:duplicate"] == 3
    assert outcomes["rejected:oversize"] == 1


def test_a_state_no_newer_than_the_last_visualization_counts_for_its_status() -> None:
    bridge, _ = _bridge()
    assert _feed(bridge, "visualization", visualization(0)) == "queued"
    same = state(0, batteryState={"batteryCharge": 40.0})
    assert _feed(bridge, "state", same) == "status_only"  # same stamp: not a duplicate
    assert bridge.state.devices[ROBOT].battery == 40.0
    older = state(1, timestamp="2027-01-15T07:59:59Z")
    assert _feed(bridge, "state", older) == "status_only"
    newer = state(2, timestamp="2027-01-15T08:00:01Z")
    assert _feed(bridge, "state", newer) == "queued"
    _balanced(bridge)


def test_stats_line_shows_lost_for_vda_plants_only() -> None:
    bridge, _ = _bridge()
    _feed(bridge, "visualization", _at(1.0, 1))
    _feed(bridge, "visualization", _at(1.1, 4))
    assert "lost 2 robot-restarts 0" in stats_line(bridge.state)
    assert "lost" not in stats_line(PlantState("HiTech Plant"))


def test_positions_a_robot_sends_after_saying_offline_are_still_posted() -> None:
    bridge, _ = _bridge()
    _feed(bridge, "connection", connection(0, "OFFLINE"))
    # A stale retained OFFLINE and a robot that is back without saying so: its data is real.
    assert _feed(bridge, "visualization", _at(1.0, 1)) == "queued"
    assert _feed(bridge, "visualization", _at(1.1, 2)) == "queued"
    assert bridge.state.counters.outcomes["dropped:offline"] == 0
    assert bridge.state.counters.outcomes["coalesced"] == 1
    _balanced(bridge)


def test_a_flapping_error_is_folded_not_a_line_per_message() -> None:
    bridge, lines = _bridge()
    for header_id in range(20):
        errors = [{"errorType": "bumper", "errorLevel": "WARNING"}] if header_id % 2 else []
        body = state(header_id, errors=errors, timestamp=f"2027-01-15T08:00:{header_id:02d}Z")
        _feed(bridge, "state", body)
    assert len([line for line in lines if "bumper" in line]) == 1
    _balanced(bridge)
