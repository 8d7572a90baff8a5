"""Platform messages → store records: every generator topic maps, bad payloads are counted."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import orjson
import pytest

from dtp_console.events import LogLine, TwinDeleted, TwinUpdated
from dtp_console.registry.model import TwinRecord
from dtp_console.simulator.config import GeneratorsConfig, stable_signal_id
from dtp_console.simulator.generators import ENERGY_TOPIC, LIFT_ALERT_TOPIC, TwinGenerators
from dtp_console.stores.mapping import (
    PlatformMapper,
    energy_signal,
    event_from_log,
    event_from_registry,
    parse_ts,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _json(data: object) -> bytes:
    return orjson.dumps(data)


def test_every_generator_message_maps_without_rejection() -> None:
    cfg = GeneratorsConfig.model_validate(
        {"lift": {"spike_probability": 0.5}, "energy": {"state_change_probability": 0.5}}
    )
    generators = TwinGenerators(cfg)
    mapper = PlatformMapper()
    topics: Counter[str] = Counter()
    observations = events = 0
    for _ in range(120):
        for topic, payload in generators.step(1.0):
            out = mapper.map(topic, payload)
            assert out.rejected is None, (topic, payload)
            topics[topic] += 1
            observations += len(out.observations)
            events += len(out.events)
    assert not mapper.rejected
    assert set(mapper.mapped) == {
        "room_temp",
        "lift_vibration",
        "lift_alert",
        "energy",
        "hvac_state",
    }
    assert mapper.mapped.total() == topics.total()
    assert events == mapper.mapped["lift_alert"] + mapper.mapped["hvac_state"]
    assert observations == (
        mapper.mapped["room_temp"] + mapper.mapped["lift_vibration"] + 3 * mapper.mapped["energy"]
    )


def test_room_temperature_is_a_signal_and_an_observation() -> None:
    sid = uuid.uuid4()
    payload = {
        "signal_id": str(sid),
        "name": "room1 temperature",
        "unit": "°C",
        "value": 21.25,
        "ts": "2026-01-01T00:00:05.000Z",
    }
    out = PlatformMapper().map("dtp/sensors/room1/temp", _json(payload))
    assert [(s.signal_id, s.name, s.unit) for s in out.signals] == [
        (sid, "room1 temperature", "°C")
    ]
    [obs] = out.observations
    assert obs.signal_id == sid
    assert obs.value_double == 21.25
    assert obs.ts == T0 + dt.timedelta(seconds=5)


def test_lift_vibration_uses_the_stable_id_of_the_lift() -> None:
    topic = "dtp/lift/Lift_007/vibration"
    payload = {"signal_id": str(uuid.uuid4()), "value": 3.2, "unit": "mm/s", "ts": T0.isoformat()}
    out = PlatformMapper().map(topic, _json(payload))
    [obs] = out.observations
    assert obs.signal_id == stable_signal_id(topic)
    other = PlatformMapper().map("dtp/lift/Lift_008/vibration", _json(payload))
    assert other.observations[0].signal_id != obs.signal_id


def test_lift_alert_is_a_severity_2_event_with_its_source() -> None:
    alert = {"type": "vibration_alert", "lift_id": "Lift_001", "rms": 5.1, "ts": T0.isoformat()}
    out = PlatformMapper().map(LIFT_ALERT_TOPIC, _json({**alert, "source": "lift-sim"}))
    [event] = out.events
    assert (event.severity, event.source, event.ts) == (2, "lift-sim", T0)
    assert event.body["rms"] == 5.1
    assert PlatformMapper().map(LIFT_ALERT_TOPIC, _json(alert)).events[0].source == "lift"


def test_energy_reading_is_three_observations_and_a_state_change_an_event() -> None:
    reading = {
        "type": "energy",
        "asset_id": "HVAC_001",
        "kw": 3.5,
        "kwh": 1.25,
        "cost": 0.3125,
        "currency": "EUR",
        "ts": T0.isoformat(),
    }
    out = PlatformMapper().map(ENERGY_TOPIC, _json(reading))
    values = {o.signal_id: o.value_double for o in out.observations}
    assert values == {
        energy_signal("HVAC_001", "kw"): 3.5,
        energy_signal("HVAC_001", "kwh"): 1.25,
        energy_signal("HVAC_001", "cost"): 0.3125,
    }
    assert {s.unit for s in out.signals} == {"kW", "kWh", "EUR"}
    change = {"type": "hvac_state", "asset_id": "HVAC_001", "from": "off", "to": "cooling"}
    [event] = PlatformMapper().map(ENERGY_TOPIC, _json(change)).events
    assert event.severity == 1
    assert event.body["to"] == "cooling"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("dtp/sensors/room1/temp", b"{not json", "malformed JSON"),
        ("dtp/sensors/room1/temp", b"[1, 2]", "not a JSON object"),
        ("dtp/sensors/room1/temp", b'{"value": "warm"}', "value is not a number"),
        ("dtp/sensors/room1/temp", b'{"value": true}', "value is not a number"),
        ("dtp/lift/L1/vibration", b'{"value": NaN}', "malformed JSON"),
        ("dtp/sensors/room1/temp", b'{"value": 1, "signal_id": "x"}', "signal_id is not a UUID"),
        (
            "dtp/sensors/room1/temp",
            b'{"value": 1, "ts": "yesterday"}',
            "ts 'yesterday' is not ISO 8601",
        ),
        (ENERGY_TOPIC, b'{"type": "energy", "kw": 1, "kwh": 2}', "cost is not a number"),
        (ENERGY_TOPIC, b'{"type": "solar"}', "unknown energy event type"),
        (ENERGY_TOPIC, b'{"type": "hvac_state"}', "hvac_state without a new state"),
        ("dtp/other/thing", b"{}", "unmapped topic"),
    ],
)
def test_bad_payloads_are_counted_rejections(topic: str, payload: bytes, reason: str) -> None:
    mapper = PlatformMapper()
    out = mapper.map(topic, payload)
    assert out.rejected == reason
    assert not (out.signals or out.observations or out.events)
    assert mapper.rejected == Counter({reason: 1})
    assert not mapper.mapped


def test_parse_ts_accepts_iso_and_epoch() -> None:
    assert parse_ts("2026-01-01T00:00:00Z") == T0
    assert parse_ts("2026-01-01T01:00:00+01:00") == T0
    assert parse_ts("2026-01-01T00:00:00") == T0  # naive means UTC
    assert parse_ts(T0.timestamp()) == T0
    assert parse_ts(T0.timestamp() * 1000) == T0
    assert parse_ts(None, T0) == T0
    with pytest.raises(ValueError, match="boolean"):
        parse_ts(True)


def test_fail_lines_become_severity_3_events() -> None:
    auth = event_from_log(
        LogLine(level="FAIL", text="OAuth failed for tugger-05-old: 401", plant="Old Plant")
    )
    assert auth is not None
    assert (auth.severity, auth.source, auth.body["kind"]) == (3, "bridge:Old Plant", "auth")
    post = event_from_log(LogLine(level="FAIL", text="POST failed for tugger-03: 500"))
    assert post is not None and post.body["kind"] == "post"
    assert event_from_log(LogLine(level="WARN", text="Unknown ATI device: x")) is None
    assert event_from_log(LogLine(level="OK", text="OK tugger-05-old")) is None


def _twin(status: str = "active") -> TwinRecord:
    return TwinRecord.model_validate(
        {
            "id": "dt:Lift_001",
            "name": "Lift",
            "tenant": "demo",
            "status": status,
            "created_at": T0,
            "updated_at": T0,
        }
    )


def test_registry_changes_become_events() -> None:
    created = event_from_registry(TwinUpdated(twin=_twin(), created=True, reason="registered"))
    assert created.severity == 1
    assert created.body["twin_id"] == "dt:Lift_001"
    assert created.body["kind"] == "twin.update"
    edit = event_from_registry(TwinUpdated(twin=_twin(), previous_status="active"))
    assert edit.severity == 0
    status = event_from_registry(TwinUpdated(twin=_twin(), previous_status="instantiated"))
    assert status.severity == 1
    deleted = event_from_registry(TwinDeleted(twin=_twin("deprecated"), hard=True, reason="delete"))
    assert (deleted.severity, deleted.body["hard"], deleted.body["kind"]) == (
        1,
        True,
        "twin.delete",
    )
