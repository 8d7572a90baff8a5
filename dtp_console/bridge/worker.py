"""One plant's bridge: MQTT intake → parse → device map → affine → movement → outbox → twinzo.

`handle()` is the whole intake path: synchronous, no I/O, never raises, and
gives every message exactly one outcome or a place in the outbox. Posting is
the `Poster`'s job in its own task. The device map and the affine can be
replaced while the bridge runs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping

from dtp_console.bridge.geometry import apply_affine, moved
from dtp_console.bridge.mqtt import run_source
from dtp_console.bridge.outbox import Location, Outbox
from dtp_console.bridge.parse import Rejection, StatusOnly, parser_for
from dtp_console.bridge.poster import Poster
from dtp_console.config.model import Affine, PlantConfig, TwinzoConfig
from dtp_console.events import OpsLog
from dtp_console.state import DeviceState, PlantState
from dtp_console.twinzo.client import TwinzoClient

__all__ = ["QUIET_REJECTIONS", "Bridge"]

#: Rejections that are a robot's normal state, counted but not logged.
QUIET_REJECTIONS = frozenset({"not_in_fleet", "disabled", "no_pose", "duplicate"})

_MAX_INTERVAL_MS = 60_000
_SOURCE_STOP_TIMEOUT_S = 5.0


class Bridge:
    """A plant's pipeline; `run()` owns its MQTT and posting tasks."""

    def __init__(
        self,
        plant: PlantConfig,
        twinzo: TwinzoConfig,
        client: TwinzoClient,
        state: PlantState,
        log: OpsLog,
        *,
        address: tuple[str, int] | None = None,
        log_every_n: int = 50,
    ) -> None:
        self.plant = plant
        self.state = state
        self._log = log
        self._parse = parser_for(plant)
        self._address = address or (plant.broker.host, plant.broker.port)
        self.device_map: dict[str, str] = dict(plant.device_map)
        self.affine: Affine = plant.affine
        self.outbox = Outbox(state.counters, plant.min_post_interval_ms / 1000.0)
        self.poster = Poster(
            plant,
            twinzo,
            client,
            self.outbox,
            state,
            log,
            log_every_n=log_every_n,
            backlog=lambda: self.intake_backlog,
            taken_in=lambda: self._handled,
        )
        self._handled = 0
        self._drain_timeout = twinzo.drain_timeout_s

    @property
    def name(self) -> str:
        """The plant name."""
        return self.plant.name

    def apply_device_map(self, mapping: Mapping[str, str]) -> None:
        """Use `mapping` from the next message on; devices no longer mapped are forgotten."""
        self.device_map = dict(mapping)
        for vendor_id in [v for v in self.state.devices if v not in self.device_map]:
            del self.state.devices[vendor_id]
        for vendor_id, device in self.state.devices.items():
            device.login = self.device_map[vendor_id]
        for vendor_id in self.device_map:
            self.state.unknown.pop(vendor_id, None)

    def apply_affine(self, affine: Affine) -> None:
        """Use `affine` from the next message on."""
        self.affine = affine

    @property
    def intake_backlog(self) -> int:
        """Messages received from the broker but not yet taken in."""
        counters = self.state.counters
        return counters.received - counters.outcomes["dropped:queue_full"] - self._handled

    def handle(self, topic: str, payload: bytes, now: float | None = None) -> str:
        """Process one message; returns its outcome, or `queued` when it is in the outbox."""
        self._handled += 1
        try:
            return self._handle(topic, payload, time.monotonic() if now is None else now)
        except Exception as exc:
            self.state.counters.count("rejected:internal_error")
            self._log.limited(
                "FAIL", f"internal:{self.name}", f"Bridge {self.name}: {exc!r}", self.name
            )
            return "rejected:internal_error"

    def _reject(self, reason: str, detail: str, source: str) -> str:
        outcome = f"rejected:{reason}"
        self.state.counters.count(outcome)
        if reason not in QUIET_REJECTIONS:
            self._log.limited(
                "WARN",
                f"reject:{self.name}:{reason}",
                f"Rejected {self.plant.label} message from {source}: {reason} ({detail})",
                self.name,
            )
        return outcome

    def _handle(self, topic: str, payload: bytes, now: float) -> str:
        plant, state = self.plant, self.state
        if len(payload) > plant.max_payload_bytes:
            return self._reject("oversize", f"{len(payload)} bytes", topic)
        result = self._parse(topic, payload)
        if isinstance(result, Rejection):
            return self._reject(result.reason, result.detail, result.vendor_id or topic)
        vendor_id = result.vendor_id
        login = self.device_map.get(vendor_id)
        if login is None:
            state.counters.count("unknown_device")
            state.note_unknown(vendor_id)
            # Folded per plant past a few distinct ids a window: a fleet the map lacks
            # (1,500 ids) is one summary line, not 1,500 (OpsLog.distinct).
            self._log.distinct(
                "WARN",
                f"unknown:{self.name}",
                vendor_id,
                f"Unknown {plant.label} device: {vendor_id} (add to device map)",
                self.name,
                noun=f"unknown {plant.label} devices",
            )
            return "unknown_device"
        device = state.devices.get(vendor_id)
        if device is None:
            device = state.devices[vendor_id] = DeviceState(vendor_id, login)
        device.messages += 1
        device.last_message_at = now
        if isinstance(result, StatusOnly):
            if result.battery is not None:
                device.battery = result.battery
            state.counters.count("status_only")
            return "status_only"
        wall_ms = int(time.time() * 1000)
        timestamp = result.timestamp_ms if result.timestamp_ms is not None else wall_ms
        previous_ts = device.last_timestamp_ms
        # Only a vendor timestamp can tell a repeat from a robot that stands still.
        if result.timestamp_ms is not None and previous_ts is not None:
            if timestamp == previous_ts:
                return self._reject("duplicate", f"timestamp {timestamp} seen before", vendor_id)
            if timestamp < previous_ts:
                detail = f"timestamp {timestamp} is older than {previous_ts}"
                return self._reject("out_of_order", detail, vendor_id)
        x, y = apply_affine(self.affine, result.x, result.y)
        if not (math.isfinite(x) and math.isfinite(y)):
            # A huge but finite vendor value can overflow through the affine.
            return self._reject(
                "non_finite", f"({result.x!r}, {result.y!r}) after affine", vendor_id
            )
        if plant.bounds is not None and not plant.bounds.contains(x, y):
            state.out_of_bounds += 1
            if plant.drop_out_of_bounds:
                return self._reject("out_of_bounds", f"({x:.0f}, {y:.0f})", vendor_id)
        previous = (device.x, device.y) if device.x is not None and device.y is not None else None
        device.moving = moved(previous, (x, y), plant.movement_threshold_mm)
        device.x, device.y, device.z = x, y, result.z
        device.vendor_x, device.vendor_y = result.x, result.y
        if result.battery is not None:
            device.battery = result.battery
        interval = 1000 if previous_ts is None else min(_MAX_INTERVAL_MS, timestamp - previous_ts)
        device.last_timestamp_ms = timestamp
        self.outbox.put(
            Location(
                login=login,
                vendor_id=vendor_id,
                timestamp_ms=timestamp,
                x=x,
                y=y,
                z=result.z,
                battery=device.battery,
                moving=device.moving,
                interval_ms=max(0, interval),
                received_at=now,
            )
        )
        return "queued"

    async def run(self, stop: asyncio.Event) -> None:
        """Run intake and posting until `stop`, then drain what is pending."""
        source = asyncio.create_task(
            run_source(self.plant, self._address, self.handle, self.state, self._log),
            name=f"mqtt:{self.name}",
        )
        poster = asyncio.create_task(self.poster.run(stop), name=f"poster:{self.name}")
        try:
            await stop.wait()
        finally:
            source.cancel()
            # aiomqtt's graceful disconnect can wait on a broker that is gone; bound it.
            await asyncio.wait({source}, timeout=_SOURCE_STOP_TIMEOUT_S)
            if not source.done():
                self._log.emit("WARN", f"MQTT {self.name}: disconnect did not finish", self.name)
            await poster
            await self.poster.drain(self._drain_timeout)
            self.state.mqtt = "stopped"
