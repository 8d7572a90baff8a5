"""A config reload applies every live field everywhere, and names what needs a restart.

The engine runs against the twinzo sandbox with its broker down (the bridge's
intake path is driven directly with `Bridge.handle`), so each test sees what
the running bridge, its poster and its watch do with the new file.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dtp_console.config import load_config
from dtp_console.events import LogLine, Subscription
from dtp_console.runtime import Engine
from tests.support.engine import running, until
from tests.support.mosquitto import free_port

pytestmark = pytest.mark.integration

PLANT = "Old Plant"
TOPIC = "robots/r1"
#: Secrets in the file: none may ever reach a log line.
SECRETS = ("twinzo-pw-1", "twinzo-pw-2", "api-key-1", "api-key-2", "mqtt-pw-1", "mqtt-pw-2")


def _config(port: int) -> dict[str, Any]:
    return {
        "twinzo": {
            "client": "demo",
            "password": "twinzo-pw-1",
            "api_key": "api-key-1",
            "flush_interval_ms": 20,
            "backoff_initial_s": 0.05,
        },
        "sandbox": {"enabled": True},
        "registry": {"enabled": False},
        "stores": {"enabled": False},
        "api": {"listen": "127.0.0.1:0"},
        "plants": [
            {
                "name": PLANT,
                "format": "generic",
                "broker": {
                    "host": "127.0.0.1",
                    "port": port,
                    "topics": ["robots/+"],
                    "username": "bridge",
                    "password": "mqtt-pw-1",
                    "reconnect_initial_s": 0.1,
                    "reconnect_max_s": 0.5,
                },
                "generic": {"id": "id", "x": "x", "y": "y", "timestamp": "ts"},
                "timestamp_unit": "ms",
                "device_map": {"r1": "tugger-01"},
                "twinzo": {"sector_id": 2},
                "min_post_interval_ms": 0,
            }
        ],
    }


class Rig:
    """A running engine, its config file as data, and its log lines."""

    def __init__(self, engine: Engine, path: Path, data: dict[str, Any]) -> None:
        self.engine, self.path, self.data = engine, path, data
        self.lines: Subscription = engine.bus.subscribe()
        self._seen: list[str] = []

    @property
    def plant(self) -> dict[str, Any]:
        plant: dict[str, Any] = self.data["plants"][0]
        return plant

    def write(self) -> None:
        """Write the file atomically (as editors and the config writer do)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.data, sort_keys=False))
        os.replace(tmp, self.path)

    def reload(self) -> None:
        self.write()
        self.engine.reload()

    def logged(self) -> list[str]:
        self._seen += [e.render() for e in self.lines.drain() if isinstance(e, LogLine)]
        return self._seen

    def handle(self, x: float, y: float, ts: float | None = None, **extra: Any) -> str:
        stamp = time.time() * 1000 if ts is None else ts
        payload = json.dumps({"id": "r1", "x": x, "y": y, "ts": stamp, **extra}).encode()
        return self.engine.bridges[PLANT].handle(TOPIC, payload)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    path = tmp_path / "console.yaml"
    data = _config(free_port())  # nothing listens: the broker is down, intake is driven
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    engine = Engine(load_config(path), config_path=path, simulate=False)
    async with running(engine):
        rig = Rig(engine, path, copy.deepcopy(data))
        yield rig
        leaked = [line for line in rig.logged() if any(s in line for s in SECRETS)]
        assert leaked == []


def _holders(engine: Engine) -> list[Any]:
    """Every object of the running plant that reads its config."""
    bridge = engine.bridges[PLANT]
    return [
        bridge.plant,
        bridge.poster.plant,
        bridge.watch.plant,
        bridge.watch.silence.plant,
        engine.plants[0],
        engine.config.plant(PLANT),
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vendor_label", "Acme"),
        ("movement_threshold_mm", 55.0),
        ("bounds", {"x_min": 0.0, "x_max": 100.0, "y_min": 0.0, "y_max": 100.0}),
        ("drop_out_of_bounds", True),
        ("min_post_interval_ms", 750),
        ("max_payload_bytes", 128),
        ("stale_after_s", 2.5),
        ("timestamp_unit", "s"),
        ("clock_tolerance_s", 5.0),
        ("clock_ahead", "reject"),
        ("clock_behind", "restamp"),
        ("silence_reconnect_s", 4.0),
        ("ghost_after_s", 6.0),
        ("refused_after_s", 7.0),
        ("max_speed_mm_s", 100.0),
        ("drop_implausible", True),
        ("device_map", {"r1": "tugger-01", "r2": "tugger-02"}),
        ("affine", {"a": 2.0, "d": 2.0, "tx": 5.0}),
        ("generic", {"id": "name", "x": "px", "y": "py", "timestamp": "ts"}),
        ("twinzo", {"sector_id": 3, "branch": "b1"}),
    ],
)
async def test_every_live_field_reaches_every_holder(rig: Rig, field: str, value: Any) -> None:
    rig.plant[field] = value
    rig.reload()
    expected = getattr(load_config(rig.path).plant(PLANT), field)
    for holder in _holders(rig.engine):
        assert getattr(holder, field) == expected
    logged = rig.logged()
    assert not any(line.startswith("WARN config") for line in logged), logged
    said = {
        "device_map": f"INFO device map of {PLANT} reloaded (2 devices)",
        "affine": f"INFO affine of {PLANT} reloaded",
    }
    assert said.get(field, f"INFO config of {PLANT} reloaded: {field}") in logged


async def test_new_bounds_drop_out_of_bounds_positions(rig: Rig) -> None:
    assert rig.handle(500.0, 500.0) == "queued"
    rig.plant["bounds"] = {"x_min": 0.0, "x_max": 100.0, "y_min": 0.0, "y_max": 100.0}
    rig.plant["drop_out_of_bounds"] = True
    rig.reload()
    assert rig.handle(600.0, 600.0) == "rejected:out_of_bounds"


async def test_a_new_affine_moves_the_next_position(rig: Rig) -> None:
    rig.plant["affine"] = {"a": 2.0, "d": 2.0, "tx": 5.0}
    rig.reload()
    assert rig.handle(10.0, 10.0) == "queued"
    device = rig.engine.state.plants[PLANT].devices["r1"]
    assert (device.x, device.y) == (25.0, 20.0)


async def test_a_new_timestamp_unit_reads_the_next_stamp(rig: Rig) -> None:
    seconds = time.time()
    assert rig.handle(1.0, 1.0, ts=seconds) == "rejected:clock_behind"  # read as ms: 1970
    rig.plant["timestamp_unit"] = "s"
    rig.reload()
    assert rig.handle(1.0, 1.0, ts=seconds) == "queued"


async def test_new_clock_rules_judge_the_next_stamp(rig: Rig) -> None:
    ahead = (time.time() + 60) * 1000
    assert rig.handle(1.0, 1.0, ts=ahead) == "queued"  # within the default 300 s
    rig.plant["clock_tolerance_s"] = 5.0
    rig.plant["clock_ahead"] = "reject"
    rig.reload()
    assert rig.handle(1.0, 1.0, ts=ahead + 1000) == "rejected:clock_ahead"


async def test_new_plausibility_rules_judge_the_next_jump(rig: Rig) -> None:
    assert rig.handle(0.0, 0.0) == "queued"
    rig.plant["max_speed_mm_s"] = 10.0
    rig.plant["drop_implausible"] = True
    rig.reload()
    await asyncio.sleep(0.05)
    assert rig.handle(50_000.0, 0.0) == "rejected:implausible_jump"


async def test_a_new_payload_limit_applies(rig: Rig) -> None:
    rig.plant["max_payload_bytes"] = 64
    rig.reload()
    assert rig.handle(1.0, 1.0, padding="x" * 80) == "rejected:oversize"


async def test_a_new_generic_mapping_parses_the_next_message(rig: Rig) -> None:
    rig.plant["generic"] = {"id": "name", "x": "px", "y": "py"}
    rig.reload()
    payload = json.dumps({"name": "r1", "px": 3.0, "py": 4.0}).encode()
    assert rig.engine.bridges[PLANT].handle(TOPIC, payload) == "queued"


async def test_a_new_post_interval_reaches_the_outbox(rig: Rig) -> None:
    rig.plant["min_post_interval_ms"] = 750
    rig.reload()
    assert rig.engine.bridges[PLANT].outbox.min_interval_s == 0.75


async def test_new_watch_bounds_set_the_watch_clock(rig: Rig) -> None:
    rig.plant.update(silence_reconnect_s=0, ghost_after_s=2.0, refused_after_s=2.0)
    rig.reload()
    assert rig.engine.bridges[PLANT].watch.tick_s == pytest.approx(0.5)


async def test_a_new_device_password_re_authenticates(rig: Rig) -> None:
    counters = rig.engine.state.plants[PLANT].counters
    assert rig.handle(1.0, 1.0) == "queued"
    await until(lambda: counters.outcomes["forwarded"] == 1, what="first post")
    rig.plant["twinzo"] = {"sector_id": 2, "password": "twinzo-pw-2"}  # the sandbox refuses it
    rig.reload()
    assert rig.handle(2.0, 2.0) == "queued"
    await until(lambda: counters.outcomes["failed:auth"] >= 1, what="a refused login")
    assert counters.outcomes["forwarded"] == 1


async def test_new_twinzo_posting_settings_reach_the_poster(rig: Rig) -> None:
    rig.data["twinzo"].update({"flush_interval_ms": 250, "max_attempts": 5, "batch_max_devices": 7})
    rig.reload()
    poster = rig.engine.bridges[PLANT].poster
    assert poster.twinzo.flush_interval_ms == 250
    assert poster.twinzo.max_attempts == 5
    assert poster.twinzo.batch_max_devices == 7
    assert rig.engine.config.twinzo.flush_interval_ms == 250
    assert "INFO config of twinzo reloaded: max_attempts, flush_interval_ms, batch_max_devices" in (
        rig.logged()
    )


async def test_the_housekeeping_task_reloads_a_changed_file(rig: Rig) -> None:
    rig.plant["stale_after_s"] = 2.5
    await asyncio.sleep(0.05)
    rig.write()
    stat = rig.path.stat()
    os.utime(rig.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    bridge = rig.engine.bridges[PLANT]
    await until(lambda: bridge.watch.plant.stale_after_s == 2.5, timeout=5, what="reload")
    assert rig.engine.plants[0].stale_after_s == 2.5


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("broker", "host", "10.9.9.9"),
        ("broker", "port", 1),
        ("broker", "tls", True),
        ("broker", "topics", ["other/+"]),
        ("broker", "client_id", "console-2"),
        ("broker", "password", "mqtt-pw-2"),
        (None, "format", "hitech"),
        (None, "enabled", False),
    ],
)
async def test_restart_only_fields_warn_and_keep_the_old_value(
    rig: Rig, section: str | None, field: str, value: Any
) -> None:
    before = rig.engine.bridges[PLANT].plant
    target = rig.plant if section is None else rig.plant[section]
    target[field] = value
    rig.plant["stale_after_s"] = 2.5  # a live change in the same file still applies
    rig.reload()
    path = f"plants[{PLANT}].{field if section is None else f'{section}.{field}'}"
    assert (
        f"WARN config change to {path} needs a restart; still running with the old value"
        in rig.logged()
    )
    for holder in _holders(rig.engine):
        assert holder.stale_after_s == 2.5
        old = before if section is None else getattr(before, section)
        now = holder if section is None else getattr(holder, section)
        assert getattr(now, field) == getattr(old, field)


async def test_the_warning_repeats_while_the_file_differs_and_names_nothing_else(
    rig: Rig,
) -> None:
    rig.plant["broker"]["host"] = "10.9.9.9"
    rig.reload()
    rig.reload()
    warns = [line for line in rig.logged() if line.startswith("WARN config")]
    assert len(warns) == 2
    assert len(set(warns)) == 1


async def test_restart_only_secrets_are_named_never_shown(rig: Rig) -> None:
    rig.data["twinzo"]["api_key"] = "api-key-2"
    rig.plant["broker"]["password"] = "mqtt-pw-2"
    rig.reload()
    logged = rig.logged()
    assert (
        "WARN config change to twinzo.api_key needs a restart; still running with the old value"
        in logged
    )
    assert any("broker.password" in line for line in logged)
    # The fixture checks that no secret value reached any line.


async def test_a_new_global_password_is_used_and_never_shown(rig: Rig) -> None:
    rig.data["twinzo"]["password"] = "twinzo-pw-2"
    rig.reload()
    assert rig.engine.config.twinzo.password.get_secret_value() == "twinzo-pw-2"
    logged = rig.logged()
    assert "INFO config of twinzo reloaded: password" in logged
    # The sandbox was started with the old one (it stands in for twinzo here).
    assert (
        "WARN the twinzo sandbox keeps accepting the old twinzo.password until a restart" in logged
    )


async def test_added_and_removed_plants_need_a_restart(rig: Rig) -> None:
    other = copy.deepcopy(rig.plant)
    other["name"] = "New Plant"
    rig.data["plants"] = [other]
    rig.reload()
    logged = rig.logged()
    assert (
        f"WARN config change to plants[{PLANT}] (removed or renamed) needs a restart; "
        "still running with the old value" in logged
    )
    assert (
        "WARN config change to plants[New Plant] (added) needs a restart; "
        "still running with the old value" in logged
    )
    assert [p.name for p in rig.engine.plants] == [PLANT]
    assert [p.name for p in rig.engine.config.plants] == [PLANT]
    assert rig.handle(1.0, 1.0) == "queued"


async def test_an_invalid_file_keeps_everything_running_old(rig: Rig) -> None:
    rig.plant["stale_after_s"] = 2.5
    rig.plant["max_speed_mm_s"] = -1  # invalid: the whole file is refused
    rig.reload()
    assert any(
        line.startswith("WARN config reload failed, keeping the running config")
        for line in rig.logged()
    )
    for holder in _holders(rig.engine):
        assert holder.stale_after_s == 10.0


async def test_commands_keep_the_config_and_the_plants_in_step(rig: Rig) -> None:
    engine = rig.engine
    await engine.save_device_map(PLANT, {"r1": "tugger-01", "r9": "tugger-09"})
    await engine.save_affine(
        PLANT, {"a": 2, "b": 0, "c": 0, "d": 2, "tx": 1, "ty": 1}, reason="test"
    )
    for holder in _holders(engine):
        assert holder.device_map == {"r1": "tugger-01", "r9": "tugger-09"}
        assert (holder.affine.a, holder.affine.tx) == (2.0, 1.0)
    # The file now says the same: a reload changes nothing and says nothing.
    lines_before = len(rig.logged())
    engine.reload()
    assert rig.logged()[lines_before:] == []
