"""Simulated AMRs: a robot state machine and a plant's fleet, stepped by explicit time.

Each robot drives a loop of stations along the aisles, stops at each station,
sometimes idles or drops off the network there, and heads for the nearest
charger when its battery runs low. Time only moves when `step(dt)` is called
and every random choice comes from a `random.Random` seeded from the plant's
seed, so the same seed repeats the same run exactly and tests never sleep.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dtp_console.simulator.config import PlantSimulatorConfig
from dtp_console.simulator.faults import FaultInjector, Message
from dtp_console.simulator.payloads import Codec, RobotSnapshot, RobotState, encode
from dtp_console.simulator.routes import DEFAULT_BOUNDS, FloorBounds, FloorPlan, Point
from dtp_console.simulator.vda5050 import MANUFACTURER

if TYPE_CHECKING:
    from dtp_console.config.model import PlantConfig

__all__ = ["DEFAULT_START_MS", "AmrFleet", "Robot", "robot_ids"]

#: Vendor timestamps of a fleet stepped without wall-clock times (2026-01-01T00:00:00Z).
DEFAULT_START_MS = 1_767_225_600_000
_MAX_PHASES_PER_STEP = 16
_STANDBY_DRAIN = 0.1


class Robot:
    """One simulated AMR in twinzo millimetres."""

    def __init__(
        self,
        vendor_id: str,
        plan: FloorPlan,
        cfg: PlantSimulatorConfig,
        rng: random.Random,
        *,
        pose6: bool = False,
    ) -> None:
        self.vendor_id = vendor_id
        self._plan = plan
        self._cfg = cfg
        self._rng = rng
        self.pose6 = pose6
        self.mode = "Fleet" if rng.random() < 0.3 else "fleet"
        stations = list(plan.stations)
        self._loop: list[Point] = rng.sample(stations, k=min(len(stations), rng.randint(3, 5)))
        self._next = 1 % len(self._loop)
        self.x, self.y = self._loop[0]
        self.heading = 0.0
        self.battery = rng.uniform(45.0, 100.0)
        self.speed_mm_s = 0.0
        self.trip_id = rng.randrange(1000, 9000)
        self.odometer_mm = 0.0
        """Distance driven so far."""
        self.state: RobotState = "station"
        self._path: list[Point] = []
        self._to_charger = False
        # Stationary phases still to go at this spot; staggered so robots don't move in step.
        self._phases: list[tuple[RobotState, float]] = [
            ("station", rng.uniform(0.0, cfg.station_stop_s))
        ]

    def snapshot(self) -> RobotSnapshot:
        """What the robot reports right now."""
        return RobotSnapshot(
            vendor_id=self.vendor_id,
            x_mm=self.x,
            y_mm=self.y,
            heading=self.heading,
            battery=self.battery,
            state=self.state,
            speed_mm_s=self.speed_mm_s,
            trip_id=self.trip_id,
            pose6=self.pose6,
            mode=self.mode,
        )

    def step(self, dt: float) -> None:
        """Advance the robot by `dt` seconds."""
        remaining = dt
        for _ in range(_MAX_PHASES_PER_STEP):
            if remaining <= 0:
                return
            if self.state == "driving":
                remaining = self._drive(remaining)
            elif self.state == "charging":
                remaining = self._charge(remaining)
            else:
                remaining = self._stand(remaining)

    def _drain(self, seconds: float, factor: float = 1.0) -> None:
        used = self._cfg.battery_drain_pct_per_min * factor * seconds / 60.0
        self.battery = max(0.0, self.battery - used)

    def _drive(self, remaining: float) -> float:
        speed = self._cfg.speed_mm_s
        while self._path and remaining > 0:
            tx, ty = self._path[0]
            dx, dy = tx - self.x, ty - self.y
            dist = math.hypot(dx, dy)
            if dist > 0:
                self.heading = math.atan2(dy, dx)
            reach = speed * remaining
            if reach >= dist:
                self.x, self.y = tx, ty
                self._path.pop(0)
                used = dist / speed
            else:
                self.x += dx / dist * reach
                self.y += dy / dist * reach
                dist, used = reach, remaining
            self.odometer_mm += dist
            self._drain(used)
            remaining -= used
        if not self._path:
            self._arrive()
        return remaining

    def _charge(self, remaining: float) -> float:
        per_s = self._cfg.charge_pct_per_min / 60.0
        need = max(0.0, self._cfg.charge_until_pct - self.battery) / per_s
        if need > remaining:
            self.battery += per_s * remaining
            return 0.0
        self.battery = max(self.battery, self._cfg.charge_until_pct)
        self._depart()
        return remaining - need

    def _stand(self, remaining: float) -> float:
        if not self._phases:
            self._depart()
            return remaining
        state, left = self._phases[0]
        self.state = state
        used = min(left, remaining)
        self._drain(used, _STANDBY_DRAIN)
        if left > remaining:
            self._phases[0] = (state, left - remaining)
            return 0.0
        self._phases.pop(0)
        if self._phases:
            self.state = self._phases[0][0]
        else:
            self._depart()
        return remaining - used

    def _arrive(self) -> None:
        self.speed_mm_s = 0.0
        if self._to_charger:
            self._to_charger = False
            self.state = "charging"
            return
        cfg, rng = self._cfg, self._rng
        self._phases = [("station", cfg.station_stop_s)]
        roll = rng.random()
        if roll < cfg.disconnect_probability:
            self._phases.append(("disconnected", cfg.disconnect_s * rng.uniform(0.5, 1.0)))
        elif roll < cfg.disconnect_probability + cfg.idle_probability:
            self._phases.append(("idle", cfg.idle_s * rng.uniform(0.5, 1.0)))
        self.state = "station"

    def _depart(self) -> None:
        here = (self.x, self.y)
        if self.battery < self._cfg.charge_below_pct:
            goal = self._plan.nearest_charger(here)
            self._to_charger = True
        else:
            goal = self._loop[self._next]
            self._next = (self._next + 1) % len(self._loop)
            self.trip_id += 1
        self._path = self._plan.path(here, goal)
        self.state = "driving"
        self.speed_mm_s = self._cfg.speed_mm_s
        if not self._path:
            self._arrive()


#: Invented robot ids per format (VDA 5050 ids are `manufacturer/serialNumber`).
_ID_PREFIX = {"ati_sherpa": "ati_amr_", "hitech": "hitech-amr-", "vda5050": f"{MANUFACTURER}/agv-"}


def robot_ids(plant: PlantConfig, cfg: PlantSimulatorConfig) -> list[str]:
    """The fleet's vendor ids: mapped ones from the device map first, then invented ones."""
    unmapped = min(cfg.unmapped, cfg.robots)
    ids = list(plant.device_map)[: cfg.robots - unmapped]
    prefix = _ID_PREFIX.get(plant.format, "amr-")
    number = 1
    while len(ids) < cfg.robots:
        candidate = f"{prefix}{number:03d}"
        if candidate not in plant.device_map and candidate not in ids:
            ids.append(candidate)
        number += 1
    return ids


def _bounds(plant: PlantConfig) -> FloorBounds:
    b = plant.bounds
    return DEFAULT_BOUNDS if b is None else FloorBounds(b.x_min, b.x_max, b.y_min, b.y_max)


class AmrFleet:
    """A plant's simulated robots and the vendor messages they send.

    `step(dt)` advances every robot and returns the messages that fell due in
    that step, each robot at `rate_hz` with its own phase offset.
    """

    def __init__(
        self,
        plant: PlantConfig,
        sim_cfg: PlantSimulatorConfig | None = None,
        *,
        start_ms: int = DEFAULT_START_MS,
    ) -> None:
        cfg = sim_cfg or plant.simulator or PlantSimulatorConfig()
        self.plant = plant
        self.config = cfg
        self.plan = FloorPlan.for_bounds(_bounds(plant))
        self.codec = Codec(plant)
        self._start_ms = start_ms
        self._period = 1.0 / cfg.rate_hz
        self.time_s = 0.0
        """Simulated seconds since the start."""
        rng = random.Random(cfg.seed)  # noqa: S311 - simulation, not security
        self.robots: dict[str, Robot] = {}
        """Robots by vendor id; `x`, `y` are twinzo millimetres."""
        self._due: dict[str, float] = {}
        for index, vendor_id in enumerate(robot_ids(plant, cfg)):
            robot_rng = random.Random(rng.getrandbits(64))  # noqa: S311
            pose6 = cfg.pose_shape == "6" or (cfg.pose_shape == "mixed" and index % 2 == 1)
            self.robots[vendor_id] = Robot(vendor_id, self.plan, cfg, robot_rng, pose6=pose6)
            self._due[vendor_id] = rng.uniform(0.0, self._period)
        self.faults = FaultInjector(
            self.codec,
            cfg.fault_rate,
            cfg.fault_kinds,
            random.Random(rng.getrandbits(64)),  # noqa: S311
            known_ids={*self.robots, *plant.device_map},
        )

    @property
    def positions(self) -> Mapping[str, tuple[float, float]]:
        """Every robot's position in twinzo millimetres."""
        return {vid: (robot.x, robot.y) for vid, robot in self.robots.items()}

    def step(self, dt_s: float, now_ms: int | None = None) -> list[Message]:
        """Advance by `dt_s` seconds; the (topic, payload) messages due in that step.

        `now_ms` is the vendor timestamp to use (wall clock in a live run); by
        default it is derived from simulated time, so output is reproducible.
        """
        if dt_s < 0:
            msg = f"dt must not be negative, got {dt_s}"
            raise ValueError(msg)
        self.time_s += dt_s
        stamp = self._start_ms + round(self.time_s * 1000) if now_ms is None else now_ms
        out: list[Message] = []
        for vendor_id, robot in self.robots.items():
            robot.step(dt_s)
            due = self._due[vendor_id]
            if due <= self.time_s:
                # One message per robot per step: reports missed by a long step would all
                # carry this step's position and timestamp (duplicates), so they are skipped.
                snapshot = robot.snapshot()
                companions = self.codec.companions(snapshot, stamp)
                encoded = self.codec.encode(snapshot, stamp)
                # VDA 5050: `connection` goes before the position report, `state` after.
                out.extend((t, encode(p)) for t, p in companions if t.endswith("/connection"))
                if encoded is not None:
                    out.extend(self.faults.apply(vendor_id, *encoded))
                out.extend((t, encode(p)) for t, p in companions if not t.endswith("/connection"))
                due += self._period
            self._due[vendor_id] = due if due > self.time_s else self.time_s + self._period
        return out
