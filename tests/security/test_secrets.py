"""Known secret values configured; they must appear nowhere the console shows or writes.

Five secrets — the twinzo device password and API key, an MQTT broker password,
the password inside a PostgreSQL DSN (pointing at a closed 127.0.0.1 port) and an
S3 secret key — are configured once through `${VAR}` references and the
environment, once as literal YAML. Then `dtp-console run --no-ui --for 3s
--stats-json` (sandbox on, so devices really authenticate with the password and
the API key; a private mosquitto that really checks the broker password),
`config show [--json]` and `check [--json]` run as operators run them, and no
secret may appear in their stdout, stderr, the stats JSON, the log file, or any
other file under the test's directory. In-process: the loaded config's `repr`,
`ConfigError` messages from bad configs holding the secrets, and the UI's
screenshot.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dtp_console.config.loader import ConfigError, load_config, masked_dump
from tests.support.mosquitto import MosquittoServer, free_port

pytestmark = pytest.mark.integration

SECRETS = {
    "TWINZO_PASSWORD": "tz-Pw-7Qf3kLm9x",
    "TWINZO_API_KEY": "tz-Key-Zx81PqWv4",
    "MQTT_PASSWORD": "mq-Pw-Hh27WsR0e",
    "PG_PASSWORD": "pg-Pw-Rt55YuK1n",
    "MINIO_SECRET_KEY": "s3-Sk-Vb93NcJ6t",
}
MQTT_USER = "bridge"


def _dsn(port: int, password: str) -> str:
    return f"postgresql://dtp:{password}@127.0.0.1:{port}/dtp"


def _config_text(tmp: Path, mqtt_port: int, pg_port: int, s3_port: int, *, literal: bool) -> str:
    if literal:
        values = {
            "tz_pw": SECRETS["TWINZO_PASSWORD"],
            "tz_key": SECRETS["TWINZO_API_KEY"],
            "mq_pw": SECRETS["MQTT_PASSWORD"],
            "dsn": _dsn(pg_port, SECRETS["PG_PASSWORD"]),
            "s3": SECRETS["MINIO_SECRET_KEY"],
        }
    else:
        values = {
            "tz_pw": "${TWINZO_PASSWORD}",
            "tz_key": "${TWINZO_API_KEY}",
            "mq_pw": "${MQTT_PASSWORD}",
            "dsn": "${STORES_PG_DSN}",
            "s3": "${MINIO_SECRET_KEY}",
        }
    return f"""
twinzo:
  client: demo
  password: "{values["tz_pw"]}"
  api_key: "{values["tz_key"]}"
sandbox:
  enabled: true
registry: {{enabled: false}}
simulator: {{enabled: true}}
logging:
  log_every_n: 1
  stats_interval_s: 0.5
  file: {tmp / "logs" / "console.log"}
stores:
  enabled: true
  sqlite_path: {tmp / "var" / "platform.sqlite3"}
  blob_dir: {tmp / "var" / "blobs"}
  health_interval_s: 0.5
  probe_timeout_s: 2
  drain_timeout_s: 0.5
  postgres:
    dsn: "{values["dsn"]}"
    connect_timeout_s: 1
  s3:
    endpoint: "127.0.0.1:{s3_port}"
    access_key: fuzz-access
    secret_key: "{values["s3"]}"
    secure: false
plants:
  - name: Old Plant
    format: ati_sherpa
    broker:
      host: 127.0.0.1
      port: {mqtt_port}
      username: {MQTT_USER}
      password: "{values["mq_pw"]}"
      reconnect_max_s: 1
    device_map: {{ati_amr_001: tugger-05-old, ati_amr_002: tugger-06-old}}
    twinzo: {{sector_id: 2}}
    min_post_interval_ms: 0
    simulator: {{robots: 2, unmapped: 0, rate_hz: 5, seed: 3, fault_rate: 0}}
"""


@dataclass
class Setup:
    """A config file with the secrets, the environment to run it with, what was seen."""

    tmp: Path
    config: Path
    env: dict[str, str]
    literal: bool
    outputs: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `dtp-console -c CONFIG ARGS` in the test directory; record its output."""
        done = subprocess.run(
            [sys.executable, "-m", "dtp_console", "-c", str(self.config), *args],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        name = " ".join(args)
        self.outputs[f"{name} (stdout)"] = done.stdout
        self.outputs[f"{name} (stderr)"] = done.stderr
        return done


def _base_env() -> dict[str, str]:
    prefixes = ("TWINZO_", "ATI_", "AFFINE_", "DTP_", "STORES_", "MINIO_", "MQTT_", "HYPOTHESIS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["DTP_API_LISTEN"] = "127.0.0.1:0"  # the API on a free port, never the fixed default
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


@pytest.fixture(params=["env", "literal"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """The secrets via `${VAR}` + environment, or as literal YAML; a broker that checks them."""
    literal = request.param == "literal"
    with MosquittoServer(
        tmp_path / "mosquitto", users={MQTT_USER: SECRETS["MQTT_PASSWORD"]}
    ) as broker:
        pg_port, s3_port = free_port(), free_port()
        config = tmp_path / "console.yaml"
        config.write_text(_config_text(tmp_path, broker.port, pg_port, s3_port, literal=literal))
        config.chmod(0o644)  # readable by others: the permission warning must not echo secrets
        env = _base_env()
        if not literal:
            env.update(
                TWINZO_PASSWORD=SECRETS["TWINZO_PASSWORD"],
                TWINZO_API_KEY=SECRETS["TWINZO_API_KEY"],
                MQTT_PASSWORD=SECRETS["MQTT_PASSWORD"],
                STORES_PG_DSN=_dsn(pg_port, SECRETS["PG_PASSWORD"]),
                MINIO_SECRET_KEY=SECRETS["MINIO_SECRET_KEY"],
            )
        yield Setup(tmp_path, config, env, literal)


def _leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def _files_leaking(setup: Setup) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(setup.tmp.rglob("*")):
        if not path.is_file() or path == setup.config:
            continue
        data = path.read_bytes()
        names = [name for name, secret in SECRETS.items() if secret.encode() in data]
        if names:
            found[str(path.relative_to(setup.tmp))] = names
    return found


def test_secrets_appear_nowhere(setup: Setup) -> None:
    stats_path = setup.tmp / "stats.json"
    run = setup.cli("run", "--no-ui", "--for", "3s", "--stats-json", str(stats_path))
    assert run.returncode == 0, run.stderr[-2000:]
    stats = json.loads(stats_path.read_text())
    # The secrets were used: devices authenticated and posted, the broker let us in.
    old = stats["plants"]["Old Plant"]
    assert old["outcomes"].get("forwarded", 0) > 0, old
    assert "MQTT connected" in run.stdout

    show = setup.cli("config", "show")
    show_json = setup.cli("config", "show", "--json")
    assert show.returncode == 0
    assert show_json.returncode == 0
    shown = json.loads(show_json.stdout)
    assert shown["twinzo"]["password"] == "**********"
    assert shown["stores"]["postgres"]["dsn"] == "**********"
    check = setup.cli("check")
    check_json = setup.cli("check", "--json")
    assert check.returncode == 1  # PostgreSQL and S3 are unreachable: probed, and failed
    rows = {row["name"]: row for row in json.loads(check_json.stdout)}
    assert any(not row["ok"] and row["configured"] for row in rows.values()), rows
    if setup.literal:
        assert "readable by other users" in show.stderr

    leaks = {name: _leaks(text) for name, text in setup.outputs.items()}
    assert not {k: v for k, v in leaks.items() if v}, leaks
    assert (setup.tmp / "logs" / "console.log").is_file()
    assert not _files_leaking(setup)


# -- in-process ------------------------------------------------------------------------


def test_loaded_config_repr_masks_secrets(setup: Setup) -> None:
    config = load_config(setup.config, environ=setup.env)
    assert config.twinzo.password.get_secret_value() == SECRETS["TWINZO_PASSWORD"]
    for text in (repr(config), str(config), repr(config.model_dump()), str(masked_dump(config))):
        assert not _leaks(text)


BAD_CONFIGS = {
    # A misspelt secret key: the value is not echoed as "got ...".
    "misspelt_password": "twinzo:\n  pasword: {tz}\n",
    "misspelt_secret_key": "stores:\n  s3: {{secret: {s3}}}\n",
    "unknown_broker_key": "plants:\n- name: p\n  format: hitech\n  twinzo: {{sector_id: 1}}\n"
    "  broker: {{passwd: {mq}}}\n",
    # Secrets of the wrong type.
    "password_wrong_type": "twinzo:\n  password: [{tz}]\n",
    "api_key_as_mapping": "twinzo:\n  api_key: {{k: {key}}}\n",
    "dsn_wrong_type": "stores:\n  postgres: {{dsn: [{dsn}]}}\n",
    "neo4j_password_int": "stores:\n  neo4j: {{password: 12345, uri: bolt://x}}\n",
    # Broken YAML on a line holding a secret.
    "unterminated_quote": 'twinzo:\n  password: "{tz}\n',
    "tab_on_secret_line": "twinzo:\n\tpassword: {tz}\n",
    "bad_indent": "twinzo:\n  password: {tz}\n   api_key: {key}\n",
    "flow_error": "twinzo: {{password: {tz}, api_key: [{key}}}\n",
    # Valid secrets, another field wrong: the error is about that field only.
    "other_field_wrong": "twinzo:\n  password: {tz}\n  api_key: {key}\n  timeout_s: -1\n",
    "missing_var_beside_literal": "twinzo:\n  password: {tz}\n  api_key: ${{NOPE_NOT_SET}}\n",
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_config_errors_do_not_echo_secrets(tmp_path: Path, name: str) -> None:
    text = BAD_CONFIGS[name].format(
        tz=SECRETS["TWINZO_PASSWORD"],
        key=SECRETS["TWINZO_API_KEY"],
        mq=SECRETS["MQTT_PASSWORD"],
        s3=SECRETS["MINIO_SECRET_KEY"],
        dsn=_dsn(5432, SECRETS["PG_PASSWORD"]),
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert not _leaks(message), message
    assert not _leaks(repr(caught.value))


def test_cli_config_error_does_not_echo_secrets(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIGS["misspelt_password"].format(tz=SECRETS["TWINZO_PASSWORD"]))
    setup = Setup(tmp_path, path, _base_env(), literal=True)
    for args in (("config", "show"), ("check",), ("run", "--no-ui", "--for", "1s")):
        done = setup.cli(*args)
        assert done.returncode == 2
        assert "pasword" in done.stderr
        assert "Traceback" not in done.stderr
    assert not [k for k, v in setup.outputs.items() if _leaks(v)]


# -- the UI ------------------------------------------------------------------------------


async def test_ui_screenshot_shows_no_secret(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full-screen console with the secrets configured, rendered headless."""
    pytest.importorskip("textual")
    from dtp_console.runtime import Engine
    from dtp_console.ui.app import DtpConsoleApp

    monkeypatch.chdir(setup.tmp)  # whatever the UI writes relative to the cwd lands here
    config = load_config(setup.config, environ=setup.env)
    engine = Engine(config, config_path=setup.config)
    app = DtpConsoleApp(engine, refresh_s=0.1)
    screenshots: list[str] = []
    async with app.run_test(size=(200, 60)) as pilot:
        await asyncio.wait_for(engine.ready.wait(), 15)
        for _ in range(60):  # until something was posted, so every panel has content
            plant = engine.state.plants.get("Old Plant")
            if plant is not None and plant.counters.outcomes.get("forwarded", 0):
                break
            await pilot.pause(0.1)
        await pilot.pause(0.3)
        screenshots.append(app.export_screenshot())
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        screenshots.append(app.export_screenshot())
        await pilot.press("escape")
        await pilot.press("q")
        for _ in range(100):
            if app.return_code is not None:
                break
            await pilot.pause(0.1)
    texts = [html.unescape(svg).replace("\xa0", " ") for svg in screenshots]
    assert "Old Plant" in texts[0]
    for svg, text in zip(screenshots, texts, strict=True):
        assert not _leaks(svg)
        assert not _leaks(text)
    assert not _files_leaking(setup)
