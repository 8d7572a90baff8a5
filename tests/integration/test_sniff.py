"""`dtp-console sniff`: each message with its parse result and mapped login."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiomqtt
import pytest

from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

CONFIG = """
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map: {{ati_amr_001: tugger-05-old}}
    twinzo: {{sector_id: 2}}
    affine: {{A: 1000, D: 1000}}
"""


async def test_sniff_prints_parse_result_and_login(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(CONFIG.format(port=mosquitto.port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dtp_console", "-c", str(config),
        "sniff", "--plant", "Old Plant", "--limit", "3", "--for", "20s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert b"sniffing Old Plant" in first
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        topic = "ati_fm/sherpa/status"
        good = b'{"sherpa_name": "ati_amr_001", "mode": "fleet", "pose": [1.5, 2, 0]}'
        await client.publish(topic, good, qos=1)
        await client.publish(topic, b'{"sherpa_name": "x9", "mode": "fleet", "pose": [1, 2, 0]}')
        await client.publish(topic, b"garbage", qos=1)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "=> ati_amr_001 -> tugger-05-old at (1500, 2000) mm" in text
    assert "=> x9 -> UNKNOWN at (1000, 2000) mm" in text
    assert "=> rejected:invalid_json" in text
    assert "3 messages" in text


def test_sniff_refuses_the_embedded_broker(tmp_path: Path) -> None:
    from dtp_console.cli import main

    config = tmp_path / "console.yaml"
    config.write_text(
        CONFIG.format(port=1883).replace("host: 127.0.0.1, port: 1883", "host: embedded")
    )
    assert main(["-c", str(config), "sniff", "--plant", "old plant"]) == 2
