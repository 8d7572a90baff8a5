"""`dtp-console sniff` and the simulator's publishers connect as the bridge does: over TLS
verified against the plant's CA, with the plant's user name and password.

Both build their client in the one MQTT module (`dtp_console.mqtt.client`), so
a plant whose broker needs TLS and a login is sniffed and simulated with the
broker config the bridge reads, and refused the same way when that config is
wrong.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from dtp_console.config.model import ConsoleConfig
from dtp_console.simulator.runner import run_simulator
from tests.support.mosquitto import MosquittoServer, TlsFiles

pytestmark = pytest.mark.integration

USER, PASSWORD = "bridge", "test-pass"  # the `tls_mosquitto` fixture's login
TOPIC = "ati_fm/sherpa/status"


def _broker(server: MosquittoServer, ca: Path, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": True,
        "ca_file": str(ca),
        "username": USER,
        "password": password,
    }


def _yaml(broker: dict[str, Any]) -> str:
    inline = ", ".join(f"{key}: {value}" for key, value in broker.items()).replace(
        "tls: True", "tls: true"
    )
    return f"""
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{{inline}}}
    device_map: {{ati_amr_001: tugger-05-old}}
    twinzo: {{sector_id: 2}}
    affine: {{A: 1000, D: 1000}}
"""


def _client(server: MosquittoServer, ca: Path) -> aiomqtt.Client:
    """A test-side client over TLS with the same login (the contract: the broker)."""
    return aiomqtt.Client(
        "127.0.0.1",
        server.port,
        username=USER,
        password=PASSWORD,
        tls_context=ssl.create_default_context(cafile=str(ca)),
    )


async def _sniff(config: Path, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dtp_console", "-c", str(config),
        "sniff", "--plant", "Old Plant", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_sniff_connects_over_tls_with_the_plants_ca_and_password(
    tls_mosquitto: MosquittoServer, tls_files: TlsFiles, tmp_path: Path
) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(_yaml(_broker(tls_mosquitto, tls_files.ca)))
    proc = await _sniff(config, "--limit", "1", "--for", "20s")
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert b"sniffing Old Plant" in first, first
    async with _client(tls_mosquitto, tls_files.ca) as client:
        good = b'{"sherpa_name": "ati_amr_001", "mode": "fleet", "pose": [1.5, 2, 0]}'
        await client.publish(TOPIC, good, qos=1)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert "=> ati_amr_001 -> tugger-05-old at (1500, 2000) mm" in out.decode()
    assert PASSWORD not in out.decode() + err.decode()


@pytest.mark.parametrize(
    ("case", "expected"),
    [("wrong password", "not authorized"), ("unrelated CA", "TLS certificate verification")],
)
async def test_sniff_says_why_the_broker_refused_it(
    tls_mosquitto: MosquittoServer,
    tls_files: TlsFiles,
    other_ca: TlsFiles,
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    if case == "wrong password":
        broker = _broker(tls_mosquitto, tls_files.ca, password="test-wrong")
    else:
        broker = _broker(tls_mosquitto, other_ca.ca)
    config = tmp_path / "console.yaml"
    config.write_text(_yaml(broker))
    proc = await _sniff(config, "--for", "15s")
    out, err = await asyncio.wait_for(proc.communicate(), 25)
    assert proc.returncode == 1, (out.decode(), err.decode())
    assert expected in err.decode(), err.decode()
    assert "test-wrong" not in out.decode() + err.decode()


async def test_the_simulator_publishes_over_tls_with_the_plants_ca_and_password(
    tls_mosquitto: MosquittoServer, tls_files: TlsFiles
) -> None:
    config = ConsoleConfig.model_validate(
        {
            "plants": [
                {
                    "name": "Old Plant",
                    "format": "ati_sherpa",
                    "broker": _broker(tls_mosquitto, tls_files.ca),
                    "device_map": {"ati_amr_001": "tugger-05-old"},
                    "twinzo": {"sector_id": 2},
                    "simulator": {"robots": 2, "rate_hz": 10},
                }
            ]
        }
    )
    received: list[str] = []
    stop = asyncio.Event()
    async with _client(tls_mosquitto, tls_files.ca) as client:
        await client.subscribe("ati_fm/#", qos=0)
        address = {"Old Plant": ("127.0.0.1", tls_mosquitto.port)}
        simulator = asyncio.create_task(run_simulator(config, address, stop))
        async with asyncio.timeout(15):
            async for message in client.messages:
                received.append(message.topic.value)
                if len(received) >= 3:
                    break
        stop.set()
        stats = await asyncio.wait_for(simulator, 10)
    assert stats.connects["Old Plant"] == 1
    assert stats.failures["Old Plant"] == 0
    assert stats.total("Old Plant") >= 3
    assert set(received) == {TOPIC}


async def test_the_simulator_retries_a_broker_that_refuses_its_login(
    tls_mosquitto: MosquittoServer, tls_files: TlsFiles
) -> None:
    from dtp_console.events import Bus, LogLine

    broker = {
        **_broker(tls_mosquitto, tls_files.ca, password="test-wrong"),
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.1,
    }
    config = ConsoleConfig.model_validate(
        {
            "plants": [
                {
                    "name": "Old Plant",
                    "format": "ati_sherpa",
                    "broker": broker,
                    "device_map": {"ati_amr_001": "tugger-05-old"},
                    "twinzo": {"sector_id": 2},
                    "simulator": {"robots": 1, "rate_hz": 10},
                }
            ]
        }
    )
    bus = Bus()
    lines = bus.subscribe()
    stop = asyncio.Event()
    address = {"Old Plant": ("127.0.0.1", tls_mosquitto.port)}
    asyncio.get_running_loop().call_later(1.5, stop.set)
    stats = await asyncio.wait_for(run_simulator(config, address, stop, bus=bus), 15)
    assert stats.connects["Old Plant"] == 0
    assert stats.failures["Old Plant"] >= 3, "retried on the broker's short backoff"
    said = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    warned = [line for line in said if "simulator Old Plant: broker" in line]
    assert warned and "not authorized" in warned[0], said
    assert len(warned) == 1, "repeats are folded"
