"""A simulated robot's VDA 5050 traffic: `visualization` every report, `state` every few,
`connection` when it comes and goes (retained, as the standard says).

Each robot has its own `headerId` counter per topic. A robot that drops off the
network gets `CONNECTIONBROKEN` (what the broker would send as its last will;
all simulated robots share one MQTT connection, so the simulator says it) and
`ONLINE` when it is back.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dtp_console.config.model import PlantConfig
    from dtp_console.simulator.payloads import InverseAffine, Payload, RobotSnapshot

__all__ = ["DEFAULT_INTERFACE", "MANUFACTURER", "STATE_EVERY", "VdaEncoder", "iso_ms", "retained"]

#: The interface name used when the plant accepts any (`uagv` is the standard's example).
DEFAULT_INTERFACE = "uagv"
#: Manufacturer of invented robot ids (`sim-robotics/agv-004`).
MANUFACTURER = "sim-robotics"
#: One `state` per this many `visualization` reports (the standard: state at least every 30 s).
STATE_EVERY = 5
_VERSION = "2.1.0"


def iso_ms(now_ms: int) -> str:
    """Unix ms as the standard's ISO 8601 UTC text (`2026-01-01T00:00:00.000Z`)."""
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}Z"


def retained(topic: str) -> bool:
    """Whether a simulated message is published retained (VDA 5050 `connection`)."""
    return topic.endswith("/connection")


class VdaEncoder:
    """Topics, payloads and `headerId` counters of one plant's simulated VDA 5050 robots."""

    def __init__(self, plant: PlantConfig, inverse: InverseAffine) -> None:
        cfg = plant.vda5050
        self._prefix = f"{cfg.interface_name or DEFAULT_INTERFACE}/{cfg.major_version}"
        self._inverse = inverse
        self._headers: Counter[tuple[str, str]] = Counter()
        self._reports: Counter[str] = Counter()
        self._online: dict[str, bool] = {}
        self._map_id = next(iter(cfg.map_sectors), "floor-1")

    def topic(self, vendor_id: str, kind: str = "visualization") -> str:
        """`interface/version/manufacturer/serial/kind` of a `manufacturer/serial` id."""
        manufacturer, _, serial = vendor_id.partition("/")
        return f"{self._prefix}/{manufacturer}/{serial or manufacturer}/{kind}"

    def _header(self, vendor_id: str, kind: str, now_ms: int) -> Payload:
        manufacturer, _, serial = vendor_id.partition("/")
        header_id = self._headers[vendor_id, kind]
        self._headers[vendor_id, kind] += 1
        return {
            "headerId": header_id,
            "timestamp": iso_ms(now_ms),
            "version": _VERSION,
            "manufacturer": manufacturer,
            "serialNumber": serial or manufacturer,
        }

    def _position(self, robot: RobotSnapshot) -> Payload:
        x, y = self._inverse.point(robot.x_mm, robot.y_mm)
        return {
            "x": round(x, 4),
            "y": round(y, 4),
            "theta": round(self._inverse.heading(robot.heading), 4),
            "mapId": self._map_id,
            "positionInitialized": True,
            "localizationScore": 0.95,
            "deviationRange": 0.05,
        }

    def presence(self, robot: RobotSnapshot, now_ms: int) -> list[tuple[str, Payload]]:
        """A `connection` message when the robot came or went since its last report."""
        online = robot.state != "disconnected"
        if self._online.get(robot.vendor_id) == online:
            return []
        self._online[robot.vendor_id] = online
        body = self._header(robot.vendor_id, "connection", now_ms)
        body["connectionState"] = "ONLINE" if online else "CONNECTIONBROKEN"
        return [(self.topic(robot.vendor_id, "connection"), body)]

    def visualization(self, robot: RobotSnapshot, now_ms: int) -> tuple[str, Payload]:
        """The robot's position report."""
        body = self._header(robot.vendor_id, "visualization", now_ms)
        body["agvPosition"] = self._position(robot)
        speed = robot.speed_mm_s / 1000.0
        body["velocity"] = {
            "vx": round(speed * math.cos(robot.heading), 3),
            "vy": round(speed * math.sin(robot.heading), 3),
            "omega": 0.0,
        }
        return self.topic(robot.vendor_id), body

    def state(self, robot: RobotSnapshot, now_ms: int) -> list[tuple[str, Payload]]:
        """A `state` message every `STATE_EVERY` reports (the first report included)."""
        count = self._reports[robot.vendor_id]
        self._reports[robot.vendor_id] += 1
        if count % STATE_EVERY:
            return []
        body = self._header(robot.vendor_id, "state", now_ms)
        low = robot.battery < 15
        body.update(
            {
                "orderId": f"trip-{robot.trip_id}" if robot.trip_id is not None else "",
                "orderUpdateId": 0,
                "lastNodeId": "",
                "lastNodeSequenceId": 0,
                "driving": robot.state == "driving",
                "paused": False,
                "operatingMode": "AUTOMATIC",
                "nodeStates": [],
                "edgeStates": [],
                "agvPosition": self._position(robot),
                "actionStates": [],
                "batteryState": {
                    "batteryCharge": round(robot.battery, 1),
                    "charging": robot.state == "charging",
                },
                "errors": (
                    [{"errorType": "batteryLow", "errorLevel": "WARNING", "errorReferences": []}]
                    if low
                    else []
                ),
                "information": [],
                "safetyState": {"eStop": "NONE", "fieldViolation": False},
            }
        )
        return [(self.topic(robot.vendor_id, "state"), body)]
