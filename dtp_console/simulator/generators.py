"""Twin generators: the twin platform's sample twins publishing sensor data.

- Lift: vibration RMS (sine + Gaussian noise + occasional spikes) on
  `dtp/lift/{lift_id}/vibration`, and an alert on `dtp/lift/alerts` whenever
  the RMS is at or above the threshold.
- Energy/HVAC: kW, cumulative kWh and cost (kWh × price) on
  `dtp/energy_hvac/events`, plus an event whenever the HVAC changes state.
- Room sensor: temperature on `dtp/sensors/room1/temp` every 5 s.

Readings are observations `{signal_id, name, unit, value, ts}` (stable uuid5
signal ids); `ts` is ISO 8601 UTC with milliseconds. Like the fleet, the
generators are stepped by explicit time with a seeded `random.Random`.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

import orjson

from dtp_console.simulator.config import (
    EnergyGeneratorConfig,
    GeneratorsConfig,
    LiftGeneratorConfig,
    RoomSensorConfig,
    stable_signal_id,
)
from dtp_console.simulator.faults import Message

__all__ = [
    "ENERGY_TOPIC",
    "HVAC_KW",
    "LIFT_ALERT_TOPIC",
    "EnergyGenerator",
    "LiftGenerator",
    "RoomSensor",
    "TwinGenerators",
    "iso_ts",
]

LIFT_ALERT_TOPIC = "dtp/lift/alerts"
ENERGY_TOPIC = "dtp/energy_hvac/events"
#: Extra load of each HVAC state (kW).
HVAC_KW: dict[str, float] = {"off": 0.0, "fan": 0.8, "cooling": 6.5, "heating": 5.0}
_MAX_CATCH_UP = 1000
#: Generator timestamps when stepped without wall-clock times (2026-01-01T00:00:00Z).
_DEFAULT_START_S = 1_767_225_600.0


def iso_ts(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (`2026-01-01T00:00:00.000Z`)."""
    stamp = datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


class _Periodic:
    """Fires `_emit(t)` every `interval` simulated seconds, starting at t = 0."""

    def __init__(self, interval: float, start_s: float) -> None:
        self._interval = interval
        self._start_s = start_s
        self._time = 0.0
        self._next = 0.0

    def step(self, dt_s: float, now_s: float | None = None) -> list[Message]:
        """Advance by `dt_s`; the messages of every tick in that span.

        Timestamps are `now_s` when given (wall clock in a live run), otherwise
        the start plus the tick's simulated time.
        """
        self._time += dt_s
        out: list[Message] = []
        for _ in range(_MAX_CATCH_UP):
            if self._next > self._time:
                break
            epoch_s = self._start_s + self._next if now_s is None else now_s
            out.extend(self._emit(self._next, epoch_s))
            self._next += self._interval
        if self._next <= self._time:  # far behind: skip rather than flood
            self._next = self._time + self._interval
        return out

    def _emit(self, t: float, epoch_s: float) -> list[Message]:
        raise NotImplementedError


class LiftGenerator(_Periodic):
    """Lift vibration RMS readings and threshold alerts."""

    def __init__(
        self, cfg: LiftGeneratorConfig, rng: random.Random, *, source: str, start_s: float
    ) -> None:
        super().__init__(1.0 / cfg.rate_hz, start_s)
        self.cfg = cfg
        self._rng = rng
        self._source = source
        self.topic = f"dtp/lift/{cfg.lift_id}/vibration"
        self.signal_id = str(stable_signal_id(self.topic))
        self.alerts = 0
        """Alerts published so far."""

    def rms(self, t: float) -> float:
        """The RMS at simulated time `t` (draws from the random stream)."""
        cfg = self.cfg
        value = cfg.base_rms + cfg.amplitude * math.sin(2 * math.pi * t / cfg.period_s)
        value += self._rng.gauss(0.0, cfg.noise)
        if self._rng.random() < cfg.spike_probability:
            value += cfg.spike_rms * self._rng.uniform(0.8, 1.5)
        return max(0.0, round(value, 3))

    def _emit(self, t: float, epoch_s: float) -> list[Message]:
        cfg, ts = self.cfg, iso_ts(epoch_s)
        rms = self.rms(t)
        reading = {
            "signal_id": self.signal_id,
            "name": f"{cfg.lift_id} vibration RMS",
            "unit": "mm/s",
            "value": rms,
            "ts": ts,
        }
        out: list[Message] = [(self.topic, _json(reading))]
        if rms >= cfg.threshold:
            self.alerts += 1
            alert = {
                "type": "vibration_alert",
                "lift_id": cfg.lift_id,
                "rms": rms,
                "threshold": cfg.threshold,
                "ts": ts,
                "source": self._source,
            }
            out.append((LIFT_ALERT_TOPIC, _json(alert)))
        return out


class EnergyGenerator(_Periodic):
    """Energy meter of an HVAC unit: kW, cumulative kWh, cost, and HVAC state changes."""

    def __init__(
        self, cfg: EnergyGeneratorConfig, rng: random.Random, *, source: str, start_s: float
    ) -> None:
        super().__init__(cfg.interval_s, start_s)
        self.cfg = cfg
        self._rng = rng
        self._source = source
        self.state = "off"
        """Current HVAC state (`off`, `fan`, `cooling`, `heating`)."""
        self.kwh = 0.0
        """Energy used since the start."""
        self._last_t: float | None = None
        self._kw = cfg.base_kw

    def _emit(self, t: float, epoch_s: float) -> list[Message]:
        cfg, ts = self.cfg, iso_ts(epoch_s)
        out: list[Message] = []
        if self._last_t is not None:
            # Energy since the last reading, at the power then in effect.
            self.kwh += self._kw * (t - self._last_t) / 3600.0
        self._last_t = t
        if self._rng.random() < cfg.state_change_probability:
            new = self._rng.choice([s for s in HVAC_KW if s != self.state])
            event = {
                "type": "hvac_state",
                "asset_id": cfg.asset_id,
                "from": self.state,
                "to": new,
                "ts": ts,
                "source": self._source,
            }
            self.state = new
            out.append((ENERGY_TOPIC, _json(event)))
        noise = self._rng.gauss(0.0, 0.05 * max(cfg.base_kw, 0.1))
        self._kw = max(0.0, round(cfg.base_kw + HVAC_KW[self.state] + noise, 3))
        reading = {
            "type": "energy",
            "asset_id": cfg.asset_id,
            "kw": self._kw,
            "kwh": round(self.kwh, 6),
            "cost": round(self.kwh * cfg.price_per_kwh, 6),
            "price_per_kwh": cfg.price_per_kwh,
            "currency": cfg.currency,
            "hvac_state": self.state,
            "ts": ts,
            "source": self._source,
        }
        out.append((ENERGY_TOPIC, _json(reading)))
        return out


class RoomSensor(_Periodic):
    """Room temperature readings."""

    def __init__(self, cfg: RoomSensorConfig, rng: random.Random, *, start_s: float) -> None:
        super().__init__(cfg.interval_s, start_s)
        self.cfg = cfg
        self._rng = rng
        self.signal_id = str(cfg.resolved_signal_id)

    def _emit(self, t: float, epoch_s: float) -> list[Message]:
        cfg = self.cfg
        value = cfg.mean_c + cfg.amplitude_c * math.sin(2 * math.pi * t / cfg.period_s)
        value += self._rng.gauss(0.0, 0.05)
        reading = {
            "signal_id": self.signal_id,
            "name": cfg.name,
            "unit": cfg.unit,
            "value": round(value, 2),
            "ts": iso_ts(epoch_s),
        }
        return [(cfg.topic, _json(reading))]


class TwinGenerators:
    """Every enabled generator, stepped together."""

    def __init__(self, cfg: GeneratorsConfig, *, start_s: float = _DEFAULT_START_S) -> None:
        rng = random.Random(cfg.seed)  # noqa: S311 - simulation, not security
        lift_rng, energy_rng, room_rng = (random.Random(rng.getrandbits(64)) for _ in range(3))  # noqa: S311
        self.lift = (
            LiftGenerator(cfg.lift, lift_rng, source=cfg.source, start_s=start_s)
            if cfg.lift.enabled
            else None
        )
        self.energy = (
            EnergyGenerator(cfg.energy, energy_rng, source=cfg.source, start_s=start_s)
            if cfg.energy.enabled
            else None
        )
        self.room = RoomSensor(cfg.room, room_rng, start_s=start_s) if cfg.room.enabled else None

    def step(self, dt_s: float, now_ms: int | None = None) -> list[Message]:
        """Advance by `dt_s` seconds; the messages due in that span.

        `now_ms` stamps them with the wall clock; by default timestamps come
        from simulated time, so output is reproducible.
        """
        now_s = None if now_ms is None else now_ms / 1000
        out: list[Message] = []
        for generator in (self.lift, self.energy, self.room):
            if generator is not None:
                out.extend(generator.step(dt_s, now_s))
        return out
