"""Simulated vendor payloads parse with the bridge's own parsers and land where the robot is."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from dtp_console.bridge.formats import parser_for
from dtp_console.bridge.geometry import apply_affine
from dtp_console.bridge.parse import Reading, Rejection
from dtp_console.config.model import Affine, PlantConfig
from dtp_console.simulator.amr import AmrFleet
from dtp_console.simulator.payloads import InverseAffine

REAL_AFFINE = {"A": 999.74, "B": 22.88, "C": 22.88, "D": -999.74, "TX": 95598.8, "TY": 167357.6}


def plant(fmt: str, affine: dict[str, float] | None = None, **extra: object) -> PlantConfig:
    ids = {"ati_sherpa": "ati_amr_", "hitech": "hitech-amr-", "generic": "amr-"}[fmt]
    data: dict[str, object] = {
        "name": f"{fmt} plant",
        "format": fmt,
        "device_map": {f"{ids}001": "tugger-01", f"{ids}002": "tugger-02"},
        "twinzo": {"sector_id": 7},
        "affine": affine or {},
        **extra,
    }
    return PlantConfig.model_validate(data)


def check_positions(p: PlantConfig, steps: int = 2000) -> int:
    """Every message parses; the forward affine puts it within 1 mm of its robot."""
    fleet = AmrFleet(p)
    parse = parser_for(p)
    readings = 0
    for _ in range(steps):
        for topic, payload in fleet.step(0.25):
            result = parse(topic, payload)
            if isinstance(result, Rejection):
                assert result.reason == "not_in_fleet", result  # a disconnected ATI robot
                assert orjson.loads(payload)["mode"] == "disconnected"
                continue
            assert isinstance(result, Reading), result
            robot = fleet.robots[result.vendor_id]
            x, y = apply_affine(p.affine, result.x, result.y)
            assert math.hypot(x - robot.x, y - robot.y) < 1.0
            assert result.battery is not None
            assert abs(result.battery - robot.battery) <= 0.5
            readings += 1
    return readings


@pytest.mark.parametrize("shape", ["3", "6", "mixed"])
def test_ati_messages_parse_and_land_on_the_robot(shape: str) -> None:
    p = plant("ati_sherpa", REAL_AFFINE, simulator={"robots": 4, "pose_shape": shape})
    assert check_positions(p) > 1000


def test_ati_pose_shapes() -> None:
    lengths: dict[str, set[int]] = {}
    for shape in ("3", "6", "mixed"):
        p = plant("ati_sherpa", REAL_AFFINE, simulator={"robots": 4, "pose_shape": shape})
        fleet = AmrFleet(p)
        lengths[shape] = set()
        for _ in range(40):
            for _topic, payload in fleet.step(0.5):
                data = orjson.loads(payload)
                if data["mode"] != "disconnected":
                    lengths[shape].add(len(data["pose"]))
    assert lengths == {"3": {3}, "6": {6}, "mixed": {3, 6}}


def test_ati_payload_fields() -> None:
    p = plant("ati_sherpa", REAL_AFFINE, simulator={"robots": 2})
    topic, payload = next(m for m in _messages(p))
    data = orjson.loads(payload)
    assert topic == "ati_fm/sherpa/status"
    assert set(data) == {
        "sherpa_name",
        "mode",
        "pose",
        "battery_status",
        "error",
        "disabled",
        "trip_id",
    }
    assert data["mode"] in {"fleet", "Fleet"}
    assert data["disabled"] is False
    assert data["error"] == ""


def test_hitech_messages_parse_and_land_on_the_robot() -> None:
    p = plant("hitech", simulator={"robots": 4})
    assert check_positions(p) > 1000


def test_hitech_payload_fields() -> None:
    p = plant("hitech", simulator={"robots": 2, "unmapped": 0})
    topic, payload = next(m for m in _messages(p))
    data = orjson.loads(payload)
    assert topic == f"hitech/amr/{data['device_id']}/position"
    assert set(data) == {
        "device_id",
        "timestamp",
        "position",
        "battery",
        "status",
        "speed",
        "sector_id",
    }
    assert set(data["position"]) == {"x", "y", "z"}
    assert data["sector_id"] == 7
    assert isinstance(data["timestamp"], int)
    assert data["timestamp"] > 1_700_000_000_000  # unix milliseconds
    assert data["status"] in {"moving", "at_station", "idle", "charging"}


def test_hitech_timestamps_follow_wall_clock_when_given() -> None:
    fleet = AmrFleet(plant("hitech", simulator={"robots": 1, "unmapped": 0}))
    messages = fleet.step(2.0, now_ms=1_234)
    assert messages
    assert orjson.loads(messages[0][1])["timestamp"] == 1_234


def test_hitech_topic_follows_the_configured_subscription() -> None:
    p = plant(
        "hitech",
        broker={"topics": ["site9/hitech/amr/+/position"]},
        simulator={"robots": 1, "unmapped": 0},
    )
    topic, _ = next(m for m in _messages(p))
    assert topic == "site9/hitech/amr/hitech-amr-001/position"


def test_ati_topic_follows_a_configured_literal_topic() -> None:
    p = plant("ati_sherpa", broker={"topics": ["test/ati/status"]}, simulator={"robots": 1})
    topic, _ = next(m for m in _messages(p))
    assert topic == "test/ati/status"


def test_generic_messages_parse_and_land_on_the_robot() -> None:
    p = plant(
        "generic",
        {"A": 1000.0, "D": 1000.0, "TX": 5000.0},
        generic={"id": "robot.name", "x": "pos.x", "y": "pos.y", "battery": "batt"},
        broker={"topics": ["fleet/+/pos"]},
        simulator={"robots": 3},
    )
    assert check_positions(p, steps=500) > 100


def _messages(p: PlantConfig) -> list[tuple[str, bytes]]:
    fleet = AmrFleet(p)
    out: list[tuple[str, bytes]] = []
    for _ in range(20):
        out.extend(fleet.step(0.5))
    return out


@pytest.mark.parametrize(
    "affine", [REAL_AFFINE, {}, {"A": 0.0, "B": 1.0, "C": -1.0, "D": 0.0, "TX": 7.0, "TY": -3.0}]
)
def test_inverse_affine_round_trips(affine: dict[str, float]) -> None:
    forward = Affine.model_validate(affine)
    inverse = InverseAffine(forward)
    rng = random.Random(5)
    for _ in range(200):
        x, y = rng.uniform(-1e6, 1e6), rng.uniform(-1e6, 1e6)
        vx, vy = inverse.point(x, y)
        fx, fy = apply_affine(forward, vx, vy)
        assert math.hypot(fx - x, fy - y) < 1e-6


def test_heading_is_turned_into_the_vendor_frame() -> None:
    inverse = InverseAffine(Affine.model_validate(REAL_AFFINE))
    # The real affine flips Y, so driving +X on the floor is +x for the vendor (with the
    # 1.3° rotation) and driving +Y on the floor is −y for the vendor.
    assert inverse.heading(0.0) == pytest.approx(math.radians(1.31), abs=0.01)
    assert inverse.heading(math.pi / 2) == pytest.approx(-math.pi / 2 + 0.0229, abs=0.01)
