"""The `platform` section: defaults, the `simulator.broker` alias, legacy keys, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtp_console.cli import main
from dtp_console.config.loader import ConfigError, load_config
from dtp_console.config.model import ConsoleConfig
from tests.support.mosquitto import make_tls_files


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConsoleConfig:
    path = tmp_path / "console.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ or {})


def _refused(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, environ)
    return str(caught.value)


def test_defaults_are_an_embedded_dtp_broker_with_verification_on() -> None:
    platform = ConsoleConfig().platform
    assert platform.enabled is None
    assert platform.broker.embedded and platform.broker.port == 0
    assert platform.broker.verify
    assert platform.topics == ["dtp/#"]
    assert platform.mapping == "platform"


def test_production_shape_with_tls_and_placeholders(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    config = _load(
        tmp_path,
        "platform:\n  enabled: true\n  broker:\n    host: mqtt.example.invalid\n"
        f"    port: 8883\n    ca_file: {tls.ca}\n    username: dtp\n"
        "    password: ${PLATFORM_MQTT_PASSWORD}\n    client_id: dtp-console-platform\n"
        "    persistent_session: true\n",
        {"PLATFORM_MQTT_PASSWORD": "test-change-me"},
    )
    broker = config.platform.broker
    assert broker.tls, "8883 means TLS"
    assert broker.password is not None
    assert broker.password.get_secret_value() == "test-change-me"
    assert broker.persistent


def test_simulator_broker_still_works_as_the_deprecated_alias(tmp_path: Path) -> None:
    config = _load(tmp_path, "simulator:\n  broker: {host: 127.0.0.1, port: 1884}\n")
    assert (config.platform.broker.host, config.platform.broker.port) == ("127.0.0.1", 1884)


def test_alias_and_platform_broker_agreeing_is_accepted(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "simulator: {broker: {host: 127.0.0.1, port: 1884}}\n"
        "platform: {broker: {host: 127.0.0.1, port: 1884}}\n",
    )
    assert config.platform.broker.port == 1884


def test_alias_and_platform_broker_differing_is_refused_naming_both(tmp_path: Path) -> None:
    said = _refused(
        tmp_path,
        "simulator: {broker: {host: 127.0.0.1, port: 1884, password: test-secret-a}}\n"
        "platform: {broker: {host: 127.0.0.1, port: 1885, password: test-secret-b}}\n",
    )
    assert "simulator.broker.port / platform.broker.port" in said
    assert "simulator.broker.password / platform.broker.password" in said
    assert "test-secret" not in said


def test_refused_at_load_with_exit_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text("platform:\n  broker: {persistent_session: true, password: test-pw}\n")
    with pytest.raises(SystemExit) as caught:
        main(["-c", str(path), "config", "show"])
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("platform: {topics: ['dtp/#/x']}", "platform.topics"),
        ("platform: {broker: {topics: ['dtp/#']}}", "platform.broker.topics"),
        ("platform: {broker: {ca_file: /nonexistent/ca.pem}}", "platform.broker.ca_file"),
        ("platform: {mapping: regex}", "platform.mapping"),
        ("platform: {streams: [{topic: 'x/+', value: 'a..b'}]}", "platform.streams"),
        ("platform: {streams: [{topic: 'x/+', threshold: .nan}]}", "platform.streams"),
        ("platform: {ring_points: 1}", "platform.ring_points"),
        ("platform: {brokr: {}}", "platform.brokr"),
        ('platform: {broker: {client_id: "a\\u0007b"}}', "platform.broker.client_id"),
    ],
)
def test_invalid_platform_settings_are_refused(tmp_path: Path, text: str, field: str) -> None:
    assert field in _refused(tmp_path, text + "\n")


def test_legacy_platform_simulator_keys_fill_the_room_generator(tmp_path: Path) -> None:
    env = {
        "MQTT_TOPIC": "factory/room7/temp",
        "PUBLISH_INTERVAL_SEC": "2",
        "SIM_SIGNAL_NAME": "Room 7 temperature",
        "SIM_SIGNAL_UNIT": "degC",
    }
    config = _load(tmp_path, "{}\n", env)
    room = config.simulator.generators.room
    assert (room.topic, room.interval_s, room.name, room.unit) == (
        "factory/room7/temp",
        2.0,
        "Room 7 temperature",
        "degC",
    )
    assert config.platform.topics == ["dtp/#", "factory/room7/temp"]


def test_yaml_wins_over_legacy_keys(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "simulator: {generators: {room: {interval_s: 9}}}\nplatform: {topics: ['dtp/#']}\n",
        {"PUBLISH_INTERVAL_SEC": "2", "MQTT_TOPIC": "factory/room7/temp"},
    )
    assert config.simulator.generators.room.interval_s == 9
    assert config.platform.topics == ["dtp/#"]


def test_a_bad_legacy_interval_is_refused_naming_the_field(tmp_path: Path) -> None:
    said = _refused(tmp_path, "{}\n", {"PUBLISH_INTERVAL_SEC": "soon"})
    assert "simulator.generators.room.interval_s" in said
