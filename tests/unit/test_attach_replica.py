"""The attach client's replica: frames from the wire codec in, hostile frames refused."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from dtp_console.attach import replica
from dtp_console.attach.replica import FrameError, apply_frame, event_of
from dtp_console.attach.wire import encode_auth, encode_device, encode_plant_summary
from dtp_console.events import LogLine, StoreHealth
from dtp_console.state import (
    AuthState,
    DeviceState,
    EngineState,
    Jump,
    PlantState,
    RobotFacts,
    SequenceCounters,
)

NOW = 5_000.0
"""The client's monotonic now; the service's is 1_000 (offset 4_000)."""


def _device() -> DeviceState:
    d = DeviceState("agv-1", "agv-01", x=1.5, y=2.5, battery=80.0, moving=True, messages=3)
    d.robot = RobotFacts(connection="ONLINE", driving=True, errors=(("WARNING", "low"),))
    d.last_message_at, d.position_at = 990.0, 990.0
    d.last_jump = Jump((0.0, 0.0), (9.0, 9.0), 12_000.0, 995.0, dropped=True)
    d.clock.add(-40)
    d.ghost, d.ghost_since = "quiet", 980.0
    d.ghost_episodes["quiet"] = 1
    return d


def _plant() -> PlantState:
    p = PlantState("VDA Plant", mqtt="connected", connects=2)
    p.counters.received = 10
    p.counters.count("forwarded", 9)
    p.counters.count("unknown_device")
    p.sequence = SequenceCounters(lost=1, unknown_maps=Counter({"m": 2}))
    p.warnings = ["TLS verification off"]
    p.ha_role = "standby"
    d = _device()
    p.devices[d.vendor_id] = d
    return p


def _snapshot(plant: PlantState | None = None) -> dict[str, Any]:
    plant = plant or _plant()
    auth = AuthState("agv-01", status="valid", expires_at=1.8e9)
    return {
        "mono": 1_000.0,
        "plants": {
            plant.name: {
                "plant": encode_plant_summary(plant),
                "devices": {v: encode_device(d) for v, d in plant.devices.items()},
            }
        },
        "auth": {"agv-01": encode_auth(auth)},
        "twinzo_url": "https://twinzo.test",
        "platform": None,
        "stores": {"spools": {}},
    }


def test_a_snapshot_reads_back_the_facts_the_ui_shows() -> None:
    state = EngineState()
    apply_frame(state, _snapshot(), now=NOW)
    plant = state.plants["VDA Plant"]
    assert (plant.mqtt, plant.connects, plant.ha_role) == ("connected", 2, "standby")
    assert plant.counters.received == sum(plant.counters.outcomes.values()) == 10
    assert plant.sequence is not None
    assert plant.sequence.unknown_maps == Counter({"m": 2})
    device = plant.devices["agv-1"]
    assert (device.x, device.y, device.login, device.moving) == (1.5, 2.5, "agv-01", True)
    assert device.message_age_s(NOW + 10) == pytest.approx(20.0)  # 990 + 4000 offset
    assert device.last_jump is not None
    assert device.last_jump.at == pytest.approx(4_995.0)
    assert device.robot is not None
    assert device.robot.errors == (("WARNING", "low"),)
    assert device.clock_offset_ms == -40
    assert state.auth["agv-01"].status == "valid"
    assert state.store_stats is not None
    assert state.store_stats() == {"spools": {}}


def test_a_delta_changes_only_what_it_names_and_null_removes() -> None:
    state = EngineState()
    apply_frame(state, _snapshot(), now=NOW)
    extra = DeviceState("agv-2", "agv-02", x=7.0, y=8.0)
    delta = {
        "mono": 1_001.0,
        "plants": {"VDA Plant": {"devices": {"agv-1": {"x": 3.0}, "agv-2": encode_device(extra)}}},
        "auth": {"agv-01": None},
    }
    apply_frame(state, delta, now=NOW + 1)
    devices = state.plants["VDA Plant"].devices
    assert (devices["agv-1"].x, devices["agv-1"].y) == (3.0, 2.5)
    assert devices["agv-2"].login == "agv-02"
    assert state.auth == {}
    apply_frame(state, {"mono": 1_002.0, "plants": {"VDA Plant": {"devices": {"agv-1": None}}}})
    assert list(devices) == ["agv-2"]
    apply_frame(state, {"mono": 1_003.0, "plants": {"VDA Plant": None}})
    assert state.plants == {}


@pytest.mark.parametrize(
    "device",
    [
        {"x": "1000"},  # a string where a position goes: the table's format would raise
        {"moving": "yes"},
        {"messages": 1.5},
        {"messages": True},
        {"last_post_ok": "true"},
        {"ghost": "haunted"},
        {"ghost_episodes": {"quiet": "1"}},
        {"robot": {"errors": "none"}},
        {"robot": {"lost": None}},
        {"clock": {"samples": "3"}},
        {"last_jump": {"start": [0], "end": [1, 1], "speed_mm_s": 1, "at": 1, "dropped": True}},
        "not an object",
    ],
)
def test_a_device_of_the_wrong_shape_is_refused_and_nothing_changes(device: Any) -> None:
    state = EngineState()
    apply_frame(state, _snapshot(), now=NOW)
    delta = {"mono": 1_001.0, "plants": {"VDA Plant": {"devices": {"agv-1": device}}}}
    with pytest.raises(FrameError):
        apply_frame(state, delta, now=NOW)
    assert state.plants["VDA Plant"].devices["agv-1"].x == 1.5


@pytest.mark.parametrize(
    "frame",
    [
        {"plants": {}},  # no mono
        {"mono": "soon"},
        {"mono": 1.0, "plants": []},
        {"mono": 1.0, "plants": {"P": {"plant": {"connects": "2"}}}},
        {"mono": 1.0, "plants": {"P": {"plant": {"ha_role": "king"}}}},
        {"mono": 1.0, "plants": {"P": {"plant": {"warnings": [1]}}}},
        {"mono": 1.0, "plants": {"P": {"plant": {"counters": {"received": "9"}}}}},
        {"mono": 1.0, "auth": {"a": {"status": "great"}}},
        {"mono": 1.0, "auth": {"a": {"expires_at": "tomorrow"}}},
        {"mono": 1.0, "platform": {"mqtt": 5}},
        {"mono": 1.0, "stores": [1]},
        {"mono": 1.0, "plants": {"P": {"devices": {"d": {"x": 1.0}}}}},  # new, no login
    ],
)
def test_a_frame_of_the_wrong_shape_is_a_frame_error(frame: dict[str, Any]) -> None:
    with pytest.raises(FrameError):
        apply_frame(EngineState(), frame, now=NOW)


def test_the_replica_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica, "MAX_DEVICES", 3)
    monkeypatch.setattr(replica, "MAX_PLANTS", 2)
    devices = {f"d{i}": {"login": f"l{i}"} for i in range(4)}
    with pytest.raises(FrameError, match="more than 3 robots"):
        apply_frame(EngineState(), {"mono": 1.0, "plants": {"P": {"devices": devices}}})
    plants: dict[str, Any] = {f"P{i}": {} for i in range(3)}
    with pytest.raises(FrameError, match="more than 2 plants"):
        apply_frame(EngineState(), {"mono": 1.0, "plants": plants})


def test_events_come_through_as_text_and_bad_ones_are_frame_errors() -> None:
    line = event_of("log", {"ts": 5.0, "level": "BOGUS", "text": "[b]x[/b]\n", "plant": "P"})
    assert isinstance(line, LogLine)
    assert (line.level, line.text, line.ts) == ("INFO", "[b]x[/b]\\n", 5.0)
    health = event_of("store", {"name": "pg", "ok": False, "spool_pending": 3})
    assert isinstance(health, StoreHealth)
    assert (health.name, health.ok, health.spool_pending) == ("pg", False, 3)
    assert event_of("twin", {"kind": "unknown.kind"}) is None
    with pytest.raises(FrameError):
        event_of("store", {"ok": True})
    with pytest.raises(FrameError):
        event_of("twin", {"kind": "twin.update", "twin": {"id": 5}})
    with pytest.raises(FrameError):
        event_of("log", ["not", "an", "object"])
