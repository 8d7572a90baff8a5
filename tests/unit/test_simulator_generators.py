"""Twin generators: lift alerts over the threshold, the room every 5 s, energy adds up."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import datetime
from typing import Any

import orjson
import pytest

from dtp_console.simulator.config import (
    EnergyGeneratorConfig,
    GeneratorsConfig,
    LiftGeneratorConfig,
    RoomSensorConfig,
)
from dtp_console.simulator.generators import (
    ENERGY_TOPIC,
    LIFT_ALERT_TOPIC,
    EnergyGenerator,
    LiftGenerator,
    RoomSensor,
    TwinGenerators,
    iso_ts,
)

START = 1_767_225_600.0


def lift(**cfg: object) -> LiftGenerator:
    return LiftGenerator(
        LiftGeneratorConfig.model_validate(cfg), random.Random(1), source="sim", start_s=START
    )


def run(
    gen: LiftGenerator | EnergyGenerator | RoomSensor, seconds: float, dt: float = 0.5
) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for _ in range(round(seconds / dt)):
        out.extend((topic, orjson.loads(payload)) for topic, payload in gen.step(dt))
    return out


def test_lift_alert_at_or_above_threshold_with_exact_keys() -> None:
    gen = lift(threshold=3.0, spike_probability=0.05)
    messages = run(gen, 600)
    readings = [m for t, m in messages if t == "dtp/lift/Lift_001/vibration"]
    alerts = [m for t, m in messages if t == LIFT_ALERT_TOPIC]
    assert len(readings) == 601  # 1 Hz, both ends included
    assert alerts
    assert gen.alerts == len(alerts)
    for alert in alerts:
        assert set(alert) == {"type", "lift_id", "rms", "threshold", "ts", "source"}
        assert alert["lift_id"] == "Lift_001"
        assert alert["threshold"] == 3.0
        assert alert["source"] == "sim"
        assert isinstance(alert["rms"], float)
        assert alert["rms"] >= 3.0
    # Exactly the readings at or over the threshold raised an alert, at the same instant.
    over = [r for r in readings if r["value"] >= 3.0]
    assert [r["ts"] for r in over] == [a["ts"] for a in alerts]
    assert any(r["value"] < 3.0 for r in readings)


def test_lift_never_alerts_below_threshold() -> None:
    gen = lift(threshold=100.0)
    assert not [t for t, _ in run(gen, 300) if t == LIFT_ALERT_TOPIC]


def test_lift_reading_is_an_observation() -> None:
    topic, reading = run(lift(), 1)[0]
    assert topic == "dtp/lift/Lift_001/vibration"
    assert set(reading) == {"signal_id", "name", "unit", "value", "ts"}
    assert uuid.UUID(reading["signal_id"])
    assert reading["unit"] == "mm/s"


def test_lift_spikes_show_up() -> None:
    calm = [m["value"] for _, m in run(lift(spike_probability=0.0, noise=0.0), 120)]
    spiky = [m["value"] for t, m in run(lift(spike_probability=0.2), 120) if t != LIFT_ALERT_TOPIC]
    assert max(calm) <= 3.0 + 1e-9  # base 2 + amplitude 1
    assert max(spiky) > 4.0


def test_room_sensor_every_five_seconds_with_a_stable_signal_id() -> None:
    cfg = RoomSensorConfig()
    messages = run(RoomSensor(cfg, random.Random(3), start_s=START), 60)
    assert len(messages) == 13  # t = 0, 5, …, 60
    assert {t for t, _ in messages} == {"dtp/sensors/room1/temp"}
    stamps = [datetime.fromisoformat(m["ts"]) for _, m in messages]
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(stamps)} == {5.0}
    first = messages[0][1]
    assert set(first) == {"signal_id", "name", "unit", "value", "ts"}
    assert first["unit"] == "°C"
    assert 15.0 < first["value"] < 28.0
    # The same id on every run, and it is a real UUID.
    again = run(RoomSensor(RoomSensorConfig(), random.Random(4), start_s=START), 5)
    assert again[0][1]["signal_id"] == first["signal_id"]
    assert uuid.UUID(first["signal_id"]).version == 5


def test_room_sensor_uses_a_configured_signal_id() -> None:
    fixed = uuid.UUID("12345678-1234-5678-1234-567812345678")
    messages = run(
        RoomSensor(RoomSensorConfig(signal_id=fixed), random.Random(3), start_s=START), 5
    )
    assert messages[0][1]["signal_id"] == str(fixed)


def test_energy_kwh_is_monotonic_and_cost_is_kwh_times_price() -> None:
    cfg = EnergyGeneratorConfig(price_per_kwh=0.31, state_change_probability=0.3)
    gen = EnergyGenerator(cfg, random.Random(2), source="sim", start_s=START)
    messages = run(gen, 3600, dt=1.0)
    readings = [m for _, m in messages if m["type"] == "energy"]
    changes = [m for _, m in messages if m["type"] == "hvac_state"]
    assert {t for t, _ in messages} == {ENERGY_TOPIC}
    assert len(readings) == 721  # every 5 s for an hour, both ends included
    kwh = [r["kwh"] for r in readings]
    assert kwh == sorted(kwh)
    assert kwh[-1] > 3.0  # at least the base load for an hour
    for r in readings:
        assert r["cost"] == pytest.approx(r["kwh"] * 0.31, abs=1e-5)
        assert r["currency"] == "EUR"
        assert r["kw"] >= 0
    assert changes
    for change in changes:
        assert set(change) == {"type", "asset_id", "from", "to", "ts", "source"}
        assert change["from"] != change["to"]
    states = [r["hvac_state"] for r in readings]
    assert len(set(states)) > 1


def test_generators_repeat_for_a_seed() -> None:
    def output(seed: int) -> list[tuple[str, bytes]]:
        gens = TwinGenerators(GeneratorsConfig(seed=seed))
        out: list[tuple[str, bytes]] = []
        for _ in range(600):
            out.extend(gens.step(0.5))
        return out

    assert output(1) == output(1)
    assert output(1) != output(2)


def test_generators_can_be_turned_off_one_by_one() -> None:
    cfg = GeneratorsConfig.model_validate(
        {"lift": {"enabled": False}, "energy": {"enabled": False}}
    )
    gens = TwinGenerators(cfg)
    topics = {t for _ in range(30) for t, _ in gens.step(1.0)}
    assert topics == {"dtp/sensors/room1/temp"}


def test_wall_clock_timestamps_when_given() -> None:
    gens = TwinGenerators(GeneratorsConfig())
    messages = gens.step(0.0, now_ms=1_800_000_000_123)
    assert messages
    assert {orjson.loads(p)["ts"] for _, p in messages} == {"2027-01-15T08:00:00.123Z"}


def test_iso_ts() -> None:
    assert iso_ts(START) == "2026-01-01T00:00:00.000Z"


def test_long_steps_do_not_flood() -> None:
    gens = TwinGenerators(GeneratorsConfig())
    assert len(gens.step(1e9)) < 3 * 1000 * 2
