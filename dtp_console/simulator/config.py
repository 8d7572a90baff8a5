"""Simulator settings (imported by the config model; pydantic only).

This module must not import `dtp_console.config.model` (which imports it), so
the platform broker has its own small model here.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from dtp_console.config_base import ConfigModel

__all__ = [
    "FAULT_KINDS",
    "EnergyGeneratorConfig",
    "FaultKind",
    "GeneratorsConfig",
    "LiftGeneratorConfig",
    "PlantSimulatorConfig",
    "PlatformBrokerConfig",
    "PoseShape",
    "RoomSensorConfig",
    "SimulatorConfig",
    "stable_signal_id",
]

PoseShape = Literal["3", "6", "mixed"]
FaultKind = Literal["unknown_robot", "malformed_json", "nan", "duplicate", "out_of_order"]
#: Every fault kind, in the order they are documented.
FAULT_KINDS: tuple[FaultKind, ...] = (
    "unknown_robot",
    "malformed_json",
    "nan",
    "duplicate",
    "out_of_order",
)


def stable_signal_id(name: str) -> uuid.UUID:
    """A UUID that is the same on every run for the same `name` (uuid5)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"dtp-console:signal:{name}")


class PlantSimulatorConfig(ConfigModel):
    """Simulated robots of one plant."""

    enabled: bool = True
    """Run this plant's simulated fleet when the console runs."""
    robots: int = Field(default=4, ge=0, le=10_000)
    """How many robots in total: the device map's ids first, then invented ids."""
    unmapped: int = Field(default=1, ge=0)
    """How many of `robots` use invented ids that are not in the device map."""
    rate_hz: float = Field(default=1.0, gt=0, le=100)
    """Messages per second per robot (ATI publishes about every 2 s in the field)."""
    seed: int = 1
    """Random seed: the same seed repeats the same run."""
    pose_shape: PoseShape = "3"
    """ATI pose shape: `3` = `[x, y, heading]`, `6` = `[x, y, z, roll, pitch, yaw]`,
    `mixed` = both (alternating robots)."""
    speed_mm_s: float = Field(default=1200.0, gt=0)
    """Driving speed in twinzo millimetres per second."""
    station_stop_s: float = Field(default=8.0, ge=0)
    """How long a robot stops at a station of its loop."""
    idle_probability: float = Field(default=0.1, ge=0, le=1)
    """Chance that a robot idles after reaching a station."""
    idle_s: float = Field(default=20.0, ge=0)
    """Longest idle period (each one lasts between half of this and this)."""
    disconnect_probability: float = Field(default=0.02, ge=0, le=1)
    """Chance that a robot drops off the network after reaching a station."""
    disconnect_s: float = Field(default=15.0, ge=0)
    """Longest disconnect (each one lasts between half of this and this)."""
    battery_drain_pct_per_min: float = Field(default=1.0, ge=0)
    """Battery used per minute of driving (a tenth of it while standing)."""
    charge_pct_per_min: float = Field(default=10.0, gt=0)
    """Battery gained per minute on a charger."""
    charge_below_pct: float = Field(default=25.0, ge=0, le=100)
    """A robot heads for a charger when its battery is below this at a station."""
    charge_until_pct: float = Field(default=95.0, ge=0, le=100)
    """A charging robot leaves the charger at this level."""
    fault_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of messages with an injected fault (0 = off; the demo uses a low rate)."""
    fault_kinds: list[FaultKind] = Field(default_factory=lambda: list(FAULT_KINDS))
    """Faults to inject: `unknown_robot`, `malformed_json`, `nan`, `duplicate`, `out_of_order`."""

    @field_validator("pose_shape", mode="before")
    @classmethod
    def _shape_as_text(cls, value: Any) -> Any:
        # YAML reads `pose_shape: 3` as an int.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _charge_levels(self) -> PlantSimulatorConfig:
        if self.charge_until_pct <= self.charge_below_pct:
            msg = "charge_until_pct must be above charge_below_pct"
            raise ValueError(msg)
        return self


class PlatformBrokerConfig(ConfigModel):
    """Deprecated alias of `platform.broker` (host, port, username, password only)."""

    host: str = "embedded"
    """Broker host, or `embedded` for the in-process demo broker."""
    port: int = Field(default=0, ge=0, le=65535)
    """Broker TCP port (0 with `embedded` picks a free port)."""
    username: str | None = None
    """MQTT user name."""
    password: SecretStr | None = None
    """MQTT password (masked wherever shown)."""

    @property
    def embedded(self) -> bool:
        """Whether this is the in-process demo broker."""
        return self.host == "embedded"


class LiftGeneratorConfig(ConfigModel):
    """Lift vibration: RMS as a sine plus noise plus occasional spikes."""

    enabled: bool = True
    """Run the lift generator."""
    lift_id: str = "Lift_001"
    """Lift id in topics and alerts."""
    rate_hz: float = Field(default=1.0, gt=0, le=100)
    """RMS readings per second."""
    threshold: float = Field(default=4.5, gt=0)
    """An alert is published when the RMS is at or above this (mm/s)."""
    base_rms: float = Field(default=2.0, ge=0)
    """Mean RMS (mm/s)."""
    amplitude: float = Field(default=1.0, ge=0)
    """Amplitude of the sine (mm/s)."""
    period_s: float = Field(default=60.0, gt=0)
    """Period of the sine."""
    noise: float = Field(default=0.2, ge=0)
    """Standard deviation of the Gaussian noise (mm/s)."""
    spike_probability: float = Field(default=0.03, ge=0, le=1)
    """Chance that a reading carries a spike."""
    spike_rms: float = Field(default=3.0, ge=0)
    """Typical spike height added to the RMS (mm/s)."""


class EnergyGeneratorConfig(ConfigModel):
    """Energy meter of an HVAC unit: kW, kWh, cost and HVAC state changes."""

    enabled: bool = True
    """Run the energy/HVAC generator."""
    asset_id: str = "HVAC_001"
    """Asset id in events."""
    interval_s: float = Field(default=5.0, gt=0)
    """Seconds between energy readings."""
    price_per_kwh: float = Field(default=0.25, ge=0)
    """Energy price used for `cost`."""
    currency: str = "EUR"
    """Currency of `price_per_kwh` and `cost`."""
    base_kw: float = Field(default=3.0, ge=0)
    """Load with the HVAC off (kW)."""
    state_change_probability: float = Field(default=0.1, ge=0, le=1)
    """Chance per reading that the HVAC changes state."""


class RoomSensorConfig(ConfigModel):
    """A room temperature sensor."""

    enabled: bool = True
    """Run the room sensor."""
    topic: str = "dtp/sensors/room1/temp"
    """Topic of the readings."""
    name: str = "room1 temperature"
    """Signal name in readings."""
    unit: str = "°C"
    """Unit of the readings (`SIM_SIGNAL_UNIT`)."""
    signal_id: uuid.UUID | None = None
    """Signal UUID; a stable one derived from `topic` when unset."""
    interval_s: float = Field(default=5.0, gt=0)
    """Seconds between readings."""
    mean_c: float = 21.5
    """Mean temperature (°C)."""
    amplitude_c: float = Field(default=1.5, ge=0)
    """Swing of the temperature around the mean (°C)."""
    period_s: float = Field(default=600.0, gt=0)
    """Period of the swing."""

    @property
    def resolved_signal_id(self) -> uuid.UUID:
        """`signal_id`, or the stable one derived from the topic."""
        return self.signal_id or stable_signal_id(self.topic)


class GeneratorsConfig(ConfigModel):
    """The twin platform's sample twins."""

    enabled: bool = True
    """Run the twin generators (they need the platform broker)."""
    seed: int = 7
    """Random seed of the generators."""
    source: str = "simulator"
    """`source` field of what they publish."""
    lift: LiftGeneratorConfig = Field(default_factory=LiftGeneratorConfig)
    """Lift vibration."""
    energy: EnergyGeneratorConfig = Field(default_factory=EnergyGeneratorConfig)
    """Energy/HVAC."""
    room: RoomSensorConfig = Field(default_factory=RoomSensorConfig)
    """Room temperature."""


class SimulatorConfig(ConfigModel):
    """Simulator-wide settings."""

    enabled: bool = False
    """Run the simulated fleets and twin generators inside the console."""
    broker: PlatformBrokerConfig = Field(default_factory=PlatformBrokerConfig)
    """Deprecated: use `platform.broker` (the twin generators publish there). Still read
    when `platform.broker` is unset; refused when the two differ."""
    generators: GeneratorsConfig = Field(default_factory=GeneratorsConfig)
    """Twin generators and their settings."""
