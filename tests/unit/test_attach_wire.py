"""Attach wire protocol: config without secrets, state round trips, per-client deltas."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dtp_console.attach import shapes
from dtp_console.attach.wire import (
    PLACEHOLDER,
    PROTOCOL,
    Differ,
    config_from_wire,
    config_to_wire,
    decode_auth_into,
    decode_device_into,
    decode_plant_summary_into,
    encode_auth,
    encode_device,
    encode_plant_summary,
    map_etag,
    new_device,
)
from dtp_console.config.model import ConsoleConfig
from dtp_console.state import (
    AuthState,
    DeviceState,
    Jump,
    PlantState,
    RobotFacts,
    SequenceCounters,
)
from dtp_console.urls import parse_pg_dsn
from tests.support.api import token_entries
from tests.support.mosquitto import make_tls_files

#: Test placeholders standing in for secrets: each must never reach the wire.
SECRETS = {
    "twinzo": "tw-secret-pass-41",
    "api_key": "tw-secret-key-42",
    "plant_twinzo": "plant-secret-43",
    "broker": "broker-secret-44",
    "pg": "pg-secret-45",
    "pg_query": "pgq-secret-46",
    "influx": "influx-secret-47",
    "neo4j": "neo4j-secret-48",
    "s3": "s3-secret-49",
    "ha": "ha-secret-50",
    "registry": "reg-secret-51",
    "platform": "platform-secret-52",
    "url": "url-secret-53",
}

HOSTILE_IDS = [
    "ctl\x00\x1b[31m\x07id",
    "[bold red]markup[/]",
    "<script>alert(1)</script>",
    "ünïcødé-机器人-🤖",
    "x" * 10_000,
]


def _config_data(ca: Path | None = None) -> dict[str, Any]:
    plant: dict[str, Any] = {
        "name": "Hall A",
        "format": "ati_sherpa",
        "broker": {
            "host": "127.0.0.1",
            "port": 1883,
            "username": "u",
            "password": SECRETS["broker"],
            **({"tls": True, "ca_file": str(ca)} if ca else {}),
        },
        "device_map": {vid: f"login-{i}" for i, vid in enumerate(HOSTILE_IDS)},
        "twinzo": {"sector_id": 2, "password": SECRETS["plant_twinzo"]},
    }
    return {
        "twinzo": {
            "base_url": f"https://user:{SECRETS['url']}@twinzo.example",
            "client": "demo",
            "password": SECRETS["twinzo"],
            "api_key": SECRETS["api_key"],
        },
        "plants": [plant],
        "stores": {
            "postgres": {
                "dsn": f"postgresql://dtp:{SECRETS['pg']}@db.example:5432/dtp"
                f"?sslmode=require&password={SECRETS['pg_query']}",
                **({"ca_file": str(ca)} if ca else {}),
            },
            "influx": {"url": "http://127.0.0.1:8086", "token": SECRETS["influx"]},
            "neo4j": {"uri": "bolt://127.0.0.1:7687", "password": SECRETS["neo4j"]},
            "s3": {"endpoint": "127.0.0.1:9000", "access_key": "ak", "secret_key": SECRETS["s3"]},
        },
        "ha": {"enabled": True, "dsn": f"postgresql://ha:{SECRETS['ha']}@db.example/ha"},
        "registry": {"postgres_dsn": f"postgres://r:{SECRETS['registry']}@db.example/reg"},
        "platform": {"broker": {"host": "127.0.0.1", "password": SECRETS["platform"]}},
        "api": {"tokens": [t.model_dump() for t in token_entries()]},
    }


def _assert_no_secret(wire: dict[str, Any]) -> None:
    text = json.dumps(wire, ensure_ascii=False)
    for name, secret in SECRETS.items():
        assert secret not in text, name
    for token in token_entries():
        assert token.hash not in text


def test_config_wire_carries_no_secret_and_round_trips() -> None:
    config = ConsoleConfig.model_validate(_config_data())
    wire = config_to_wire(config)
    _assert_no_secret(wire)
    assert wire["protocol"] == PROTOCOL
    assert wire["twinzo"]["password"] == PLACEHOLDER
    assert wire["plants"][0]["broker"]["password"] == PLACEHOLDER
    assert wire["twinzo"]["base_url"] == "https://***@twinzo.example"
    assert wire["api"]["tokens"] == []
    # A DSN keeps what it says about the server (it still parses), not its password.
    dsn = parse_pg_dsn(wire["stores"]["postgres"]["dsn"])
    assert (dsn.user, dsn.database, dsn.sslmode) == ("dtp", "dtp", "require")
    assert dsn.hosts == (("db.example", 5432),)

    back = config_from_wire(wire)
    assert config_to_wire(back) == wire
    assert back.plants[0].device_map == config.plants[0].device_map
    assert back.twinzo.password.get_secret_value() == PLACEHOLDER
    assert back.ha.enabled


def test_hostile_vendor_ids_stay_text_in_the_config() -> None:
    wire = config_to_wire(ConsoleConfig.model_validate(_config_data()))
    text = json.dumps(wire)
    back = config_from_wire(json.loads(text))
    assert list(back.plants[0].device_map) == HOSTILE_IDS


def test_server_paths_are_kept_when_missing_on_the_client(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    config = ConsoleConfig.model_validate(_config_data(ca=tls.ca))
    wire = config_to_wire(config)
    shutil.rmtree(tmp_path / "tls")  # the client's host has no such file
    back = config_from_wire(wire)
    assert back.plants[0].broker.ca_file == tls.ca
    assert back.stores.postgres.ca_file == tls.ca
    assert config_to_wire(back) == wire


def test_unknown_protocol_is_refused() -> None:
    wire = config_to_wire(ConsoleConfig())
    with pytest.raises(ValueError, match="protocol 2"):
        config_from_wire({**wire, "protocol": 2})
    with pytest.raises(ValueError, match="protocol None"):
        config_from_wire({k: v for k, v in wire.items() if k != "protocol"})


def test_map_etag_is_canonical() -> None:
    one = map_etag({"a": "x", "b": "y"})
    assert one == map_etag({"b": "y", "a": "x"})
    assert one != map_etag({"a": "x", "b": "z"})
    assert one.startswith('"') and one.endswith('"') and len(one) == 18
    assert map_etag(dict.fromkeys(HOSTILE_IDS, "l")) == map_etag(dict.fromkeys(HOSTILE_IDS, "l"))


def _rich_device(vendor_id: str = "amr-1") -> DeviceState:
    d = DeviceState(vendor_id, "login-1")
    d.x, d.y, d.z = 1234.56789, -98.76543, 0.04
    d.vendor_x, d.vendor_y = 1.234567, 2.345678
    d.battery = 87.654
    d.moving = True
    d.robot = RobotFacts(
        connection="ONLINE",
        driving=True,
        operating_mode="AUTOMATIC",
        e_stop="NONE",
        errors=(("WARNING", "low battery"), ("FATAL", "[red]x[/]")),
        map_id="m1",
        localization_score=0.875,
        header_ids={"state": 7},
        lost=2,
        restarts=1,
        duplicates=3,
    )
    d.messages = 42
    d.last_message_at = 1000.0001
    d.posts_ok, d.posts_failed = 40, 2
    d.last_post_status, d.last_post_ok = "200", True
    d.last_post_latency_ms = 12.345
    d.last_post_at = 999.5
    d.last_error = "timeout \x1b[2J"
    for offset in (-20, -10, -30):
        d.clock.add(offset)
    d.last_heard_at = 1000.2
    d.last_accepted_at = 999.5
    d.refusing_since = 990.0
    d.ghost, d.ghost_since = "quiet", 995.0
    d.ghost_episodes = Counter({"quiet": 2, "refused": 1})
    d.implausible_jumps = 1
    d.last_jump = Jump(start=(1.0, 2.0), end=(50000.04, 3.0), speed_mm_s=123456.78, at=998.0,
                       dropped=True)  # fmt: skip
    d.position_at = 999.9
    return d


def test_device_round_trip_with_monotonic_offset() -> None:
    d = _rich_device()
    wire = json.loads(json.dumps(encode_device(d)))
    offset = 500.0  # the client's monotonic clock is 500 s ahead of the service's
    back = new_device(wire, offset)
    for now in (1000.5, 1010.0):
        assert back.message_age_s(now + offset) == pytest.approx(d.message_age_s(now), abs=1e-3)
        assert back.heard_age_s(now + offset) == pytest.approx(d.heard_age_s(now), abs=1e-3)
        assert back.accepted_age_s(now + offset) == pytest.approx(d.accepted_age_s(now))
    assert back.x == 1234.6 and back.y == -98.8 and back.battery == 87.7
    assert back.vendor_x == 1.2346
    assert back.last_post_latency_ms == 12.3
    assert back.clock_offset_ms == d.clock_offset_ms == -20
    assert back.clock.samples == 3
    assert back.robot is not None and d.robot is not None
    assert back.robot.errors == d.robot.errors
    assert back.robot.worst_error == "FATAL" and not back.robot.offline
    assert back.ghost == "quiet" and back.ghost_since == pytest.approx(995.0 + offset)
    assert back.refusing_since == pytest.approx(990.0 + offset)
    assert back.ghost_episodes == d.ghost_episodes
    assert back.last_jump is not None
    assert back.last_jump.at == pytest.approx(998.0 + offset)
    assert back.last_jump.end == (50000.0, 3.0) and back.last_jump.dropped
    assert back.last_error == d.last_error
    # What readers show of it is the same on both ends.
    mine, theirs = d.as_dict(1001.0), back.as_dict(1001.0 + offset)
    for key in ("messages", "posts_ok", "ghost", "clock_offset_ms", "clock_samples", "robot"):
        assert mine[key] == theirs[key], key


def test_device_decode_applies_a_partial_delta() -> None:
    d = new_device(json.loads(json.dumps(encode_device(_rich_device()))), 0.0)
    decode_device_into(d, {"x": 5.0, "robot": None, "last_jump": None}, 0.0)
    assert (d.x, d.y, d.robot, d.last_jump) == (5.0, -98.8, None, None)
    assert d.messages == 42


@pytest.mark.parametrize("vendor_id", HOSTILE_IDS)
def test_hostile_device_ids_stay_text(vendor_id: str) -> None:
    d = DeviceState(vendor_id, vendor_id[::-1])
    d.last_error = vendor_id
    wire = json.loads(json.dumps(encode_device(d)))
    back = new_device(wire, 0.0)
    assert (back.vendor_id, back.login, back.last_error) == (vendor_id, vendor_id[::-1], vendor_id)


def test_plant_summary_round_trip() -> None:
    p = PlantState("Hall A")
    p.set_mqtt("connected")
    p.mqtt_error = "refused"
    p.connects = 3
    p.counters.received = 10
    p.counters.count("forwarded", 7)
    p.counters.count("rejected:bad", 2)
    for vid in HOSTILE_IDS:
        p.note_unknown(vid)
    p.timestamps_converted["s"] = 4
    p.clock_restamped["ahead"] = 1
    p.sequence = SequenceCounters(lost=1, restarts=2, duplicates=3, unknown_maps=Counter(m=2))
    p.warnings = ["TLS verification off"]
    p.silent, p.silence_reconnects = True, 2
    p.ghost_episodes["quiet"] = 5
    p.ha_role, p.ha_holder, p.ha_since = "standby", "other:12", 1.7e9
    p.devices["x"] = DeviceState("x", "y")
    wire = json.loads(json.dumps(encode_plant_summary(p)))
    assert "devices" not in wire
    back = PlantState("Hall A")
    decode_plant_summary_into(back, wire)
    assert back.counters.pending == p.counters.pending == 1
    assert back.counters.outcomes == p.counters.outcomes
    assert back.unknown == p.unknown
    assert back.sequence == p.sequence
    same = ("mqtt", "mqtt_since", "mqtt_error", "connects", "warnings", "silent",
            "ghost_episodes", "ha_role", "ha_holder", "ha_since", "clock_restamped")  # fmt: skip
    for name in same:
        assert getattr(back, name) == getattr(p, name), name
    assert back.devices == {}


def test_the_plant_summary_carries_every_plant_state_field() -> None:
    # A field added to `PlantState` must reach attached consoles (and their shape check):
    # the encoder, the decoder and `attach.shapes` list the fields each, so they can drift.
    fields = {f.name for f in dataclasses.fields(PlantState)} - {"devices"}
    wire = encode_plant_summary(PlantState("Hall A"))
    assert set(wire) == fields
    assert set(shapes._PLANT) == fields
    p = PlantState("Hall A")
    p.watch_restarts = 4
    back = PlantState("Hall A")
    decode_plant_summary_into(back, json.loads(json.dumps(encode_plant_summary(p))))
    assert back.watch_restarts == 4


def test_the_device_wire_carries_every_device_field_but_the_bridges_own() -> None:
    # The bridge's duplicate, order and jump references stay in the service: a UI
    # never draws them. Any other field added to `DeviceState` must travel.
    bridge_only = {
        "jump_candidate", "last_timestamp_ms", "last_vendor_timestamp_ms", "position_stamp_ms",
    }  # fmt: skip
    fields = {f.name for f in dataclasses.fields(DeviceState)}
    wire = set(encode_device(DeviceState("amr-1", "tugger-1")))
    assert wire == fields - bridge_only
    assert set(shapes._DEVICE) == wire


def test_auth_round_trip() -> None:
    a = AuthState("login-1", status="valid", expires_at=1.7e9, last_result="200",
                  authentications=2, refreshes=1)  # fmt: skip
    back = AuthState("login-1")
    decode_auth_into(back, json.loads(json.dumps(encode_auth(a))))
    assert back == a


def _frame(devices: dict[str, DeviceState], summary: PlantState) -> dict[str, Any]:
    return {
        "plants": {
            "Hall A": {
                "plant": encode_plant_summary(summary),
                "devices": {vid: encode_device(d) for vid, d in devices.items()},
            }
        },
        "auth": {"login-1": encode_auth(AuthState("login-1"))},
        "twinzo_url": "http://127.0.0.1:1",
        "platform": None,
        "stores": None,
    }


def test_differ_snapshot_then_only_changes() -> None:
    plant = PlantState("Hall A")
    devices = {"a": _rich_device("a"), "b": _rich_device("b")}
    differ = Differ()
    first = differ.diff(_frame(devices, plant))
    assert first is not None and set(first["plants"]["Hall A"]["devices"]) == {"a", "b"}
    assert differ.diff(_frame(devices, plant)) is None  # unchanged: nothing to send

    devices["a"].x = 1.0
    plant.connects = 9
    delta = differ.diff(_frame(devices, plant))
    assert delta == {"plants": {"Hall A": {"plant": {"connects": 9}, "devices": {"a": {"x": 1.0}}}}}

    del devices["b"]
    assert differ.diff(_frame(devices, plant)) == {"plants": {"Hall A": {"devices": {"b": None}}}}
    devices["c"] = DeviceState("c", "login-c")
    delta = differ.diff(_frame(devices, plant))
    assert delta is not None
    assert delta["plants"]["Hall A"]["devices"]["c"] == encode_device(devices["c"])


def test_differ_removed_plant_and_login_are_null() -> None:
    differ = Differ()
    frame = _frame({}, PlantState("Hall A"))
    differ.diff(frame)
    gone = {**frame, "plants": {}, "auth": {}, "stores": {"x": 1}}
    assert differ.diff(gone) == {
        "plants": {"Hall A": None},
        "auth": {"login-1": None},
        "stores": {"x": 1},
    }
