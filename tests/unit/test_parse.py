"""Payload parsers: every accepted shape and every rejection, with a reason."""

from __future__ import annotations

import orjson
import pytest

from dtp_console.bridge.parse import (
    Reading,
    Rejection,
    StatusOnly,
    parse_ati,
    parse_generic,
    parse_hitech,
)
from dtp_console.config.model import GenericFields


def _ati(**fields: object) -> bytes:
    body: dict[str, object] = {
        "sherpa_name": "ati_amr_001",
        "mode": "fleet",
        "pose": [1.5, -2.0, 0.3],
    }
    body.update(fields)
    return orjson.dumps(body)


@pytest.mark.parametrize("mode", ["fleet", "Fleet", "FLEET", " fleet "])
def test_ati_mode_any_case(mode: str) -> None:
    result = parse_ati("ati_fm/sherpa/status", _ati(mode=mode, battery_status=95.0))
    assert result == Reading("ati_amr_001", 1.5, -2.0, 0.0, 95.0, None)


def test_ati_six_value_pose_takes_z() -> None:
    result = parse_ati("t", _ati(pose=[10.0, 20.0, 0.5, 0.0, 0.0, 1.57]))
    assert isinstance(result, Reading)
    assert (result.x, result.y, result.z) == (10.0, 20.0, 0.5)


def test_ati_numeric_strings_are_numbers() -> None:
    result = parse_ati("t", _ati(pose=["1.25", "2", "0"]))
    assert isinstance(result, Reading)
    assert (result.x, result.y) == (1.25, 2.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (_ati(sherpa_name=None), "missing_id"),
        (_ati(sherpa_name=""), "missing_id"),
        (_ati(sherpa_name=["x"]), "missing_id"),
        (_ati(mode="disconnected"), "not_in_fleet"),
        (_ati(mode=None), "not_in_fleet"),
        (_ati(disabled=True), "disabled"),
        (_ati(pose=None), "no_pose"),
        (_ati(pose=[]), "no_pose"),
        (_ati(pose=[1.0, 2.0]), "bad_pose"),
        (_ati(pose=[1, 2, 3, 4]), "bad_pose"),
        (_ati(pose={"x": 1}), "bad_pose"),
        (_ati(pose=["north", 2, 0]), "wrong_type"),
        (_ati(pose=[True, 2, 0]), "wrong_type"),
        (_ati(pose=[None, 2, 0]), "wrong_type"),
        (_ati(pose=["nan", 2, 0]), "non_finite"),
        (_ati(pose=["inf", 2, 0]), "non_finite"),
        (_ati(pose=["1e400", 2, 0]), "non_finite"),
    ],
)
def test_ati_rejections_have_reasons(payload: bytes, reason: str) -> None:
    result = parse_ati("ati_fm/sherpa/status", payload)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail


def test_ati_bad_battery_is_dropped_not_fatal() -> None:
    result = parse_ati("t", _ati(battery_status="low"))
    assert isinstance(result, Reading)
    assert result.battery is None
    assert isinstance(r := parse_ati("t", _ati(battery_status=140)), Reading)
    assert r.battery is None


def _hitech(**fields: object) -> bytes:
    body: dict[str, object] = {
        "device_id": "hitech-amr-001",
        "timestamp": 1_700_000_000_000,
        "position": {"x": 1200, "y": 3400, "z": 0},
        "battery": 85,
        "status": "moving",
        "speed": 500,
        "sector_id": 1,
    }
    body.update(fields)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def test_hitech_nested_position() -> None:
    result = parse_hitech("hitech/amr/hitech-amr-001/position", _hitech())
    assert result == Reading("hitech-amr-001", 1200.0, 3400.0, 0.0, 85.0, 1_700_000_000_000, "ms")


def test_hitech_flat_xyz_and_alternative_ids() -> None:
    flat = _hitech(position=..., device_id=..., amr_id="amr-7", x=5, y=6, z=7)
    result = parse_hitech("hitech/amr/amr-7/position", flat)
    assert result == Reading("amr-7", 5.0, 6.0, 7.0, 85.0, 1_700_000_000_000, "ms")
    by_id = parse_hitech("x", _hitech(device_id=..., id="amr-8"))
    assert isinstance(by_id, Reading)
    assert by_id.vendor_id == "amr-8"


def test_hitech_id_from_topic_when_payload_has_none() -> None:
    result = parse_hitech("hitech/amr/amr-9/position", _hitech(device_id=...))
    assert isinstance(result, Reading)
    assert result.vendor_id == "amr-9"


def test_hitech_battery_message_is_status_only() -> None:
    result = parse_hitech("hitech/amr/amr-1/battery", b'{"device_id": "amr-1", "battery": 42}')
    assert result == StatusOnly("amr-1", 42.0, None)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_hitech(device_id=...), "missing_id"),
        (_hitech(position={"x": 1}), "missing_position"),
        (_hitech(position=[1, 2]), "wrong_type"),
        (_hitech(position={"x": "a", "y": 2}), "wrong_type"),
        (_hitech(position={"x": 1, "y": "NaN"}), "non_finite"),
        (_hitech(timestamp="yesterday"), "wrong_type"),
        (b"{", "invalid_json"),
    ],
)
def test_hitech_rejections(payload: bytes, reason: str) -> None:
    result = parse_hitech("other/topic", payload)
    assert isinstance(result, Rejection)
    assert result.reason == reason


def test_generic_paths_and_topic_id() -> None:
    fields = GenericFields(
        id="meta.name",
        x="data.pos.0",
        y="data.pos.1",
        battery="data.bat",
        timestamp="t",
        timestamp_unit="s",
    )
    parse = parse_generic(fields)
    payload = orjson.dumps({"meta": {"name": "r1"}, "data": {"pos": [1, 2], "bat": 50}, "t": 10})
    assert parse("any", payload) == Reading("r1", 1.0, 2.0, 0.0, 50.0, 10_000, "s")
    by_topic = parse_generic(GenericFields(id_topic_level=1))
    result = by_topic("fleet/r2/pos", b'{"x": 1, "y": 2}')
    assert isinstance(result, Reading)
    assert result.vendor_id == "r2"
    missing = parse("any", b'{"meta": {"name": "r1"}}')
    assert isinstance(missing, Rejection)
    assert missing.reason == "missing_position"
    assert missing.vendor_id == "r1"


def test_overlong_vendor_id_is_refused() -> None:
    result = parse_ati("t", _ati(sherpa_name="x" * 5000))
    assert isinstance(result, Rejection)
    assert result.reason == "missing_id"
    assert "5000 characters" in result.detail
    assert len(result.detail) < 100
