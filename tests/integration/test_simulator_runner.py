"""`run_simulator` and `dtp-console simulate` against real brokers: Mosquitto and embedded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
import yaml

from dtp_console.bridge.formats import parser_for
from dtp_console.bridge.parse import Reading
from dtp_console.cli import main
from dtp_console.config.model import ConsoleConfig
from dtp_console.events import Bus, LogLine
from dtp_console.simulator.broker import EmbeddedBroker
from dtp_console.simulator.runner import GENERATORS, SimStats, run_simulator

pytestmark = pytest.mark.integration

MOSQUITTO = ("127.0.0.1", 1883)


def _mosquitto_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(MOSQUITTO, timeout=1):
        return True
    return False


def _config(prefix: str, **simulator: object) -> ConsoleConfig:
    return ConsoleConfig.model_validate(
        {
            "simulator": simulator,
            "plants": [
                {
                    "name": "Old Plant",
                    "format": "ati_sherpa",
                    "broker": {"topics": [f"{prefix}/ati_fm/sherpa/status"]},
                    "device_map": {"ati_amr_001": "tugger-05-old"},
                    "twinzo": {"sector_id": 2},
                    "affine": {"A": 999.74, "B": 22.88, "C": 22.88, "D": -999.74},
                    "simulator": {"robots": 3, "rate_hz": 5, "pose_shape": "mixed"},
                },
                {
                    "name": "HiTech Plant",
                    "format": "hitech",
                    "broker": {"topics": [f"{prefix}/hitech/amr/+/position"]},
                    "device_map": {"hitech-amr-001": "tugger-03"},
                    "twinzo": {"sector_id": 1},
                    "simulator": {"robots": 2, "rate_hz": 5},
                },
            ],
        }
    )


@contextlib.asynccontextmanager
async def _subscriber(host: str, port: int, topic: str) -> AsyncIterator[aiomqtt.Client]:
    client = aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V311)
    async with client:
        await client.subscribe(topic, qos=0)
        yield client


async def _collect(client: aiomqtt.Client, into: list[tuple[str, bytes]]) -> None:
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        into.append((str(message.topic), message.payload))


async def _run_for(
    seconds: float,
    config: ConsoleConfig,
    addresses: Mapping[str, tuple[str, int]],
    **kwargs: Any,
) -> SimStats:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await asyncio.wait_for(run_simulator(config, addresses, stop, **kwargs), seconds + 10)


async def test_publishes_to_mosquitto_and_a_subscriber_receives() -> None:
    if not _mosquitto_up():
        pytest.skip("Mosquitto is not listening on 127.0.0.1:1883")
    prefix = f"dtp-test-{uuid.uuid4().hex[:8]}"
    config = _config(prefix)
    received: list[tuple[str, bytes]] = []
    async with _subscriber(*MOSQUITTO, f"{prefix}/#") as client:
        collector = asyncio.create_task(_collect(client, received))
        addresses = {p.name: MOSQUITTO for p in config.plants}
        stats = await _run_for(1.2, config, addresses)
        await asyncio.sleep(0.3)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
    assert stats.total("Old Plant") >= 3
    assert stats.total("HiTech Plant") >= 2
    assert len(received) == stats.total()
    by_plant = {p.name: parser_for(p) for p in config.plants}
    for topic, payload in received:
        plant = "Old Plant" if "/ati_fm/" in topic else "HiTech Plant"
        result = by_plant[plant](topic, payload)
        assert isinstance(result, Reading) or orjson.loads(payload).get("mode") == "disconnected"


async def test_embedded_brokers_with_generators_and_a_bus() -> None:
    prefix = "demo"
    config = _config(prefix)
    bus = Bus()
    events = bus.subscribe()
    async with EmbeddedBroker() as plants_broker, EmbeddedBroker() as platform:
        received: list[tuple[str, bytes]] = []
        async with _subscriber(*platform.address, "dtp/#") as client:
            collector = asyncio.create_task(_collect(client, received))
            stats = await _run_for(
                1.2,
                config,
                {"HiTech Plant": plants_broker.address},  # Old Plant has no address: skipped
                bus=bus,
                platform_address=platform.address,
                rate_override=2.0,
            )
            await asyncio.sleep(0.3)
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
    assert "Old Plant" not in stats.published
    assert 2 <= stats.total("HiTech Plant") <= 2 * 2 * 2  # 2 robots, 2 Hz, ~1.2 s
    topics = {topic for topic, _ in received}
    assert {
        "dtp/lift/Lift_001/vibration",
        "dtp/energy_hvac/events",
        "dtp/sensors/room1/temp",
    } <= topics
    assert stats.total(GENERATORS) == len(received)
    lines = [e.render() for e in events.drain() if isinstance(e, LogLine)]
    assert any(line.startswith("WARN simulator Old Plant: no broker address") for line in lines)
    assert any(
        line.startswith("INFO simulator HiTech Plant: 2 robots (1 mapped)") for line in lines
    )
    assert stats.summary_lines()[0].startswith("HiTech Plant: ")


async def test_an_unreachable_broker_is_retried_not_fatal() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = ("127.0.0.1", probe.getsockname()[1])
    config = _config("x")
    config.plants[1].broker.reconnect_initial_s = 0.1
    bus = Bus()
    events = bus.subscribe()
    stats = await _run_for(1.0, config, {"HiTech Plant": dead}, bus=bus, plants=["hitech plant"])
    assert stats.total() == 0
    assert stats.failures["HiTech Plant"] >= 2
    seen = list(events.drain())
    assert any(
        isinstance(e, LogLine) and e.level == "WARN" and "unreachable" in e.text for e in seen
    )


async def test_a_broker_that_comes_back_is_reconnected() -> None:
    broker = EmbeddedBroker()
    port = await broker.start()
    config = _config("x")
    config.plants[1].broker.reconnect_initial_s = 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_simulator(config, {"HiTech Plant": ("127.0.0.1", port)}, stop, plants=["HiTech Plant"])
    )
    await asyncio.sleep(0.6)
    await broker.stop()
    await asyncio.sleep(0.3)
    again = EmbeddedBroker(port=port)
    await again.start()
    try:
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        stats = await asyncio.wait_for(task, 5)
        await again.stop()
    assert stats.connects["HiTech Plant"] >= 2
    assert stats.failures["HiTech Plant"] >= 1


def test_simulate_command_with_embedded_brokers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config("demo", generators={"lift": {"rate_hz": 2}}).model_dump(mode="json")
    for plant in config["plants"]:
        plant["broker"]["host"] = "embedded"
        plant["broker"]["port"] = 0
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["-c", str(path), "simulate", "--for", "1s", "--rate", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("embedded MQTT broker for") == 3  # two plants and the generators
    assert "simulator summary:" in out
    assert "Old Plant: " in out
    assert "HiTech Plant: " in out
    assert "generators: " in out
    assert "dtp/lift/Lift_001/vibration" in out
