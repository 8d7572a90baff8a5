"""One plant's bridge: MQTT intake → parse → device map → affine → movement → outbox → twinzo.

`handle()` is the whole intake path: synchronous, no I/O, never raises, and
gives every message exactly one outcome or a place in the outbox. Posting is
the `Poster`'s job in its own task. The plant's live settings (device map,
affine, bounds, clock and plausibility rules, …) can be replaced while the
bridge runs (`apply_plant`); every part reads them from one `PlantCell`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping

from dtp_console.bridge.cell import PlantCell, cell_of
from dtp_console.bridge.formats import parser_for
from dtp_console.bridge.geometry import apply_affine, moved
from dtp_console.bridge.outbox import Location, Outbox
from dtp_console.bridge.parse import Reading, Rejection, StatusOnly
from dtp_console.bridge.plausibility import check_jump
from dtp_console.bridge.poster import Poster
from dtp_console.bridge.robot_status import (
    apply_report,
    position_is_behind,
    position_verdict,
    track_sequences,
)
from dtp_console.bridge.watch import PlantWatch
from dtp_console.config.model import Affine, PlantConfig, TwinzoConfig
from dtp_console.events import OpsLog
from dtp_console.mqtt.source import run_source
from dtp_console.state import DeviceState, Jump, PlantState
from dtp_console.supervision import keep_running
from dtp_console.twinzo.client import TwinzoClient

__all__ = ["QUIET_REJECTIONS", "Bridge"]

#: Rejections that are a robot's normal state, counted but not logged.
QUIET_REJECTIONS = frozenset({"not_in_fleet", "disabled", "no_pose", "duplicate", "not_localized"})

_MAX_INTERVAL_MS = 60_000
#: Positions beyond ±100 km after the affine are garbage, however finite (twinzo keeps
#: X/Y/Z as single-precision floats, which hold ~8 mm steps at this magnitude).
MAX_COORDINATE_MM = 1e8
_SOURCE_STOP_TIMEOUT_S = 5.0


class Bridge:
    """A plant's pipeline; `run()` owns its MQTT and posting tasks."""

    def __init__(
        self,
        plant: PlantConfig | PlantCell,
        twinzo: TwinzoConfig,
        client: TwinzoClient,
        state: PlantState,
        log: OpsLog,
        *,
        address: tuple[str, int] | None = None,
        log_every_n: int = 50,
        wall_clock: Callable[[], float] = time.time,
        may_post: Callable[[], bool] | None = None,
    ) -> None:
        self.cell = cell_of(plant, twinzo)
        """The plant's current config: the bridge, its poster and its watch read it here."""
        plant = self.cell.plant
        self.state = state
        self._log = log
        self._parse = parser_for(plant)
        if plant.format == "vda5050":
            track_sequences(state)
        self._address = address or (plant.broker.host, plant.broker.port)
        self.outbox = Outbox(state.counters, plant.min_post_interval_ms / 1000.0)
        self.poster = Poster(
            self.cell,
            twinzo,
            client,
            self.outbox,
            state,
            log,
            log_every_n=log_every_n,
            backlog=lambda: self.intake_backlog,
            taken_in=lambda: self._handled,
            may_post=may_post,
        )
        self.watch = PlantWatch(self.cell, state, log)
        """The silence watchdog and the ghost flags (its task runs with `run()`)."""
        self._handled = 0
        self._wall_clock = wall_clock

    @property
    def plant(self) -> PlantConfig:
        """The plant's config as it runs now."""
        return self.cell.plant

    @property
    def name(self) -> str:
        """The plant name."""
        return self.cell.plant.name

    @property
    def device_map(self) -> dict[str, str]:
        """The running device map (read only: change it with `apply_device_map`)."""
        return self.cell.plant.device_map

    @property
    def affine(self) -> Affine:
        """The running affine."""
        return self.cell.plant.affine

    @property
    def _drain_timeout(self) -> float:
        return self.cell.twinzo.drain_timeout_s

    def apply_device_map(self, mapping: Mapping[str, str]) -> None:
        """Use `mapping` from the next message on; devices no longer mapped are forgotten."""
        self.apply_plant(self.plant.model_copy(update={"device_map": dict(mapping)}))

    def apply_affine(self, affine: Affine) -> None:
        """Use `affine` from the next message on."""
        self.apply_plant(self.plant.model_copy(update={"affine": affine}))

    def apply_plant(self, plant: PlantConfig, twinzo: TwinzoConfig | None = None) -> None:
        """Run with `plant` (and the `twinzo` posting settings) from the next message on.

        Only the live fields may differ from the running config
        (`dtp_console.config.reload`): the MQTT connection and the format are the
        ones the bridge started with. Devices no longer mapped are forgotten; a
        changed device password drops the plant's cached tokens, so the next post
        authenticates with it.
        """
        before = self.plant
        password = self.poster.password
        self.cell.replace(plant, twinzo)
        self._parse = parser_for(plant)
        self.outbox.min_interval_s = plant.min_post_interval_ms / 1000.0
        if plant.device_map != before.device_map:
            self._forget_unmapped()
        if self.poster.password != password:
            self.poster.forget_tokens()

    def _forget_unmapped(self) -> None:
        device_map = self.device_map
        for vendor_id in [v for v in self.state.devices if v not in device_map]:
            del self.state.devices[vendor_id]
        for vendor_id, device in self.state.devices.items():
            device.login = device_map[vendor_id]
        for vendor_id in device_map:
            self.state.unknown.pop(vendor_id, None)

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
            known = self.state.devices.get(result.vendor_id) if result.vendor_id else None
            if known is not None:
                known.last_heard_at = now  # rejected, yet the robot is there
            return self._reject(result.reason, result.detail, result.vendor_id or topic)
        vendor_id = result.vendor_id
        login = plant.device_map.get(vendor_id)
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
        device.last_message_at = device.last_heard_at = now
        report = result.report
        if report is not None:
            if not apply_report(report, device, state, self._log, plant.label):
                detail = f"{report.topic} headerId {report.header_id} repeated"
                return self._reject("duplicate", detail, vendor_id)
            if result.battery is not None:  # a state's battery counts even without a position
                device.battery = result.battery
            if report.connection is not None and device.robot and device.robot.offline:
                # It left: its last position must not go out (again) as if it were there.
                self.outbox.discard(login, "dropped:offline")
        if isinstance(result, StatusOnly):
            if result.battery is not None:
                device.battery = result.battery
            state.counters.count("status_only")
            return "status_only"
        sector: int | None = None
        if report is not None:
            sector, problem = position_verdict(plant, state, report)
            if problem is not None:
                return self._reject(*problem, vendor_id)
            if position_is_behind(report, result.timestamp_ms, device.last_vendor_timestamp_ms):
                state.counters.count("status_only")
                return "status_only"
        stamped = self._timestamp(result, device, vendor_id)
        if isinstance(stamped, str):
            return stamped
        timestamp, sane_stamp = stamped
        previous_ts = device.last_timestamp_ms
        x, y = apply_affine(plant.affine, result.x, result.y)
        if not (math.isfinite(x) and math.isfinite(y)):
            # A huge but finite vendor value can overflow through the affine.
            return self._reject(
                "non_finite", f"({result.x!r}, {result.y!r}) after affine", vendor_id
            )
        if max(abs(x), abs(y), abs(result.z)) > MAX_COORDINATE_MM:
            detail = f"({x:.3g}, {y:.3g}, {result.z:.3g}) mm is beyond ±{MAX_COORDINATE_MM:.0e}"
            return self._reject("out_of_range", detail, vendor_id)
        if plant.bounds is not None and not plant.bounds.contains(x, y):
            state.out_of_bounds += 1
            if plant.drop_out_of_bounds:
                return self._reject("out_of_bounds", f"({x:.0f}, {y:.0f})", vendor_id)
        jump = check_jump(plant, state, device, (x, y), now, sane_stamp)
        if jump is not None and (outcome := self._jumped(jump, device)) is not None:
            return outcome
        previous = (device.x, device.y) if device.x is not None and device.y is not None else None
        device.position_at, device.position_stamp_ms = now, sane_stamp
        device.moving = moved(previous, (x, y), plant.movement_threshold_mm)
        device.x, device.y, device.z = x, y, result.z
        device.vendor_x, device.vendor_y = result.x, result.y
        if result.battery is not None:
            device.battery = result.battery
        interval = 1000 if previous_ts is None else min(_MAX_INTERVAL_MS, timestamp - previous_ts)
        device.last_timestamp_ms = timestamp
        if sane_stamp is not None:
            device.last_vendor_timestamp_ms = sane_stamp
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
                sector_id=sector,
            )
        )
        return "queued"

    def _jumped(self, jump: Jump, device: DeviceState) -> str | None:
        """Say what an implausible jump cost: its rejection with `drop_implausible`, else None
        (forwarded, flagged)."""
        (x0, y0), (x1, y1) = jump.start, jump.end
        metres = math.hypot(x1 - x0, y1 - y0) / 1000
        limit = self.plant.max_speed_mm_s / 1000
        detail = f"{metres:.1f} m at {jump.speed_mm_s / 1000:.1f} m/s, max {limit:g} m/s"
        if jump.dropped:
            return self._reject("implausible_jump", detail, device.vendor_id)
        self._log.limited(
            "WARN",
            f"jump:{self.name}:{device.vendor_id}",
            f"Implausible jump of {device.vendor_id} ({device.login}) in {self.name}: {detail};"
            " forwarded, flagged",
            self.name,
        )
        return None

    def _timestamp(
        self, result: Reading, device: DeviceState, vendor_id: str
    ) -> tuple[int, int | None] | str:
        """The timestamp to post `result` with and its sane vendor stamp (None when
        there is none, or it lied), or the outcome that rejected it.

        A vendor stamp further than `clock_tolerance_s` from our receive time is
        a lying clock: it never becomes the reference for the duplicate and
        out-of-order checks (so one report stamped years ahead cannot freeze the
        robot), and is restamped with the receive time or rejected, as the plant
        says. Sane stamps are checked against the last sane stamp only.
        """
        plant, state = self.plant, self.state
        wall_ms = int(self._wall_clock() * 1000)
        stamp = result.timestamp_ms
        if stamp is None:
            return wall_ms, None
        if result.timestamp_unit not in (None, "ms"):
            state.timestamps_converted[result.timestamp_unit] += 1
        offset = stamp - wall_ms
        device.clock.add(offset)
        tolerance_ms = plant.clock_tolerance_s * 1000
        if abs(offset) > tolerance_ms:
            verdict = "ahead" if offset > 0 else "behind"
            policy = plant.clock_ahead if offset > 0 else plant.clock_behind
            detail = f"stamped {offset / 1000:+.1f}s from receipt"
            if policy == "reject":
                return self._reject(f"clock_{verdict}", detail, vendor_id)
            state.clock_restamped[verdict] += 1
            self._log.limited(
                "WARN",
                f"clock:{self.name}:{vendor_id}",
                f"Clock of {vendor_id} ({device.login}) is {detail}; posted with receive time",
                self.name,
            )
            return wall_ms, None
        previous = device.last_vendor_timestamp_ms
        if previous is not None:
            if stamp == previous:
                return self._reject("duplicate", f"timestamp {stamp} seen before", vendor_id)
            if stamp < previous:
                detail = f"timestamp {stamp} is older than {previous}"
                return self._reject("out_of_order", detail, vendor_id)
        return stamp, stamp

    async def run(self, stop: asyncio.Event) -> None:
        """Run intake, posting and the watchdog until `stop`, then drain what is pending.

        The three tasks live in one `TaskGroup`, so none outlives `run()`. None should
        ever die; if one does anyway, it is logged as FAIL, counted (`source_restarts`,
        `poster_restarts`, `watch_restarts`) and restarted with backoff, so a plant is
        never dead while the process looks fine. Shutdown is ordered: the watchdog and
        the source stop (the source hands what it had queued to the outbox), then the
        poster finishes and the outbox drains.
        """
        state = self.state

        def _source_died(reason: str) -> None:
            state.source_restarts += 1
            state.set_mqtt("disconnected", f"MQTT source died: {reason}")

        def _poster_died(_reason: str) -> None:
            state.poster_restarts += 1

        def _watch_died(_reason: str) -> None:
            state.watch_restarts += 1

        def _kept(
            what: str, start: Callable[[], Awaitable[None]], died: Callable[[str], None]
        ) -> Coroutine[None, None, None]:
            return keep_running(what, start, stop, self._log, self.name, died)

        async with asyncio.TaskGroup() as group:
            source = group.create_task(
                _kept(
                    f"MQTT source of {self.name}",
                    lambda: run_source(
                        self.plant,
                        self._address,
                        self.handle,
                        state,
                        self._log,
                        reconnect=self.watch.silence.reconnect,
                    ),
                    _source_died,
                ),
                name=f"mqtt:{self.name}",
            )
            poster = group.create_task(
                _kept(f"poster of {self.name}", lambda: self.poster.run(stop), _poster_died),
                name=f"poster:{self.name}",
            )
            watch = group.create_task(
                _kept(f"watch of {self.name}", lambda: self.watch.run(stop), _watch_died),
                name=f"watch:{self.name}",
            )
            await stop.wait()
            watch.cancel()
            source.cancel()
            # aiomqtt's graceful disconnect can wait on a broker that is gone: say so,
            # then still wait for it (its own time-out bounds it), so no task outlives run().
            await asyncio.wait({source}, timeout=_SOURCE_STOP_TIMEOUT_S)
            if not source.done():
                self._log.emit("WARN", f"MQTT {self.name}: disconnect did not finish", self.name)
            await asyncio.wait({source, poster, watch})
            await self.poster.drain(self._drain_timeout)
        self.state.set_mqtt("stopped", self.state.mqtt_detail)
