"""A plant's broker settings: persistent sessions, CA files, topic filters, plaintext passwords.

Each of these used to be accepted at load and then fail (or leak) at run time:
a missing CA file or `hitech/#/position` killed the source task silently, and
`port: 8883` without `tls` sent the MQTT password in clear.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from pydantic import ValidationError

from dtp_console.config.loader import ConfigError, load_config
from dtp_console.config.model import ConsoleConfig, PlantConfig
from dtp_console.headless import stats_line
from dtp_console.mqtt.client import broker_warnings, client_kwargs
from dtp_console.state import PlantState
from tests.support.mosquitto import make_tls_files


def _plant(**broker: Any) -> PlantConfig:
    data = {"name": "P", "format": "ati_sherpa", "broker": broker, "twinzo": {"sector_id": 1}}
    return ConsoleConfig.model_validate({"plants": [data]}).plants[0]


def _load(tmp_path: Path, broker: str, environ: dict[str, str] | None = None) -> ConsoleConfig:
    path = tmp_path / "console.yaml"
    path.write_text(
        "plants:\n  - name: P\n    format: ati_sherpa\n    twinzo: {sector_id: 1}\n"
        f"    broker: {broker}\n",
        encoding="utf-8",
    )
    return load_config(path, environ=environ or {})


def _refused(tmp_path: Path, broker: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, broker)
    return str(caught.value)


# --- persistent sessions ---------------------------------------------------------------


def test_persistent_session_is_on_by_default_with_a_client_id_and_qos_1() -> None:
    assert _plant(client_id="dtp-old-plant").broker.persistent
    assert not _plant().broker.persistent, "no stable id: nothing to resume"
    assert not _plant(client_id="dtp-old-plant", qos=0).broker.persistent, "QoS 0 is not queued"
    assert not _plant(client_id="dtp-old-plant", persistent_session=False).broker.persistent


def test_a_persistent_session_without_a_client_id_is_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    said = _refused(tmp_path, "{persistent_session: true}")
    assert "plants[0] (P).broker.persistent_session" in said
    assert "client_id" in said


@pytest.mark.parametrize("client_id", ['""', '"a\\nb"', '"a\\u0000b"'])
def test_an_unusable_client_id_is_refused(tmp_path: Path, client_id: str) -> None:
    assert "plants[0] (P).broker.client_id" in _refused(tmp_path, f"{{client_id: {client_id}}}")


def test_a_persistent_311_connect_resumes_the_session() -> None:
    kwargs = client_kwargs(_plant(client_id="dtp-old-plant"), "127.0.0.1", 1883, session=True)
    assert kwargs["identifier"] == "dtp-old-plant"
    assert kwargs["clean_session"] is False


def test_a_persistent_mqtt5_connect_asks_for_a_session_expiry() -> None:
    plant = _plant(client_id="dtp-old-plant", protocol="5", session_expiry_s=900)
    kwargs = client_kwargs(plant, "127.0.0.1", 1883, session=True)
    assert kwargs["identifier"] == "dtp-old-plant"
    assert kwargs["clean_start"] is False
    properties = kwargs["properties"]
    assert properties.packetType == PacketTypes.CONNECT
    assert properties.SessionExpiryInterval == 900


def test_a_clean_connect_stays_clean() -> None:
    kwargs = client_kwargs(_plant(), "127.0.0.1", 1883, session=True)
    assert kwargs["clean_session"] is True
    assert kwargs["identifier"].startswith("dtp-console-p-")
    v5 = client_kwargs(_plant(protocol="5"), "127.0.0.1", 1883, session=True)
    assert v5["clean_start"] is True and "properties" not in v5


def test_a_one_off_reader_never_takes_the_bridges_session_over() -> None:
    # `sniff` connecting with the bridge's id would kick the bridge and eat its queue.
    kwargs = client_kwargs(_plant(client_id="dtp-old-plant"), "127.0.0.1", 1883)
    assert kwargs["identifier"] != "dtp-old-plant"
    assert kwargs["clean_session"] is True


@pytest.mark.parametrize("role", ["console", "sniff", "sim"])
def test_a_one_off_client_never_takes_the_bridges_id_even_without_a_session(role: str) -> None:
    # Before: at QoS 0 (no persistent session) `sniff` and every other reader connected
    # with the plant's `client_id`, and the broker kicked the running bridge off.
    plant = _plant(client_id="dtp-old-plant", qos=0)
    assert client_kwargs(plant, "127.0.0.1", 1883, session=True)["identifier"] == "dtp-old-plant"
    kwargs = client_kwargs(plant, "127.0.0.1", 1883, role=role)
    assert kwargs["identifier"].startswith(f"dtp-{role}-p-")
    assert kwargs["clean_session"] is True


def test_the_simulator_connects_with_the_plants_tls_and_login(tmp_path: Path) -> None:
    from dtp_console.simulator.runner import broker_target

    files = make_tls_files(tmp_path / "tls")
    broker = _plant(
        tls=True, ca_file=str(files.ca), username="u", password="test-pw", protocol="5"
    ).broker
    kwargs = broker_target("P", broker, ("127.0.0.1", 8883)).client_kwargs()
    assert (kwargs["hostname"], kwargs["port"]) == ("127.0.0.1", 8883)
    assert (kwargs["username"], kwargs["password"]) == ("u", "test-pw")
    assert kwargs["tls_context"].verify_mode == ssl.CERT_REQUIRED
    assert kwargs["tls_context"].check_hostname
    assert kwargs["identifier"].startswith("dtp-sim-p-")
    assert kwargs["clean_start"] is True
    embedded = _plant(host="embedded", username="u", password="test-pw").broker
    plain = broker_target("P", embedded, ("127.0.0.1", 40000)).client_kwargs()
    assert plain["username"] is None and plain["password"] is None
    assert "tls_context" not in plain


def test_session_expiry_is_bounded(tmp_path: Path) -> None:
    said = _refused(tmp_path, "{client_id: x, session_expiry_s: 4294967296}")
    assert "plants[0] (P).broker.session_expiry_s" in said
    assert "less than or equal to 4294967295" in said, "MQTT 5's four-byte interval"


# --- CA files ----------------------------------------------------------------------------


def test_a_missing_ca_file_is_refused_at_load(tmp_path: Path) -> None:
    said = _refused(tmp_path, f"{{tls: true, ca_file: {tmp_path / 'nope.crt'}}}")
    assert "plants[0] (P).broker.ca_file" in said
    assert "no such file" in said


@pytest.mark.parametrize(
    "content", [b"", b"not a certificate\n", b"\x30\x82\x01\x0a" + bytes(300)], ids=str
)
def test_a_non_pem_ca_file_is_refused_at_load(tmp_path: Path, content: bytes) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(content)
    said = _refused(tmp_path, f"{{tls: true, ca_file: {ca}}}")
    assert "plants[0] (P).broker.ca_file" in said
    assert "PEM" in said


@pytest.mark.parametrize("where", ["/dev/zero", "."])
def test_a_ca_file_that_is_no_regular_file_is_refused(tmp_path: Path, where: str) -> None:
    # /dev/zero would be read forever.
    said = _refused(tmp_path, f"{{tls: true, ca_file: {where}}}")
    assert "plants[0] (P).broker.ca_file" in said


def test_a_pem_ca_file_is_accepted(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    assert _load(tmp_path, f"{{tls: true, ca_file: {files.ca}}}").plants[0].broker.ca_file


# --- topic filters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ('"hitech/#/position"', "'#'"),
        ('"#/a"', "'#'"),
        ('"a/b#"', "'#'"),
        ('""', "empty"),
        ('"a/+b"', "'+'"),
        ('"a+/b"', "'+'"),
        ('"a/\\0/b"', "control"),
        ('"a/\\x1b[2J"', "control"),
        ('"a/\\x85"', "control"),
        (f'"{"a" * 65_536}"', "65,535"),
    ],
)
def test_an_invalid_topic_filter_is_refused_naming_it(tmp_path: Path, topic: str, why: str) -> None:
    said = _refused(tmp_path, f'{{topics: ["ati_fm/sherpa/status", {topic}]}}')
    assert "plants[0] (P).broker.topics[1]" in said
    assert why in said
    assert len(said) < 400, "a huge filter is not echoed whole"


def test_a_lone_surrogate_is_refused() -> None:
    # YAML refuses one itself; a legacy env var or the editor could still bring one.
    with pytest.raises(ValidationError, match="UTF-8"):
        _plant(topics=["a/\ud800"])


@pytest.mark.parametrize(
    "topic", ["#", "+", "a/#", "a/+/b", "+/+/#", "/", "a//b", "$share/g/a/+", "ü/日本/💡"]
)
def test_valid_topic_filters_are_accepted(topic: str) -> None:
    assert _plant(topics=[topic]).topics == [topic]


def test_a_legacy_topic_is_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker\.topics\[0\]"):
        _load(tmp_path, "{}", {"ATI_MQTT_TOPIC": "ati_fm/#/status"})


# --- 8883, plaintext passwords and verify: false ---------------------------------------


def test_port_8883_means_tls_unless_tls_is_set() -> None:
    assert _plant(port=8883).broker.tls
    assert not _plant(port=8883, tls=False).broker.tls, "an explicit tls: false is kept"
    assert not _plant(port=1883).broker.tls


def test_legacy_ati_port_8883_turns_tls_on(tmp_path: Path) -> None:
    env = {"ATI_MQTT_HOST": "ati.example.com", "ATI_MQTT_PORT": "8883"}
    env |= {"ATI_MQTT_USERNAME": "ati", "ATI_MQTT_PASSWORD": "change-me"}
    broker = _load(tmp_path, "{}", env).plants[0].broker
    assert (broker.host, broker.port, broker.tls) == ("ati.example.com", 8883, True)
    assert broker_warnings(_plant(**broker.model_dump())) == []


@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ({"host": "broker.example.com", "username": "u", "password": "change-me"}, "plaintext"),
        ({"host": "127.0.0.1", "port": 8883, "tls": False, "password": "change-me"}, "8883"),
        ({"host": "broker.example.com", "tls": True, "verify": False}, "verification is OFF"),
    ],
)
def test_unsafe_broker_settings_warn(broker: dict[str, Any], expected: str) -> None:
    warnings = broker_warnings(_plant(**broker))
    assert len(warnings) == 1 and expected in warnings[0], warnings
    assert "change-me" not in warnings[0]


@pytest.mark.parametrize(
    "broker",
    [
        {"host": "127.0.0.1", "username": "u", "password": "change-me"},
        {"host": "localhost", "password": "change-me"},
        {"host": "embedded"},
        {"host": "broker.example.com"},
        {"host": "broker.example.com", "tls": True, "password": "change-me"},
    ],
)
def test_safe_broker_settings_do_not_warn(broker: dict[str, Any]) -> None:
    assert broker_warnings(_plant(**broker)) == []


def test_warnings_and_restarts_stay_in_the_stats_line_and_json() -> None:
    state = PlantState("P")
    state.warnings = ["TLS verification is OFF"]
    state.source_restarts = 2
    line = stats_line(state)
    assert "TLS verification is OFF" in line and "restarts 2" in line
    data = state.as_dict()
    assert data["warnings"] == ["TLS verification is OFF"]
    assert data["source_restarts"] == 2 and data["poster_restarts"] == 0
    assert "restarts" not in stats_line(PlantState("Q")), "quiet when nothing happened"
