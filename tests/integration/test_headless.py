"""`dtp-console run --no-ui` as operators run it: a real process, real broker, sandbox inside."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiomqtt
import orjson
import pytest

from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

CONFIG = """
twinzo:
  client: demo
  password: ${{TWINZO_PASSWORD:-change-me}}
  api_key: ${{TWINZO_API_KEY:-change-me}}
sandbox:
  enabled: true
registry: {{enabled: false}}
stores: {{enabled: false}}
logging:
  log_every_n: 1
  stats_interval_s: 0.5
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map: {{ati_amr_001: tugger-05-old}}
    twinzo: {{sector_id: 2}}
    min_post_interval_ms: 0
  - name: HiTech Plant
    format: hitech
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map: {{hitech-amr-001: tugger-03}}
    twinzo: {{sector_id: 1}}
    min_post_interval_ms: 0
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "ATI_", "AFFINE_"))}
    env.update(extra)
    return env


async def _start(config: Path, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dtp_console",
        "-c",
        str(config),
        "run",
        "--no-ui",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(**env),
    )


async def _wait_line(proc: asyncio.subprocess.Process, needle: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not raw:
            break
        seen.append(raw.decode().rstrip("\n"))
        if needle in seen[-1]:
            return
    raise AssertionError(f"{needle!r} not printed; got {seen}")


async def _publish_demo_traffic(port: int) -> None:
    now = int(time.time() * 1000)
    async with aiomqtt.Client("127.0.0.1", port) as client:
        ati = {"sherpa_name": "ati_amr_001", "mode": "Fleet", "pose": [1.0, 2.0, 0.0]}
        await client.publish("ati_fm/sherpa/status", orjson.dumps(ati), qos=1)
        unknown = {"sherpa_name": "ati_amr_999", "mode": "fleet", "pose": [1.0, 2.0, 0.0]}
        await client.publish("ati_fm/sherpa/status", orjson.dumps(unknown), qos=1)
        hitech = {"device_id": "hitech-amr-001", "timestamp": now, "position": {"x": 5, "y": 6}}
        await client.publish("hitech/amr/hitech-amr-001/position", orjson.dumps(hitech), qos=1)


async def test_headless_run_logs_in_the_known_format_and_writes_stats(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(CONFIG.format(port=mosquitto.port))
    stats = tmp_path / "stats.json"
    secret = "s3cr3t-device-password"
    proc = await _start(config, "--for", "4s", "--stats-json", str(stats), TWINZO_PASSWORD=secret)
    seen: list[str] = []
    while sum("MQTT connected" in line for line in seen) < 2:  # both plants
        await _wait_line(proc, "MQTT connected", seen)
    await _publish_demo_traffic(mosquitto.port)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = "\n".join(seen) + "\n" + out.decode()
    assert proc.returncode == 0, err.decode()
    assert "OK tugger-05-old (ATI:ati_amr_001) -> Old Plant: (1, 2)" in text
    assert "OK tugger-03 (HiTech:hitech-amr-001) -> HiTech Plant: (5, 6)" in text
    assert "WARN Unknown ATI device: ati_amr_999 (add to device map)" in text
    assert "STATS Old Plant: mqtt connected | rx 2" in text
    assert secret not in text + err.decode()
    data = json.loads(stats.read_text())
    assert secret not in stats.read_text()
    old = data["plants"]["Old Plant"]
    assert old["received"] == 2
    assert old["pending"] == 0
    assert old["outcomes"] == {"forwarded": 1, "unknown_device": 1}
    assert old["devices"]["tugger-05-old"]["posts_ok"] == 1
    assert data["plants"]["HiTech Plant"]["outcomes"] == {"forwarded": 1}
    assert data["auth"]["tugger-03"]["status"] == "valid"


async def test_sigterm_drains_and_exits_zero(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(CONFIG.format(port=mosquitto.port))
    stats = tmp_path / "stats.json"
    proc = await _start(config, "--plant", "old plant", "--stats-json", str(stats))
    seen: list[str] = []
    await _wait_line(proc, "MQTT connected: Old Plant", seen)
    await _publish_demo_traffic(mosquitto.port)
    await _wait_line(proc, "OK tugger-05-old", seen)
    proc.send_signal(signal.SIGTERM)
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    data = json.loads(stats.read_text())
    assert list(data["plants"]) == ["Old Plant"]  # --plant chose one
    assert data["plants"]["Old Plant"]["pending"] == 0


async def test_config_error_exits_non_zero_with_field_path(tmp_path: Path) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(CONFIG.format(port=99999))
    proc = await _start(config, "--for", "1s")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert f"{config}: 2 problems" in err.decode()
    assert "plants[0] (Old Plant).broker.port: Input should be less than or equal to 65535" in (
        err.decode()
    )


def test_no_ui_never_imports_textual(tmp_path: Path) -> None:
    import subprocess

    config = tmp_path / "console.yaml"
    config.write_text(CONFIG.format(port=1).replace("enabled: true", "enabled: false"))
    code = (
        "import sys\n"
        "from dtp_console.cli import main\n"
        f"rc = main(['-c', {str(config)!r}, 'run', '--no-ui', '--for', '0.3s'])\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print('TEXTUAL', bad, 'RC', rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert "TEXTUAL [] RC 0" in result.stdout, result.stdout + result.stderr
