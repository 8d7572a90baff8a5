"""The embedded amqtt broker: loopback only, anonymous only, and it carries simulator traffic."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiomqtt
import pytest

from dtp_console.bridge.parse import Reading, parse_hitech
from dtp_console.config.model import PlantConfig
from dtp_console.simulator.amr import AmrFleet
from dtp_console.simulator.broker import EmbeddedBroker, is_loopback

pytestmark = pytest.mark.integration


def _plant() -> PlantConfig:
    return PlantConfig.model_validate(
        {
            "name": "HiTech Plant",
            "format": "hitech",
            "device_map": {"hitech-amr-001": "tugger-03"},
            "twinzo": {"sector_id": 1},
            "simulator": {"robots": 2, "unmapped": 1},
        }
    )


def _client(port: int, **kwargs: object) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V311, **kwargs)  # type: ignore[arg-type]


async def test_a_subscriber_receives_what_the_simulator_publishes() -> None:
    fleet = AmrFleet(_plant())
    async with EmbeddedBroker() as broker:
        assert broker.port is not None
        assert broker.port > 0
        assert broker.address == ("127.0.0.1", broker.port)
        async with _client(broker.port) as subscriber:
            await subscriber.subscribe("hitech/amr/+/position", qos=0)
            sent: list[tuple[str, bytes]] = []
            async with _client(broker.port) as publisher:
                for _ in range(10):
                    for topic, payload in fleet.step(0.5):
                        await publisher.publish(topic, payload)
                        sent.append((topic, payload))
            got: list[tuple[str, bytes]] = []
            async with asyncio.timeout(5):
                async for message in subscriber.messages:
                    assert isinstance(message.payload, bytes)
                    got.append((str(message.topic), message.payload))
                    if len(got) == len(sent):
                        break
    assert sent
    assert got == sent
    readings = [parse_hitech(t, p) for t, p in got]
    assert {r.vendor_id for r in readings if isinstance(r, Reading)} == set(fleet.robots)


async def test_stop_closes_the_port() -> None:
    broker = EmbeddedBroker()
    port = await broker.start()
    await broker.stop()
    await broker.stop()  # idempotent
    assert broker.port is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_a_fixed_port_is_used_and_a_busy_one_is_an_error() -> None:
    async with EmbeddedBroker() as first:
        assert first.port is not None
        with pytest.raises(OSError, match="could not listen"):
            await EmbeddedBroker(port=first.port).start()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.2", "::", "example.com"])
def test_non_loopback_bind_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        EmbeddedBroker(host)


def test_loopback_names() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.1.2.3")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("10.0.0.1")


def _non_loopback_address() -> str | None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks an interface
        address: str = probe.getsockname()[0]
        return None if is_loopback(address) else address
    return None


async def test_not_reachable_on_a_non_loopback_address() -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    async with EmbeddedBroker() as broker:
        assert broker.port is not None
        # Reachable on loopback (a bare TCP probe, as a health check would do it)…
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
        with pytest.raises(OSError):  # …but not from the network.
            socket.create_connection((address, broker.port), timeout=1).close()


async def test_only_anonymous_auth_no_sys_topics() -> None:
    broker = EmbeddedBroker()
    plugins = broker._config(1883)["plugins"]
    assert list(plugins) == ["amqtt.plugins.authentication.AnonymousAuthPlugin"]
    async with broker:
        assert broker.port is not None
        async with _client(broker.port) as subscriber:
            await subscriber.subscribe("$SYS/#")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.5):
                    await anext(aiter(subscriber.messages))


async def test_mqtt5_clients_are_refused() -> None:
    """amqtt speaks MQTT 3.1.1 only (documented); this pins that quirk."""
    async with EmbeddedBroker() as broker:
        assert broker.port is not None
        client = aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5)
        with pytest.raises(aiomqtt.MqttError):
            async with client:
                pass
