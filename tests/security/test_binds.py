"""TLS is verified unless a plant says otherwise; test servers bind loopback; secret files.

- TLS verification is on by default for MQTT (`BrokerConfig.verify`, the SSL
  context and the aiomqtt keyword arguments) and for twinzo (`verify_tls`).
- Turning it off is per plant and explicit, and says so in a `WARN` line.
- The twinzo sandbox and the embedded broker refuse a non-loopback bind unless
  explicitly allowed.
- A config file holding literal secrets that other users can read draws a
  warning, from the loader and on `dtp-console config show`'s stderr.

Some of this is tested elsewhere too; this suite stands on its own.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from dtp_console.config.loader import load_config, secrets_permission_warning
from dtp_console.config.model import (
    BrokerConfig,
    ConsoleConfig,
    PlantConfig,
    SandboxConfig,
    TwinzoConfig,
)
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.mqtt.client import client_kwargs, tls_context
from dtp_console.mqtt.source import run_source
from dtp_console.simulator.broker import EmbeddedBroker
from dtp_console.state import PlantState
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.support.mosquitto import free_port

pytestmark = pytest.mark.integration  # starts the sandbox and config-show subprocesses

NON_LOOPBACK = ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com"]
LOOPBACK = ["127.0.0.1", "127.0.0.2", "::1", "localhost"]
SECRET = "perm-Pw-51Lk0Zq"


def _plant(name: str, **broker: object) -> PlantConfig:
    return PlantConfig.model_validate(
        {"name": name, "format": "hitech", "twinzo": {"sector_id": 1}, "broker": broker}
    )


def _verifies(context: ssl.SSLContext) -> bool:
    return context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# -- TLS ---------------------------------------------------------------------------------


def test_tls_verification_is_on_by_default() -> None:
    assert BrokerConfig().verify is True
    assert BrokerConfig(tls=True).verify is True
    assert TwinzoConfig().verify_tls is True
    assert ConsoleConfig().twinzo.verify_tls is True
    assert _verifies(tls_context(BrokerConfig(tls=True)))


def test_mqtt_client_kwargs_verify_by_default() -> None:
    kwargs = client_kwargs(_plant("p", tls=True), "127.0.0.1", 8883)
    context = kwargs["tls_context"]
    assert isinstance(context, ssl.SSLContext)
    assert _verifies(context)
    assert not kwargs.get("tls_insecure")


def test_mqtt_verification_off_is_per_plant_and_explicit() -> None:
    config = ConsoleConfig.model_validate(
        {
            "plants": [
                {
                    "name": "Lab",
                    "format": "hitech",
                    "twinzo": {"sector_id": 1},
                    "broker": {"tls": True, "verify": False},
                },
                {
                    "name": "Line",
                    "format": "hitech",
                    "twinzo": {"sector_id": 2},
                    "broker": {"tls": True},
                },
            ]
        }
    )
    lab, line = config.plants
    off = client_kwargs(lab, "127.0.0.1", 8883)
    assert off["tls_context"].verify_mode == ssl.CERT_NONE
    assert not off["tls_context"].check_hostname
    assert off["tls_insecure"] is True
    on = client_kwargs(line, "127.0.0.1", 8883)
    assert _verifies(on["tls_context"])
    assert not on.get("tls_insecure")


def test_a_ca_file_keeps_verification_on(tmp_path: Path) -> None:
    from tests.support.mosquitto import make_tls_files

    files = make_tls_files(tmp_path / "tls")
    context = tls_context(BrokerConfig(tls=True, ca_file=files.ca))
    assert _verifies(context)


async def _first_lines(plant: PlantConfig, wanted: int) -> list[str]:
    """What `run_source` says first, against a closed port (it never connects)."""
    bus = Bus()
    subscription = bus.subscribe()
    state = PlantState(plant.name)
    task = asyncio.create_task(
        run_source(plant, ("127.0.0.1", free_port()), lambda _t, _p: None, state, OpsLog(bus))
    )
    lines: list[str] = []
    try:
        async with asyncio.timeout(10):
            while len(lines) < wanted:
                event = await subscription.get()
                if isinstance(event, LogLine):
                    lines.append(event.render())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return lines


async def test_verification_off_is_announced() -> None:
    plant = _plant("Lab", tls=True, verify=False, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    lines = await _first_lines(plant, 2)
    assert lines[0].startswith("WARN TLS verification is OFF for Lab (127.0.0.1:")
    assert lines[1].startswith("WARN MQTT Lab (127.0.0.1:")  # then the connection failure


async def test_verification_on_is_not_announced() -> None:
    plant = _plant("Line", tls=True, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    lines = await _first_lines(plant, 1)
    assert lines[0].startswith("WARN MQTT Line (127.0.0.1:")  # the failure, no TLS warning


# -- loopback binds ---------------------------------------------------------------------


@pytest.mark.parametrize("host", NON_LOOPBACK)
async def test_sandbox_refuses_non_loopback(host: str) -> None:
    sandbox = TwinzoSandbox(SandboxConfig(host=host), client="c", password="p", api_key="k")
    with pytest.raises(ValueError, match="non-loopback"):
        await sandbox.start()
    await sandbox.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_sandbox_binds_loopback(host: str) -> None:
    async with TwinzoSandbox(
        SandboxConfig(host=host), client="c", password="p", api_key="k"
    ) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")


async def test_sandbox_remote_bind_needs_allow_remote() -> None:
    config = SandboxConfig(host="0.0.0.0", allow_remote=True)
    async with TwinzoSandbox(config, client="c", password="p", api_key="k") as sandbox:
        assert sandbox.url.startswith("http://0.0.0.0:")


@pytest.mark.parametrize("host", NON_LOOPBACK)
def test_embedded_broker_refuses_non_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        EmbeddedBroker(host)
    EmbeddedBroker(host, allow_remote=True)  # explicit: allowed (not started here)


@pytest.mark.parametrize("host", LOOPBACK)
def test_embedded_broker_accepts_loopback(host: str) -> None:
    assert EmbeddedBroker(host).host == host


def test_sandbox_config_defaults_to_loopback() -> None:
    config = SandboxConfig()
    assert config.host == "127.0.0.1"
    assert config.allow_remote is False


# -- config files holding secrets --------------------------------------------------------

LITERAL = f"twinzo:\n  client: demo\n  password: {SECRET}\n"
REFERENCED = "twinzo:\n  client: demo\n  password: ${TWINZO_PASSWORD}\n  api_key: ${KEY:-x}\n"
PLACEHOLDER = "twinzo:\n  password: change-me\n"
NESTED = (
    "plants:\n- name: p\n  format: hitech\n  twinzo: {sector_id: 1}\n"
    f"  broker: {{username: u, password: {SECRET}}}\n"
)
DSN = f"stores:\n  postgres: {{dsn: 'postgresql://u:{SECRET}@127.0.0.1:1/db'}}\n"
S3 = f"stores:\n  s3: {{endpoint: '127.0.0.1:9', secret_key: {SECRET}}}\n"


@pytest.mark.parametrize("text", [LITERAL, NESTED, DSN, S3], ids=["twinzo", "broker", "dsn", "s3"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_file_with_literal_secrets_warns(tmp_path: Path, text: str, mode: int) -> None:
    path = tmp_path / "console.yaml"
    path.write_text(text)
    path.chmod(mode)
    warning = secrets_permission_warning(path)
    assert warning is not None
    assert "readable by other users" in warning
    assert str(path) in warning
    assert SECRET not in warning


@pytest.mark.parametrize(
    ("text", "mode"),
    [(LITERAL, 0o600), (LITERAL, 0o400), (REFERENCED, 0o644), (PLACEHOLDER, 0o644)],
    ids=["private", "read-only-owner", "references", "placeholder"],
)
def test_no_warning_without_exposure(tmp_path: Path, text: str, mode: int) -> None:
    path = tmp_path / "console.yaml"
    path.write_text(text)
    path.chmod(mode)
    assert secrets_permission_warning(path) is None


def test_warning_helper_never_raises(tmp_path: Path) -> None:
    """A file the loader rejects gives no warning and no exception."""
    for name, content in {
        "missing.yaml": None,
        "binary.yaml": b"\xff\xfe\x00",
        "deep.yaml": b"[" * 10_000,
        "bigint.yaml": b"password: " + b"9" * 5_000,
    }.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
            path.chmod(0o644)
        assert secrets_permission_warning(path) is None


def _config_show(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "DTP_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "dtp_console", "-c", str(path), "config", "show"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_show_warns_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text(LITERAL)
    path.chmod(0o644)
    shown = _config_show(path)
    assert shown.returncode == 0, shown.stderr
    warn = [line for line in shown.stderr.splitlines() if line.startswith("WARN ")]
    assert len(warn) == 1
    assert "readable by other users" in warn[0]
    assert SECRET not in shown.stderr + shown.stdout

    path.chmod(0o600)
    private = _config_show(path)
    assert private.returncode == 0
    assert "WARN" not in private.stderr
    assert load_config(path, environ={}).twinzo.password.get_secret_value() == SECRET
