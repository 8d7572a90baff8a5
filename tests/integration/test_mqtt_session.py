"""Persistent MQTT sessions against a real mosquitto: what is published while the bridge is away.

The bridge's MQTT source (`run_source`, the code a `Bridge` runs) subscribes with
QoS 1 and a stable client id. Its connection is then ended — kicked by a client
taking its session over (the broker drops the bridge, which reconnects after its
backoff), or by a console restart — and QoS 1 messages are published while it is
away. With a persistent session they arrive after the reconnect; with a clean
session they are gone, which is what the test asserts for the other case so it
can tell the two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from dtp_console.config.model import ConsoleConfig, PlantConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.mqtt.client import client_kwargs
from dtp_console.mqtt.source import run_source
from dtp_console.state import PlantState
from tests.reliability.conftest import publish, until
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

TOPIC = "ati_fm/sherpa/status"
CLIENT_ID = "dtp-console-session-test"
AWAY = 5


def _plant(port: int, *, persistent: bool, protocol: str) -> PlantConfig:
    broker = {
        "port": port,
        "client_id": CLIENT_ID,
        "qos": 1,
        "protocol": protocol,
        "persistent_session": persistent,
        # Long enough to publish while the bridge waits to reconnect, short enough for a test.
        "reconnect_initial_s": 2.0,
        "reconnect_max_s": 2.0,
    }
    data = {"name": "P", "format": "ati_sherpa", "broker": broker, "twinzo": {"sector_id": 1}}
    return ConsoleConfig.model_validate({"plants": [data]}).plants[0]


class _Source:
    """The bridge's MQTT source in a task, recording every payload it hands on."""

    def __init__(self, plant: PlantConfig, port: int) -> None:
        self.plant = plant
        self.port = port
        self.state = PlantState(plant.name)
        self.bus = Bus()
        self.lines = self.bus.subscribe()
        self.payloads: list[bytes] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(
            run_source(
                self.plant,
                ("127.0.0.1", self.port),
                lambda _topic, payload: self.payloads.append(payload),
                self.state,
                OpsLog(self.bus),
            )
        )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def said(self) -> list[str]:
        return [e.render() for e in self.lines.drain() if isinstance(e, LogLine)]


@pytest.fixture
async def sources() -> AsyncIterator[list[_Source]]:
    made: list[_Source] = []
    try:
        yield made
    finally:
        for source in made:
            await source.stop()


async def _kick(plant: PlantConfig, port: int) -> None:
    """Connect with the bridge's id and session settings, then leave: a session takeover."""
    kwargs: dict[str, Any] = client_kwargs(plant, "127.0.0.1", port, session=True)
    async with aiomqtt.Client(**kwargs):
        pass


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "clean"])
@pytest.mark.parametrize("how", ["kicked", "restarted"])
async def test_qos1_messages_published_while_away_arrive_only_with_a_persistent_session(
    mosquitto: MosquittoServer,
    sources: list[_Source],
    protocol: str,
    persistent: bool,
    how: str,
) -> None:
    port = mosquitto.port
    plant = _plant(port, persistent=persistent, protocol=protocol)
    assert plant.broker.persistent is persistent
    source = _Source(plant, port)
    sources.append(source)
    source.start()
    await until(lambda: source.state.connects == 1, what="connected")
    assert any("(persistent session)" in line for line in source.said()) is persistent
    await publish(port, [(TOPIC, b"before")])
    await until(lambda: source.payloads == [b"before"], what="the first message")

    if how == "kicked":
        await _kick(plant, port)
        await until(lambda: source.state.mqtt == "disconnected", what="the bridge kicked off")
    else:
        await source.stop()  # the console stops; a new one starts below
    away = [(TOPIC, f"away-{i}".encode()) for i in range(AWAY)]
    await publish(port, away)
    assert source.state.connects == 1, "published while the bridge was away"

    if how == "kicked":
        await until(lambda: source.state.connects == 2, timeout=6, what="the reconnect")
    else:
        source = _Source(plant, port)
        sources.append(source)
        source.start()
        await until(lambda: source.state.connects == 1, what="the new console connected")
    await publish(port, [(TOPIC, b"after")])
    # The broker delivers a session's queued messages before new ones.
    await until(lambda: b"after" in source.payloads, what="a message after the reconnect")
    arrived = [p for p in source.payloads if p.startswith(b"away-")]
    if persistent:
        assert arrived == [p for _, p in away], "every message sent while away, in order"
    else:
        assert arrived == [], "a clean session starts empty: what was sent while away is gone"
    assert source.state.counters.received == len(source.payloads)
