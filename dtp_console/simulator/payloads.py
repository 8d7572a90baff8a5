"""Vendor payloads of a simulated robot: twinzo millimetres → the vendor's topic and JSON.

The plant's vendor → twinzo affine is applied in reverse here, so that once the
bridge applies it forward the robot lands where the simulator put it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from dtp_console.simulator.vda5050 import VdaEncoder

if TYPE_CHECKING:
    from dtp_console.config.model import Affine, PlantConfig

__all__ = [
    "ATI_TOPIC",
    "Codec",
    "InverseAffine",
    "Payload",
    "RobotSnapshot",
    "RobotState",
    "codec_for",
    "encode",
]

ATI_TOPIC = "ati_fm/sherpa/status"
RobotState = Literal["driving", "station", "idle", "charging", "disconnected"]
Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RobotSnapshot:
    """What a robot reports at one instant (twinzo frame)."""

    vendor_id: str
    x_mm: float
    y_mm: float
    heading: float
    """Direction of travel in the twinzo frame (radians)."""
    battery: float
    state: RobotState
    speed_mm_s: float
    trip_id: int | None
    pose6: bool
    """ATI: report `[x, y, z, roll, pitch, yaw]` instead of `[x, y, heading]`."""
    mode: str
    """ATI `mode` while connected (`fleet` or `Fleet`)."""


class InverseAffine:
    """twinzo millimetres → vendor units: the inverse of the plant's affine.

    The affine is `X = A·x + B·y + TX`, `Y = C·x + D·y + TY` (vendor → twinzo).
    """

    def __init__(self, affine: Affine) -> None:
        self._a, self._b, self._c, self._d = affine.a, affine.b, affine.c, affine.d
        self._tx, self._ty = affine.tx, affine.ty
        self._det = affine.a * affine.d - affine.b * affine.c

    def point(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """The vendor coordinates that the forward affine maps onto (x_mm, y_mm)."""
        dx, dy = x_mm - self._tx, y_mm - self._ty
        return (self._d * dx - self._b * dy) / self._det, (self._a * dy - self._c * dx) / self._det

    def heading(self, heading: float) -> float:
        """A direction in the twinzo frame as an angle in the vendor frame (radians)."""
        ux, uy = math.cos(heading), math.sin(heading)
        vx = (self._d * ux - self._b * uy) / self._det
        vy = (self._a * uy - self._c * ux) / self._det
        return math.atan2(vy, vx)


def _topic(template: str, vendor_id: str, tail: str) -> str:
    levels = template.split("/")
    out = [vendor_id if level == "+" else level for level in levels]
    if out and out[-1] == "#":
        out[-1:] = [vendor_id, tail] if tail else [vendor_id]
    return "/".join(out)


def _set_path(data: Payload, path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return
        node = child
    node[parts[-1]] = value


class Codec:
    """Encodes snapshots in one plant's vendor format (and edits payloads for faults)."""

    def __init__(self, plant: PlantConfig) -> None:
        self.format = plant.format
        self._plant = plant
        self._inverse = InverseAffine(plant.affine)
        self._template = plant.topics[0]
        self._sector = plant.twinzo.sector_id
        self.id_field = {"ati_sherpa": "sherpa_name", "hitech": "device_id"}.get(
            plant.format, plant.generic.id
        )
        self._vda = VdaEncoder(plant, self._inverse) if plant.format == "vda5050" else None

    def topic(self, vendor_id: str) -> str:
        """The topic a robot publishes on."""
        if self._vda is not None:
            return self._vda.topic(vendor_id)
        if self.format == "ati_sherpa":
            wild = "+" in self._template or "#" in self._template
            return ATI_TOPIC if wild else self._template
        return _topic(self._template, vendor_id, "position" if self.format == "hitech" else "")

    def encode(self, robot: RobotSnapshot, now_ms: int) -> tuple[str, Payload] | None:
        """Topic and JSON object of one report; None when the robot publishes nothing."""
        if self.format == "ati_sherpa":
            return self.topic(robot.vendor_id), self._ati(robot)
        if robot.state == "disconnected":
            return None  # the robot itself is off the network: silence
        if self._vda is not None:
            return self._vda.visualization(robot, now_ms)
        if self.format == "hitech":
            return self.topic(robot.vendor_id), self._hitech(robot, now_ms)
        return self.topic(robot.vendor_id), self._generic(robot, now_ms)

    def _ati(self, robot: RobotSnapshot) -> Payload:
        x, y = self._inverse.point(robot.x_mm, robot.y_mm)
        heading = round(self._inverse.heading(robot.heading), 4)
        pose: list[float]
        if robot.pose6:
            pose = [round(x, 6), round(y, 6), 0.0, 0.0, 0.0, heading]
        else:
            pose = [round(x, 6), round(y, 6), heading]
        connected = robot.state != "disconnected"
        return {
            "sherpa_name": robot.vendor_id,
            "mode": robot.mode if connected else "disconnected",
            "pose": pose if connected else [],
            "battery_status": round(robot.battery, 1),
            "error": "" if connected else "lost connection to fleet manager",
            "disabled": False,
            "trip_id": robot.trip_id if robot.state == "driving" else None,
        }

    def _hitech(self, robot: RobotSnapshot, now_ms: int) -> Payload:
        x, y = self._inverse.point(robot.x_mm, robot.y_mm)
        status = {"driving": "moving", "station": "at_station"}.get(robot.state, robot.state)
        return {
            "device_id": robot.vendor_id,
            "timestamp": now_ms,
            "position": {"x": round(x, 2), "y": round(y, 2), "z": 0.0},
            "battery": round(robot.battery),
            "status": status,
            "speed": round(robot.speed_mm_s),
            "sector_id": self._sector,
        }

    def _generic(self, robot: RobotSnapshot, now_ms: int) -> Payload:
        fields = self._plant.generic
        x, y = self._inverse.point(robot.x_mm, robot.y_mm)
        data: Payload = {}
        if fields.id_topic_level is None:
            _set_path(data, fields.id, robot.vendor_id)
        _set_path(data, fields.x, round(x, 6))
        _set_path(data, fields.y, round(y, 6))
        if fields.z:
            _set_path(data, fields.z, 0.0)
        if fields.battery:
            _set_path(data, fields.battery, round(robot.battery, 1))
        if fields.timestamp:
            stamp = now_ms / 1000 if fields.timestamp_unit == "s" else now_ms
            _set_path(data, fields.timestamp, stamp)
        return data

    def companions(self, robot: RobotSnapshot, now_ms: int) -> list[tuple[str, Payload]]:
        """Messages a robot sends besides its position report: VDA 5050 `connection`
        (before the report) and `state` (after); none in the other formats."""
        if self._vda is None:
            return []
        out = self._vda.presence(robot, now_ms)
        if robot.state != "disconnected":
            out += self._vda.state(robot, now_ms)
        return out

    def with_id(self, payload: Payload, vendor_id: str) -> tuple[str, Payload]:
        """A copy of `payload` as if sent by another robot, and that robot's topic."""
        copy = orjson.loads(orjson.dumps(payload))
        if self._vda is not None:
            manufacturer, _, serial = vendor_id.partition("/")
            copy["manufacturer"], copy["serialNumber"] = manufacturer, serial or manufacturer
            return self.topic(vendor_id), copy
        if self.format != "generic" or self._plant.generic.id_topic_level is None:
            _set_path(copy, self.id_field, vendor_id)
        return self.topic(vendor_id), copy

    def with_nan(self, payload: Payload, *, as_text: bool) -> Payload:
        """A copy of `payload` whose x is NaN (a bare `NaN` literal, or the string `"NaN"`)."""
        copy: Payload = orjson.loads(orjson.dumps(payload))
        nan: Any = "NaN" if as_text else math.nan
        if self.format == "ati_sherpa":
            copy["pose"] = [nan, *copy["pose"][1:]] if copy.get("pose") else [nan, 0.0, 0.0]
        elif self.format == "hitech":
            copy["position"]["x"] = nan
        elif self._vda is not None:
            copy["agvPosition"]["x"] = nan
        else:
            _set_path(copy, self._plant.generic.x, nan)
        return copy


def encode(payload: Payload, *, allow_nan: bool = False) -> bytes:
    """Compact JSON bytes; with `allow_nan`, NaN is written as the bare `NaN` literal
    (as Python's `json` module sends it) instead of orjson's `null`."""
    if allow_nan:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return orjson.dumps(payload)


def codec_for(plant: PlantConfig) -> Codec:
    """The codec of a plant's payload format."""
    return Codec(plant)
