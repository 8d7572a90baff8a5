"""The simulated fleet: routes inside the floor, repeatable runs, battery, disconnects."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import orjson
import pytest

from dtp_console.config.model import PlantConfig
from dtp_console.simulator.amr import AmrFleet, robot_ids
from dtp_console.simulator.config import PlantSimulatorConfig
from dtp_console.simulator.routes import DEFAULT_BOUNDS, FloorBounds, FloorPlan

REAL_AFFINE = {"A": 999.74, "B": 22.88, "C": 22.88, "D": -999.74, "TX": 95598.8, "TY": 167357.6}


def ati_plant(**sim: object) -> PlantConfig:
    return PlantConfig.model_validate(
        {
            "name": "Old Plant",
            "format": "ati_sherpa",
            "device_map": {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"},
            "twinzo": {"sector_id": 2},
            "affine": REAL_AFFINE,
            "bounds": {"x_min": 0, "x_max": 265_000, "y_min": 46_000, "y_max": 218_000},
            "simulator": {"robots": 4, **sim},
        }
    )


def hitech_plant(**sim: object) -> PlantConfig:
    return PlantConfig.model_validate(
        {
            "name": "HiTech Plant",
            "format": "hitech",
            "device_map": {"hitech-amr-001": "tugger-03", "hitech-amr-002": "tugger-04"},
            "twinzo": {"sector_id": 1},
            "simulator": {"robots": 3, **sim},
        }
    )


def run(fleet: AmrFleet, steps: int, dt: float = 0.5) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for _ in range(steps):
        out.extend(fleet.step(dt))
    return out


def test_ids_are_mapped_first_then_invented_unmapped() -> None:
    plant = ati_plant(robots=4, unmapped=1)
    ids = robot_ids(plant, plant.simulator or PlantSimulatorConfig())
    assert ids[:2] == ["ati_amr_001", "ati_amr_002"]
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert all(vid not in plant.device_map for vid in ids[2:])


def test_unmapped_count_is_kept_when_the_map_is_larger() -> None:
    plant = ati_plant(robots=2, unmapped=1)
    ids = robot_ids(plant, plant.simulator or PlantSimulatorConfig())
    assert ids[0] == "ati_amr_001"
    assert ids[1] not in plant.device_map


def test_no_robots_no_messages() -> None:
    fleet = AmrFleet(ati_plant(robots=0))
    assert run(fleet, 10) == []


@pytest.mark.parametrize("make", [ati_plant, hitech_plant])
def test_fleet_stays_within_bounds(make: Callable[..., PlantConfig]) -> None:
    plant = make(robots=6, idle_probability=0.2, disconnect_probability=0.1)
    fleet = AmrFleet(plant)
    b = plant.bounds
    bounds = DEFAULT_BOUNDS if b is None else FloorBounds(b.x_min, b.x_max, b.y_min, b.y_max)
    for _ in range(10_000):
        fleet.step(0.5)
        for x, y in fleet.positions.values():
            assert bounds.contains(x, y), (x, y)
    moved = sum(robot.odometer_mm for robot in fleet.robots.values())
    assert moved > 1_000_000  # they really drove, more than a kilometre between them


def test_same_seed_repeats_exactly_and_another_seed_differs() -> None:
    first = run(AmrFleet(ati_plant(seed=42, fault_rate=0.1)), 600)
    again = run(AmrFleet(ati_plant(seed=42, fault_rate=0.1)), 600)
    other = run(AmrFleet(ati_plant(seed=43, fault_rate=0.1)), 600)
    assert first
    assert first == again
    assert first != other


def test_each_robot_publishes_at_its_rate_with_its_own_phase() -> None:
    fleet = AmrFleet(hitech_plant(robots=4, rate_hz=2.0, disconnect_probability=0.0))
    messages = run(fleet, 1000, dt=0.1)  # 100 s
    per_topic = Counter(topic for topic, _ in messages)
    assert set(per_topic.values()) <= {199, 200, 201}
    assert len(per_topic) == 4
    # In the first half second every robot speaks once, at different instants.
    fleet = AmrFleet(hitech_plant(robots=4, rate_hz=2.0))
    first_step: list[int] = []
    for step in range(50):
        if fleet.step(0.01):
            first_step.append(step)
    assert len(set(first_step)) > 1


def test_long_steps_skip_rather_than_burst() -> None:
    fleet = AmrFleet(hitech_plant(robots=2, rate_hz=10.0))
    assert len(fleet.step(60.0)) <= 2 * 3


def test_battery_drains_while_moving_and_recovers_while_charging() -> None:
    plant = hitech_plant(
        robots=1,
        unmapped=0,
        battery_drain_pct_per_min=30.0,
        charge_pct_per_min=60.0,
        idle_probability=0.0,
        disconnect_probability=0.0,
    )
    fleet = AmrFleet(plant)
    robot = next(iter(fleet.robots.values()))
    drained = charged = 0
    seen: set[str] = set()
    for _ in range(20_000):
        before, state = robot.battery, robot.state
        fleet.step(0.1)
        if state == robot.state == "driving" and robot.battery < before:
            drained += 1
        if state == robot.state == "charging":
            assert robot.battery > before
            charged += 1
        if state == "driving" and robot.state == "driving":
            assert robot.battery <= before
        seen.add(robot.state)
    assert drained > 100
    assert charged > 100
    assert {"driving", "station", "charging"} <= seen
    assert 0.0 <= robot.battery <= 100.0


def test_low_battery_goes_to_a_charger() -> None:
    plant = hitech_plant(robots=1, unmapped=0, battery_drain_pct_per_min=60.0)
    fleet = AmrFleet(plant)
    robot = next(iter(fleet.robots.values()))
    for _ in range(50_000):
        fleet.step(0.1)
        if robot.state == "charging":
            break
    assert robot.state == "charging"
    assert (robot.x, robot.y) in fleet.plan.chargers


def test_idle_and_disconnects_happen_and_disconnected_robots_say_so() -> None:
    plant = ati_plant(robots=3, idle_probability=0.4, disconnect_probability=0.4)
    fleet = AmrFleet(plant)
    states: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for _ in range(4000):
        for _topic, payload in fleet.step(0.5):
            modes[orjson.loads(payload)["mode"]] += 1
        states.update(robot.state for robot in fleet.robots.values())
    assert states["idle"] > 0
    assert states["disconnected"] > 0
    assert modes["disconnected"] > 0
    assert modes["fleet"] + modes["Fleet"] > modes["disconnected"]


def test_disconnected_hitech_robots_fall_silent() -> None:
    plant = hitech_plant(robots=1, unmapped=0, disconnect_probability=1.0, disconnect_s=30.0)
    fleet = AmrFleet(plant)
    robot = next(iter(fleet.robots.values()))
    silent = 0
    for _ in range(20_000):
        messages = fleet.step(0.1)
        if robot.state == "disconnected":
            assert messages == []
            silent += 1
    assert silent > 100


def test_negative_step_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        AmrFleet(hitech_plant()).step(-1.0)


def test_floor_plan_paths_follow_the_aisles() -> None:
    plan = FloorPlan.for_bounds(FloorBounds(0, 265_000, 46_000, 218_000))
    assert 3 <= len(plan.xs) <= 12
    assert 2 <= len(plan.ys) <= 6
    crossings = [*plan.stations, *plan.chargers]
    assert all(plan.bounds.contains(x, y) for x, y in crossings)
    for start in crossings[:6]:
        for goal in crossings[-6:]:
            here = start
            for point in plan.path(start, goal):
                assert here[0] == point[0] or here[1] == point[1]  # straight along an aisle
                here = point
            assert here == goal


def test_tiny_floor_still_has_a_grid() -> None:
    plan = FloorPlan.for_bounds(FloorBounds(0, 1000, 0, 500))
    assert len(plan.xs) == 3
    assert len(plan.ys) == 2
    assert all(plan.bounds.contains(x, y) for x, y in plan.stations)
