"""The fault mix: off by default, every kind visible when on, never changing the motion."""

from __future__ import annotations

import itertools
from collections import Counter

import orjson
import pytest

from dtp_console.bridge.parse import Reading, Rejection, parse_ati, parse_hitech
from dtp_console.config.model import PlantConfig
from dtp_console.simulator.amr import AmrFleet
from dtp_console.simulator.config import FAULT_KINDS, PlantSimulatorConfig


def hitech(**sim: object) -> PlantConfig:
    return PlantConfig.model_validate(
        {
            "name": "HiTech Plant",
            "format": "hitech",
            "device_map": {"hitech-amr-001": "tugger-03", "hitech-amr-002": "tugger-04"},
            "twinzo": {"sector_id": 1},
            "simulator": {"robots": 3, "disconnect_probability": 0.0, **sim},
        }
    )


def ati(**sim: object) -> PlantConfig:
    return PlantConfig.model_validate(
        {
            "name": "Old Plant",
            "format": "ati_sherpa",
            "device_map": {"ati_amr_001": "tugger-05-old"},
            "twinzo": {"sector_id": 2},
            "simulator": {"robots": 3, **sim},
        }
    )


def run(fleet: AmrFleet, steps: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for _ in range(steps):
        out.extend(fleet.step(0.5))
    return out


def test_faults_are_off_by_default() -> None:
    assert PlantSimulatorConfig().fault_rate == 0
    fleet = AmrFleet(hitech())
    messages = run(fleet, 2000)
    assert sum(fleet.faults.counts.values()) == 0
    results = [parse_hitech(t, p) for t, p in messages]
    assert all(isinstance(r, Reading) for r in results)
    assert {r.vendor_id for r in results if isinstance(r, Reading)} == set(fleet.robots)
    # No duplicates and no time travel per robot.
    last: dict[str, int] = {}
    for r in results:
        assert isinstance(r, Reading)
        assert r.timestamp_ms is not None
        assert r.timestamp_ms > last.get(r.vendor_id, 0)
        last[r.vendor_id] = r.timestamp_ms


def test_every_fault_kind_shows_up_when_on() -> None:
    fleet = AmrFleet(hitech(fault_rate=0.3))
    messages = run(fleet, 2000)
    assert set(fleet.faults.counts) == set(FAULT_KINDS)
    results = [parse_hitech(t, p) for t, p in messages]
    reasons = Counter(r.reason for r in results if isinstance(r, Rejection))
    assert reasons["invalid_json"] > 0  # malformed, and bare NaN literals
    assert reasons["non_finite"] > 0  # "NaN" as a string
    ids = {r.vendor_id for r in results if isinstance(r, Reading)}
    ghosts = ids - set(fleet.robots)
    assert ghosts
    assert not ghosts & set(fleet.plant.device_map)
    assert any(a == b for a, b in itertools.pairwise(messages))  # duplicates
    # Out of order: a robot's timestamp goes back.
    last: dict[str, int] = {}
    backwards = 0
    for r in results:
        if isinstance(r, Reading) and r.vendor_id in fleet.robots:
            assert r.timestamp_ms is not None
            if r.timestamp_ms < last.get(r.vendor_id, 0):
                backwards += 1
            last[r.vendor_id] = r.timestamp_ms
    assert backwards > 0


def test_ati_faults_parse_into_rejections_not_crashes() -> None:
    fleet = AmrFleet(ati(fault_rate=0.5))
    messages = run(fleet, 500)
    results = [parse_ati(t, p) for t, p in messages]
    reasons = Counter(r.reason for r in results if isinstance(r, Rejection))
    assert reasons["invalid_json"] > 0
    assert reasons["non_finite"] > 0
    ghost_ids = {r.vendor_id for r in results if isinstance(r, Reading)} - set(fleet.robots)
    assert ghost_ids
    assert all(g.startswith("ati_amr_9") for g in ghost_ids)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_only_the_chosen_kinds_are_injected(kind: str) -> None:
    fleet = AmrFleet(hitech(fault_rate=0.5, fault_kinds=[kind]))
    run(fleet, 200)
    assert set(fleet.faults.counts) == {kind}


def test_faults_do_not_change_how_robots_move() -> None:
    clean = AmrFleet(hitech(seed=9))
    faulty = AmrFleet(hitech(seed=9, fault_rate=0.5))
    for _ in range(1000):
        clean.step(0.5)
        faulty.step(0.5)
    assert clean.positions == faulty.positions


def test_held_back_messages_can_be_flushed() -> None:
    fleet = AmrFleet(hitech(fault_rate=1.0, fault_kinds=["out_of_order"], robots=1, unmapped=0))
    assert fleet.step(1.0) == []  # held back, waiting for the robot's next report
    assert fleet.faults.counts["out_of_order"] == 1
    held = fleet.faults.flush()
    assert len(held) == 1
    assert orjson.loads(held[0][1])["device_id"] == "hitech-amr-001"
    assert fleet.faults.flush() == []
