"""Robots that go quiet: the silence watchdog's decisions, ghost flags, implausible jumps.

Everything runs on explicit times (`Bridge.handle(now=…)`, `poll(now)`,
`update_ghosts(now=…)`), so every case is exact. The robots come from a seeded
`AmrFleet`; a ghost is a robot whose messages the test stops passing on, a
jump a robot the test teleports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from dtp_console.bridge.plausibility import implausible_speed
from dtp_console.bridge.silence import SilenceWatchdog
from dtp_console.bridge.worker import Bridge
from dtp_console.config import ConfigError, load_config
from dtp_console.config.model import ConsoleConfig, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.headless import stats_line
from dtp_console.simulator.amr import DEFAULT_START_MS, AmrFleet
from dtp_console.state import DeviceState, PlantState, RobotFacts
from dtp_console.twinzo.client import TwinzoClient

WALL_S = DEFAULT_START_MS / 1000


def _plant(**changes: Any) -> PlantConfig:
    body: dict[str, Any] = {
        "name": "HiTech Plant",
        "format": "hitech",
        "device_map": {f"hitech-amr-00{i}": f"tugger-0{i}" for i in range(1, 5)},
        "twinzo": {"sector_id": 1},
        "bounds": {"x_min": 0, "x_max": 120000, "y_min": 0, "y_max": 80000},
        "min_post_interval_ms": 0,
        "stale_after_s": 10,
        "simulator": {
            "robots": 4,
            "unmapped": 0,
            "rate_hz": 2.0,
            "seed": 5,
            "speed_mm_s": 1500,
            "disconnect_probability": 0,
            "idle_probability": 0,
            "station_stop_s": 1,
        },
        **changes,
    }
    return ConsoleConfig.model_validate({"plants": [body]}).plants[0]


class Rig:
    """A bridge fed by a seeded fleet on a fixed clock (no sockets)."""

    def __init__(self, plant: PlantConfig) -> None:
        self.plant = plant
        self.bus = Bus()
        self.lines = self.bus.subscribe()
        self.now = 1000.0
        self.wall = WALL_S
        self.state = PlantState(plant.name)
        self.log = OpsLog(self.bus, 3600.0)
        self.bridge = Bridge(
            plant,
            TwinzoConfig(),
            cast(TwinzoClient, object()),  # handle() does no I/O
            self.state,
            self.log,
            address=("127.0.0.1", 1),
            wall_clock=lambda: self.wall,
        )
        self.fleet = AmrFleet(plant)
        self.silenced: set[str] = set()
        """Vendor ids whose messages are not passed on (their robots still drive)."""

    def step(self, dt: float = 0.5, *, accept: bool = True) -> list[str]:
        """Advance the fleet; hand its messages in; 'post' the outbox (twinzo accepts)."""
        self.now += dt
        self.wall += dt
        outcomes = []
        stamp = round(self.wall * 1000)
        for topic, payload in self.fleet.step(dt, now_ms=stamp):
            if orjson.loads(payload)["device_id"] in self.silenced:
                continue
            self.state.counters.received += 1  # the MQTT queue counts arrivals
            outcomes.append(self.bridge.handle(topic, payload, now=self.now))
        for location in self.bridge.outbox.take_all():
            self.bridge.outbox.done(location, self.now)
            device = self.state.devices[location.vendor_id]
            if accept and location.login != "tugger-04":
                self.state.counters.count("forwarded")
                device.last_accepted_at, device.refusing_since = self.now, None
                device.last_post_ok, device.last_post_status = True, "200"
            else:  # what the poster does with a 401 for this login
                self.state.counters.count("failed:auth")
                device.last_post_ok, device.last_post_status = False, "401"
                if device.refusing_since is None:
                    device.refusing_since = self.now
        self.bridge.watch.tick(self.now)
        return outcomes

    def run(self, seconds: float, dt: float = 0.5) -> list[str]:
        outcomes: list[str] = []
        for _ in range(round(seconds / dt)):
            outcomes += self.step(dt)
        return outcomes

    def text(self) -> list[str]:
        return [e.render() for e in self.lines.drain() if isinstance(e, LogLine)]


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["silence_reconnect_s", "ghost_after_s", "refused_after_s", "max_speed_mm_s"]
)
def test_negative_bounds_are_refused_at_load_naming_the_field(tmp_path: Path, field: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "plants:\n  - name: Old Plant\n    format: ati_sherpa\n    twinzo: {sector_id: 2}\n"
        f"    {field}: -1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert f"plants[0] (Old Plant).{field}: Input should be greater than or equal to 0" in str(
        info.value
    )


def test_quiet_defaults_and_off_switches() -> None:
    plant = _plant()
    assert (plant.silence_reconnect_s, plant.ghost_after_s, plant.refused_after_s) == (30, 30, 30)
    assert (plant.max_speed_mm_s, plant.drop_implausible) == (3000, False)
    off = _plant(silence_reconnect_s=0, ghost_after_s=0, refused_after_s=0, max_speed_mm_s=0)
    assert off.silence_reconnect_s == 0
    with pytest.raises(ValueError, match="at least 1 s"):
        _plant(silence_reconnect_s=0.2)
    with pytest.raises(ValueError, match="finite"):
        _plant(max_speed_mm_s=float("inf"))


# --- the silence watchdog -----------------------------------------------------------------


def _watchdog(bound: float = 30.0) -> tuple[SilenceWatchdog, PlantState, Bus]:
    plant = _plant(silence_reconnect_s=bound)
    state = PlantState(plant.name, mqtt="connected", connects=1)
    bus = Bus()
    return SilenceWatchdog(plant, state, OpsLog(bus, 3600.0)), state, bus


def test_watchdog_waits_for_robots_that_reported_before() -> None:
    dog, state, _ = _watchdog()
    for t in range(0, 600, 5):  # connected, never a message: nothing to miss yet
        dog.poll(float(t))
    assert not dog.reconnect.is_set()
    assert (state.silent, state.silence_reconnects) == (False, 0)


def test_watchdog_reconnects_once_per_bound_with_backoff_and_logs_once() -> None:
    dog, state, bus = _watchdog(30.0)
    lines = bus.subscribe()
    dog.poll(0.0)
    state.counters.received = 5
    dog.poll(1.0)  # messages: armed, last activity at 1.0
    dog.poll(30.5)
    assert not state.silent and not dog.reconnect.is_set()
    dog.poll(31.0)
    assert state.silent and dog.reconnect.is_set()
    assert state.silence_reconnects == 1
    # The source reconnects (and clears the event); still nothing arrives.
    state.connects += 1
    dog.reconnect.clear()
    dog.poll(32.0)
    dog.poll(91.0)  # 59 s after the reconnect: the second waits 2 × 30 s
    assert not dog.reconnect.is_set()
    dog.poll(92.0)
    assert dog.reconnect.is_set() and state.silence_reconnects == 2
    text = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    assert text == [
        "WARN MQTT HiTech Plant: no message for 30s although robots were reporting and the"
        " connection is up; reconnecting and resubscribing (silence_reconnect_s: 30)"
    ]
    state.connects += 1
    dog.reconnect.clear()
    state.counters.received += 1
    dog.poll(100.0)
    assert not state.silent
    text = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    assert text == [
        "INFO MQTT HiTech Plant: messages flow again after 99s of silence (2 silence reconnects)"
    ]


def test_watchdog_backoff_is_capped() -> None:
    dog, state, _ = _watchdog(10.0)
    state.counters.received = 1
    dog.poll(0.0)
    now = 0.0
    for _ in range(6):
        while not dog.reconnect.is_set():
            now += 1.0
            dog.poll(now)
        state.connects += 1
        dog.reconnect.clear()
        dog.poll(now)
    gaps = []
    last = now
    for _ in range(2):
        while not dog.reconnect.is_set():
            now += 1.0
            dog.poll(now)
        gaps.append(now - last)
        last = now
        state.connects += 1
        dog.reconnect.clear()
        dog.poll(now)
    assert gaps == [80.0, 80.0]  # 8 × the bound, never longer


def test_watchdog_is_silent_but_does_not_reconnect_while_disconnected() -> None:
    dog, state, _ = _watchdog(30.0)
    state.counters.received = 1
    dog.poll(0.0)
    state.mqtt = "disconnected"
    dog.poll(40.0)
    assert state.silent  # readiness sees it
    assert not dog.reconnect.is_set() and state.silence_reconnects == 0


def test_watchdog_off() -> None:
    dog, state, _ = _watchdog(0.0)
    state.counters.received = 1
    dog.poll(0.0)
    dog.poll(10_000.0)
    assert not state.silent and not dog.reconnect.is_set()


# --- ghosts ---------------------------------------------------------------------------------


def test_a_robot_whose_messages_stop_while_its_plant_reports_is_a_quiet_ghost() -> None:
    rig = Rig(_plant(ghost_after_s=20))
    rig.run(10)
    rig.text()
    rig.silenced.add("hitech-amr-002")
    rig.run(20)
    quiet = rig.state.devices["hitech-amr-002"]
    assert quiet.ghost is None  # 20 s is not past the bound yet
    rig.run(1)
    assert quiet.ghost == "quiet"
    assert [d.ghost for v, d in sorted(rig.state.devices.items()) if v != quiet.vendor_id] == [
        None,
        None,
        "refused",  # tugger-04: twinzo answers 401 to every post
    ]
    assert rig.state.ghost_episodes == {"quiet": 1, "refused": 1}
    assert quiet.ghost_episodes == {"quiet": 1}
    age = quiet.message_age_s(rig.now)
    assert age is not None and 20 < age <= 21
    accepted = quiet.accepted_age_s(rig.now)
    assert accepted is not None and 20 < accepted <= 21
    text = rig.text()
    assert any(
        t.startswith("WARN Ghost robot tugger-02 (HiTech:hitech-amr-002) in HiTech Plant:"
                     " no message for 2") and t.endswith("s while its plant reports")
        for t in text
    ), text  # fmt: skip
    rig.run(30)
    assert rig.text() == []  # once per episode
    rig.silenced.clear()
    rig.run(1)
    assert quiet.ghost is None
    assert [t for t in rig.text() if "reports again" in t] == [
        "INFO Robot tugger-02 (HiTech:hitech-amr-002) in HiTech Plant reports again (ghost for 31s)"
    ]
    assert rig.state.ghost_episodes["quiet"] == 1


def test_a_whole_plant_going_silent_makes_no_ghosts() -> None:
    rig = Rig(_plant(ghost_after_s=20, refused_after_s=0))
    rig.run(10)
    rig.silenced.update(rig.fleet.robots)
    rig.run(60)
    assert [d.ghost for d in rig.state.devices.values()] == [None] * 4
    assert not rig.state.ghost_episodes


def test_twinzo_refusing_a_robot_whose_messages_flow_is_a_refused_ghost() -> None:
    rig = Rig(_plant(refused_after_s=15))
    rig.run(15)
    refused = rig.state.devices["hitech-amr-004"]
    assert refused.ghost is None
    rig.run(1.5)
    assert refused.ghost == "refused"
    assert refused.accepted_age_s(rig.now) is None  # twinzo never accepted one
    message_age = refused.message_age_s(rig.now)
    assert message_age is not None and message_age < 1
    assert any(
        "Ghost robot tugger-04 (HiTech:hitech-amr-004) in HiTech Plant: twinzo has refused its"
        " positions for 1"
        in t
        and t.endswith("s while its messages arrive (last: 401)")
        for t in rig.text()
    )
    stats = rig.state.as_dict(rig.now)
    assert stats["ghosts"] == ["tugger-04"]
    device = stats["devices"]["tugger-04"]
    assert device["ghost"] == "refused" and device["accepted_age_s"] is None
    assert device["message_age_s"] == pytest.approx(message_age, abs=1e-3)
    assert stats["devices"]["tugger-01"]["accepted_age_s"] == pytest.approx(
        stats["devices"]["tugger-01"]["message_age_s"], abs=0.5
    )
    # A refused robot whose messages then stop is a quiet ghost (its plant still reports).
    rig.silenced.add("hitech-amr-004")
    rig.run(31)
    assert refused.ghost == "quiet"
    assert refused.ghost_episodes == {"refused": 1, "quiet": 1}
    assert any("stopped sending while twinzo refused it" in t for t in rig.text())


# --- plausibility -----------------------------------------------------------------------------


def test_speed_uses_vendor_stamps_when_sane_and_receive_time_with_jitter_otherwise() -> None:
    # 5 m in 1 s of vendor time: 5 m/s against a 3 m/s limit.
    assert implausible_speed(3000, (0, 0, 0.0, 1000), (5000, 0, 0.1, 2000), 10) == 5000
    # The same move with receive times only: 5 m in 0.1 s + 1 s jitter is 4.5 m/s.
    assert implausible_speed(3000, (0, 0, 0.0, None), (5000, 0, 0.1, None), 10) == pytest.approx(
        5000 / 1.1
    )
    # Within the limit plus localization noise.
    assert implausible_speed(3000, (0, 0, 0.0, 0), (3050, 0, 1.0, 1000), 10) is None
    # After a gap longer than `gap_s` a robot may be anywhere.
    assert implausible_speed(3000, (0, 0, 0.0, 0), (90_000, 0, 11.0, 1000), 10) is None
    # A stamp that does not advance falls back to receive time.
    assert implausible_speed(3000, (0, 0, 0.0, 5), (9000, 0, 1.0, 5), 10) == 4500


def _teleport(rig: Rig, vendor_id: str, dx: float) -> None:
    robot = rig.fleet.robots[vendor_id]
    robot.x = min(max(robot.x + dx, 1000.0), 119_000.0)


def test_a_teleported_robot_is_flagged_and_counted_but_forwarded_by_default() -> None:
    rig = Rig(_plant())
    outcomes = rig.run(20)
    assert rig.state.implausible_jumps == 0  # the seeded fleet drives at 1.5 m/s
    rig.text()
    _teleport(rig, "hitech-amr-001", 60_000)
    outcomes += rig.run(5)
    device = rig.state.devices["hitech-amr-001"]
    assert device.implausible_jumps == 1 and rig.state.implausible_jumps == 1
    assert device.last_jump is not None and not device.last_jump.dropped
    assert device.last_jump.speed_mm_s > 50_000  # ~60 m in one 0.5 s report interval
    assert device.x == pytest.approx(rig.fleet.robots["hitech-amr-001"].x, abs=1)
    assert "rejected:implausible_jump" not in outcomes
    assert any(
        t.startswith("WARN Implausible jump of hitech-amr-001 (tugger-01) in HiTech Plant:")
        and t.endswith("max 3 m/s; forwarded, flagged")
        for t in rig.text()
    )
    assert rig.state.as_dict(rig.now)["devices"]["tugger-01"]["implausible_jumps"] == 1
    _accounted(rig)


def test_drop_implausible_rejects_the_jump_and_accepts_a_robot_that_really_moved() -> None:
    rig = Rig(_plant(drop_implausible=True))
    rig.run(20)
    _teleport(rig, "hitech-amr-001", 60_000)
    before = rig.state.devices["hitech-amr-001"].x
    first = rig.step()
    first += rig.step()
    device = rig.state.devices["hitech-amr-001"]
    assert first.count("rejected:implausible_jump") == 1
    assert device.last_jump is not None and device.last_jump.dropped
    assert device.last_jump.start[0] == before
    rig.run(5)  # its next report at the new place is consistent: it really moved
    assert device.x == pytest.approx(rig.fleet.robots["hitech-amr-001"].x, abs=1)
    assert device.implausible_jumps == 1
    assert rig.state.counters.outcomes["rejected:implausible_jump"] == 1
    _accounted(rig)


def test_a_first_position_or_one_after_a_long_gap_is_never_a_jump() -> None:
    rig = Rig(_plant(drop_implausible=True))
    rig.run(5)
    rig.silenced.add("hitech-amr-002")
    rig.run(11)  # longer than stale_after_s without a position
    _teleport(rig, "hitech-amr-002", 60_000)
    rig.silenced.clear()
    outcomes = rig.run(3)
    assert "rejected:implausible_jump" not in outcomes
    assert rig.state.implausible_jumps == 0


def test_plausibility_off() -> None:
    rig = Rig(_plant(max_speed_mm_s=0, drop_implausible=True))
    rig.run(5)
    _teleport(rig, "hitech-amr-001", 60_000)
    rig.run(2)
    assert rig.state.implausible_jumps == 0


def _accounted(rig: Rig) -> None:
    counters = rig.state.counters
    assert counters.pending == 0
    assert counters.received == sum(counters.outcomes.values())


def test_stats_line_shows_silence_ghosts_and_jumps_only_when_there_are_any() -> None:
    rig = Rig(_plant(refused_after_s=0))
    rig.run(2)
    assert "ghosts" not in stats_line(rig.state) and "SILENT" not in stats_line(rig.state)
    rig.silenced.add("hitech-amr-001")
    _teleport(rig, "hitech-amr-002", 60_000)
    rig.run(31)
    rig.state.silent, rig.state.silence_reconnects = True, 2
    line = stats_line(rig.state)
    assert line.startswith("STATS HiTech Plant: mqtt stopped (SILENT) | rx ")
    assert line.endswith(" ghosts 1 jumps 1 silence-reconnects 2")


def test_hostile_ids_reach_ghost_and_jump_lines_as_escaped_text() -> None:
    hostile = "[b]amr-ü\u202e"
    plant = _plant(
        device_map={hostile: "tugger-09", "hitech-amr-002": "tugger-02"}, refused_after_s=0
    )
    rig = Rig(plant)
    rig.run(2)
    _teleport(rig, hostile, 60_000)
    rig.run(1)
    rig.silenced.add(hostile)
    rig.run(31)
    assert rig.state.devices[hostile].ghost == "quiet"
    text = [t for t in rig.text() if "Ghost robot" in t or "Implausible jump" in t]
    assert len(text) == 2
    assert all("[b]amr-ü\\u202e" in t and "\u202e" not in t for t in text), text


def test_the_watch_looks_a_few_times_per_shortest_bound() -> None:
    assert Rig(_plant()).bridge.watch.tick_s == 1.0
    assert Rig(_plant(refused_after_s=2)).bridge.watch.tick_s == 0.5
    off = _plant(silence_reconnect_s=0, ghost_after_s=0, refused_after_s=0)
    assert Rig(off).bridge.watch.tick_s == 1.0
    assert Rig(_plant(ghost_after_s=0.1)).bridge.watch.tick_s == 0.05


# -- VDA 5050 presence meets the quiet-robot checks ---------------------------------


def test_a_robot_that_said_offline_is_not_a_ghost() -> None:
    rig = Rig(_plant(ghost_after_s=20, refused_after_s=0))
    rig.run(10)
    gone = rig.state.devices["hitech-amr-002"]
    gone.robot = RobotFacts(connection="OFFLINE")
    rig.silenced.add("hitech-amr-002")
    rig.run(40)
    assert gone.ghost is None
    assert rig.state.ghost_episodes["quiet"] == 0
    gone.robot.connection = "ONLINE"  # back online but still quiet: now it is one
    rig.run(1)
    assert gone.ghost == "quiet"


def test_a_plant_whose_robots_all_signed_off_is_not_silent() -> None:
    dog, state, _ = _watchdog(30.0)
    state.counters.received = 10
    dog.poll(0.0)
    for vendor in ("a", "b"):
        device = state.devices[vendor] = DeviceState(vendor, vendor)
        device.robot = RobotFacts(connection="OFFLINE" if vendor == "a" else "CONNECTIONBROKEN")
    for t in range(5, 300, 5):
        dog.poll(float(t))
    assert (state.silent, state.silence_reconnects) == (False, 0)
    assert not dog.reconnect.is_set()
    state.devices["b"].robot = RobotFacts(connection="ONLINE")  # one still claims to be there
    dog.poll(300.0)
    assert state.silent and dog.reconnect.is_set()
