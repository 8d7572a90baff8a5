"""What a config reload takes live, and what it keeps (and names) until a restart."""

from __future__ import annotations

from typing import Any

import pytest

from dtp_console.config.model import ConsoleConfig
from dtp_console.config.reload import LIVE_PLANT_FIELDS, plan_reload, restart_warnings

_PLANT: dict[str, Any] = {
    "name": "Old Plant",
    "format": "generic",
    "broker": {"host": "10.0.0.5", "port": 1883, "password": "broker-secret-1"},
    "device_map": {"r1": "tugger-01"},
    "twinzo": {"sector_id": 2},
}


def _config(**plant: Any) -> ConsoleConfig:
    merged = {**_PLANT, **plant}
    return ConsoleConfig.model_validate(
        {"twinzo": {"client": "demo", "password": "twinzo-secret-1"}, "plants": [merged]}
    )


def test_live_plant_fields_take_the_new_values() -> None:
    old = _config()
    new = _config(stale_after_s=3.0, bounds={"x_min": 0, "x_max": 1, "y_min": 0, "y_max": 1})
    plan = plan_reload(old, new, ["Old Plant"])
    plant = plan.config.plant("Old Plant")
    assert plant.stale_after_s == 3.0
    assert plant.bounds is not None
    assert plan.restart == {}
    assert plan.live == {"plants[Old Plant]": ["bounds", "stale_after_s"]}


def test_restart_only_plant_fields_keep_the_running_value_and_are_named() -> None:
    old = _config()
    broker = {**_PLANT["broker"], "host": "10.0.0.9", "password": "broker-secret-2"}
    new = _config(broker=broker, stale_after_s=3.0)
    plan = plan_reload(old, new, ["Old Plant"])
    plant = plan.config.plant("Old Plant")
    assert plant.broker.host == "10.0.0.5"
    assert plant.broker.password is not None
    assert plant.broker.password.get_secret_value() == "broker-secret-1"
    assert plant.stale_after_s == 3.0  # the live part of the same file applies
    assert plan.restart == {
        "plants[Old Plant]": ["plants[Old Plant].broker.host", "plants[Old Plant].broker.password"]
    }


def test_warnings_name_every_field_and_never_a_value() -> None:
    old = _config()
    broker = {**_PLANT["broker"], "host": "10.0.0.9", "password": "broker-secret-2"}
    new = ConsoleConfig.model_validate(
        {
            "twinzo": {"client": "demo", "password": "twinzo-secret-1", "api_key": "key-2"},
            "plants": [{**_PLANT, "broker": broker}],
        }
    )
    said = restart_warnings(plan_reload(old, new, ["Old Plant"]))
    assert [plant for plant, _ in said] == ["Old Plant", None]
    lines = [line for _, line in said]
    assert lines == [
        "config change to plants[Old Plant].broker.host, plants[Old Plant].broker.password "
        "needs a restart; still running with the old values",
        "config change to twinzo.api_key needs a restart; still running with the old value",
    ]
    assert not any("secret" in line or "key-2" in line for line in lines)


def test_a_live_twinzo_setting_applies_and_a_client_setting_waits() -> None:
    old = _config()
    new = ConsoleConfig.model_validate(
        {
            "twinzo": {
                "client": "demo",
                "password": "twinzo-secret-2",
                "flush_interval_ms": 40,
                "base_url": "https://elsewhere.example",
            },
            "plants": [_PLANT],
        }
    )
    plan = plan_reload(old, new, ["Old Plant"])
    assert plan.config.twinzo.flush_interval_ms == 40
    assert plan.config.twinzo.password.get_secret_value() == "twinzo-secret-2"
    assert plan.config.twinzo.base_url == old.twinzo.base_url
    assert plan.restart == {"twinzo": ["twinzo.base_url"]}


def test_added_removed_and_renamed_plants_need_a_restart() -> None:
    old = _config()
    other = {**_PLANT, "name": "New Plant"}
    new = ConsoleConfig.model_validate(
        {"twinzo": {"client": "demo", "password": "twinzo-secret-1"}, "plants": [other]}
    )
    plan = plan_reload(old, new, ["Old Plant"])
    assert [p.name for p in plan.config.plants] == ["Old Plant"]  # still running
    assert plan.restart == {
        "plants[Old Plant]": ["plants[Old Plant] (removed or renamed)"],
        "plants[New Plant]": ["plants[New Plant] (added)"],
    }


def test_a_plant_that_does_not_run_keeps_its_old_config() -> None:
    old = _config(enabled=False)
    new = _config(enabled=True, stale_after_s=3.0)
    plan = plan_reload(old, new, [])
    assert plan.config.plant("Old Plant").enabled is False
    assert plan.config.plant("Old Plant").stale_after_s == 10.0
    assert plan.restart == {
        "plants[Old Plant]": ["plants[Old Plant].enabled", "plants[Old Plant].stale_after_s"]
    }


def test_other_sections_need_a_restart() -> None:
    old = _config()
    new = ConsoleConfig.model_validate(
        {
            "twinzo": {"client": "demo", "password": "twinzo-secret-1"},
            "plants": [_PLANT],
            "logging": {"log_every_n": 7},
            "stores": {"enabled": False},
        }
    )
    plan = plan_reload(old, new, ["Old Plant"])
    assert plan.config.logging.log_every_n == old.logging.log_every_n
    assert plan.restart == {"config": ["logging.log_every_n", "stores.enabled"]}


def test_many_changes_are_summarised() -> None:
    old = _config()
    new = _config(
        broker={
            "host": "h",
            "port": 1,
            "client_id": "c",
            "qos": 0,
            "keepalive_s": 9,
            "queue_size": 99,
            "username": "u",
            "tls": True,
            "verify": False,
        },
    )
    ((_, line),) = restart_warnings(plan_reload(old, new, ["Old Plant"]))
    assert line.endswith("and 4 more need a restart; still running with the old values")


@pytest.mark.parametrize("field", sorted(LIVE_PLANT_FIELDS))
def test_every_live_field_is_a_plant_field(field: str) -> None:
    from dtp_console.config.model import PlantConfig

    assert field.split(".")[0] in PlantConfig.model_fields


def test_the_readme_lists_exactly_the_live_fields() -> None:
    import re
    from pathlib import Path

    from dtp_console.config.reload import LIVE_TWINZO_FIELDS

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    plants = text.split("<!-- live-plant-fields -->")[1].split("<!-- live-twinzo-fields -->")[0]
    twinzo = text.split("<!-- live-twinzo-fields -->")[1].split("<!-- end-live-fields -->")[0]
    named = set(re.findall(r"`([a-z_.0-9]+)`", plants))
    assert named == LIVE_PLANT_FIELDS
    assert set(re.findall(r"`([a-z_.0-9]+)`", twinzo)) - {"twinzo"} == LIVE_TWINZO_FIELDS
