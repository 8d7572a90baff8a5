"""Config loading: interpolation, .env, legacy files, errors naming file, field and reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dtp_console.cli import main
from dtp_console.config import ConfigError, load_config, masked_dump

MINIMAL = """
twinzo:
  client: demo
  password: ${TWINZO_PASSWORD:-change-me}
  api_key: ${TWINZO_API_KEY}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker:
      host: ${ATI_HOST:-broker.example.com}
      port: 8883
      tls: true
      password: ${BROKER_PW}
    device_map: {ati_amr_001: tugger-05-old}
    twinzo: {sector_id: 2}
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in (
        "TWINZO_CLIENT", "TWINZO_PASSWORD", "TWINZO_API_KEY", "LOG_EVERY_N", "ATI_MQTT_HOST",
        "ATI_MQTT_PORT", "ATI_MQTT_USERNAME", "ATI_MQTT_PASSWORD", "ATI_MQTT_TOPIC",
        "AFFINE_A", "AFFINE_B", "AFFINE_C", "AFFINE_D", "AFFINE_TX", "AFFINE_TY",
        "DTP_HIVEMQ_CONFIG", "DTP_CONFIG",
    ):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_interpolation_defaults_and_env(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.yaml", MINIMAL)
    config = load_config(path, environ={"TWINZO_API_KEY": "key-from-env", "BROKER_PW": "pw"})
    assert config.twinzo.password.get_secret_value() == "change-me"
    assert config.twinzo.api_key.get_secret_value() == "key-from-env"
    plant = config.plant("old plant")
    assert plant.broker.host == "broker.example.com"
    assert plant.broker.verify is True  # TLS verification on by default
    assert plant.movement_threshold_mm == 10.0


def test_dotenv_is_loaded_but_environment_wins(in_tmp: Path) -> None:
    _write(in_tmp / ".env", "TWINZO_API_KEY=from-dotenv\nBROKER_PW=from-dotenv\n")
    path = _write(in_tmp / "config" / "c.yaml", MINIMAL)
    config = load_config(path, environ={"BROKER_PW": "from-env"})
    assert config.twinzo.api_key.get_secret_value() == "from-dotenv"
    assert config.plants[0].broker.password is not None
    assert config.plants[0].broker.password.get_secret_value() == "from-env"


def test_missing_variable_names_the_field(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"TWINZO_API_KEY": "k"})
    text = str(info.value)
    assert str(path) in text
    assert "plants[0].broker.password" in text
    assert "BROKER_PW" in text


def test_validation_error_names_file_field_path_and_reason(in_tmp: Path) -> None:
    bad = MINIMAL.replace("port: 8883", "port: 70000").replace("tls: true", "tsl: true")
    path = _write(in_tmp / "c.yaml", bad)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"TWINZO_API_KEY": "k", "BROKER_PW": "p"})
    text = str(info.value)
    assert text.startswith(f"{path}: 2 problems")
    assert "plants[0] (Old Plant).broker.port: Input should be less than or equal to 65535" in text
    assert "(got 70000)" in text
    assert "plants[0] (Old Plant).broker.tsl: Extra inputs are not permitted" in text


def test_yaml_syntax_error_has_line(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.yaml", "plants:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: invalid YAML"):
        load_config(path)


def test_duplicate_plant_names_and_batch_without_branch(in_tmp: Path) -> None:
    text = """
plants:
  - {name: A, format: hitech, twinzo: {sector_id: 1, batch: true}}
  - {name: A, format: hitech, twinzo: {sector_id: 1}}
"""
    path = _write(in_tmp / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "batch needs twinzo.branch" in str(info.value)


def test_legacy_env_and_hivemq_json_fill_unset_fields(in_tmp: Path) -> None:
    _write(
        in_tmp / ".env",
        "TWINZO_CLIENT=legacy-client\nTWINZO_PASSWORD=legacy-pw\nTWINZO_API_KEY=legacy-key\n"
        "ATI_MQTT_HOST=ati.example.com\nATI_MQTT_PORT=1884\nATI_MQTT_USERNAME=ati\n"
        "ATI_MQTT_PASSWORD=ati-pw\nATI_MQTT_TOPIC=ati_fm/sherpa/status\n"
        "AFFINE_A=999.74\nAFFINE_B=22.88\nAFFINE_C=22.88\nAFFINE_D=-999.74\n"
        "AFFINE_TX=95598.8\nAFFINE_TY=167357.6\nLOG_EVERY_N=7\n",
    )
    hivemq = {"host": "hivemq.example.com", "port": 8883, "username": "hm", "password": "hm-pw"}
    _write(in_tmp / "config" / "hivemq_config.json", json.dumps(hivemq))
    path = _write(
        in_tmp / "config" / "console.yaml",
        """
plants:
  - {name: Old Plant, format: ati_sherpa, twinzo: {sector_id: 2}}
  - {name: HiTech Plant, format: hitech, twinzo: {sector_id: 1}}
  - name: Explicit
    format: ati_sherpa
    broker: {host: explicit.example.com}
    affine: {a: 2}
    twinzo: {sector_id: 3}
""",
    )
    config = load_config(path, environ={})
    assert config.twinzo.client == "legacy-client"
    assert config.twinzo.password.get_secret_value() == "legacy-pw"
    assert config.logging.log_every_n == 7
    old = config.plant("Old Plant")
    assert (old.broker.host, old.broker.port, old.broker.username) == (
        "ati.example.com",
        1884,
        "ati",
    )
    assert old.topics == ["ati_fm/sherpa/status"]
    assert (old.affine.a, old.affine.d, old.affine.ty) == (999.74, -999.74, 167357.6)
    hitech = config.plant("HiTech Plant")
    assert (hitech.broker.host, hitech.broker.port, hitech.broker.tls) == (
        "hivemq.example.com",
        8883,
        True,
    )
    assert hitech.broker.password is not None
    assert hitech.broker.password.get_secret_value() == "hm-pw"
    explicit = config.plant("Explicit")  # YAML wins over legacy values
    assert explicit.broker.host == "explicit.example.com"
    assert explicit.broker.port == 1884  # unset in YAML: filled from ATI_MQTT_PORT
    assert explicit.affine.a == 2 and explicit.affine.d == 1.0


def test_bad_legacy_json_is_a_config_error(in_tmp: Path) -> None:
    _write(in_tmp / "config" / "hivemq_config.json", '{"host": "h", "prot": 1}')
    path = _write(
        in_tmp / "config" / "console.yaml",
        "plants:\n  - {name: H, format: hitech, twinzo: {sector_id: 1}}\n",
    )
    with pytest.raises(ConfigError, match="unknown keys in the legacy HiveMQ config: prot"):
        load_config(path, environ={})


def test_masked_dump_hides_every_secret(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.yaml", MINIMAL)
    config = load_config(path, environ={"TWINZO_API_KEY": "k-secret-1", "BROKER_PW": "b-secret-2"})
    text = json.dumps(masked_dump(config))
    assert "k-secret-1" not in text and "b-secret-2" not in text and "change-me" not in text
    assert "**********" in text


def test_cli_config_show_masks_and_errors_exit_2(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(in_tmp / "c.yaml", MINIMAL)
    monkeypatch.setenv("TWINZO_API_KEY", "k-secret-1")
    monkeypatch.setenv("BROKER_PW", "b-secret-2")
    assert main(["-c", str(path), "config", "show"]) == 0
    out = capsys.readouterr().out
    assert "Old Plant" in out and "broker.example.com" in out
    assert "k-secret-1" not in out and "b-secret-2" not in out
    _write(in_tmp / "bad.yaml", "plants: 5\n")
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "--config", str(in_tmp / "bad.yaml")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bad.yaml: plants: Input should be a valid list" in err


def test_world_readable_config_with_literal_secrets_warns(in_tmp: Path) -> None:
    from dtp_console.config.loader import secrets_permission_warning

    literal = _write(in_tmp / "literal.yaml", "twinzo:\n  password: hunter2-real\n")
    referenced = _write(in_tmp / "ref.yaml", "twinzo:\n  password: ${TWINZO_PASSWORD}\n")
    literal.chmod(0o644)
    referenced.chmod(0o644)
    warning = secrets_permission_warning(literal)
    assert warning is not None
    assert "readable by other users" in warning
    assert "hunter2-real" not in warning
    assert secrets_permission_warning(referenced) is None
    literal.chmod(0o600)
    assert secrets_permission_warning(literal) is None


def test_yaml_alias_bomb_is_refused_quickly(in_tmp: Path) -> None:
    """Nine lines of aliases would expand to a billion strings; the loader says so instead."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
    path = in_tmp / "console.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"more than 100,000 values .*aliases"):
        load_config(path)


def test_ordinary_anchors_still_work(in_tmp: Path) -> None:
    path = in_tmp / "console.yaml"
    path.write_text(
        "plants:\n"
        "  - {name: A, format: hitech, twinzo: &tw {sector_id: 1},\n"
        "     broker: &broker {host: 127.0.0.1, port: 1884}}\n"
        "  - {name: B, format: hitech, twinzo: *tw, broker: *broker}\n"
    )
    config = load_config(path)
    assert [p.broker.port for p in config.plants] == [1884, 1884]


def test_deeply_nested_yaml_is_an_error_not_a_crash(in_tmp: Path) -> None:
    """libyaml recurses in C and segfaults on `[[[[…`; the loader must not hand it such text."""
    path = in_tmp / "console.yaml"
    path.write_text("plants: " + "[" * 100_000 + "]" * 100_000 + "\n")
    script = (
        "import sys\n"
        "from dtp_console.config import ConfigError, load_config\n"
        "try:\n"
        f"    load_config(__import__('pathlib').Path({str(path)!r}))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert "nested too deeply" in done.stdout
