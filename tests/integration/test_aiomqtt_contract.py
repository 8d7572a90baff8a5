"""What the MQTT source relies on in aiomqtt and asyncio, pinned against a real mosquitto.

The bridge's fast receive path (`dtp_console.mqtt.source`) is measured at 93% of
raw aiomqtt because it leans on behaviour neither library documents as API:

- aiomqtt builds its incoming queue from `queue_type` and hands every arrival to
  that queue's `put_nowait` (how every message is counted, and a full queue drops
  with a count instead of raising);
- `client.messages` takes each message through `Queue.get`, and asyncio's
  `Queue.get` takes the item with `get_nowait` (how `in_hand` survives a cancel);
- the messages that arrived together wait in that same queue object, so the
  source drains them synchronously (`_drain_burst`) after the iterator's first.

An aiomqtt or Python upgrade that changes any of these fails here, by name,
instead of silently losing the count or the speed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import pytest

from dtp_console.config.model import ConsoleConfig, PlantConfig
from dtp_console.mqtt.client import MessageQueue, client_kwargs
from dtp_console.state import PlantState
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

TOPIC = "ati_fm/sherpa/status"
COUNT = 50


def _plant(port: int) -> PlantConfig:
    data = {
        "name": "P",
        "format": "ati_sherpa",
        "broker": {"port": port, "qos": 1},
        "twinzo": {"sector_id": 1},
    }
    return ConsoleConfig.model_validate({"plants": [data]}).plants[0]


def test_aiomqtt_minor_version_is_the_pinned_one() -> None:
    # pyproject pins aiomqtt to one minor release; this says which behaviour was checked.
    major, minor = (int(part) for part in aiomqtt.__version__.split(".")[:2])
    assert (major, minor) == (2, 5), (
        f"aiomqtt {aiomqtt.__version__}: re-check this file's assumptions, then move the pin"
    )


async def test_asyncio_queue_get_takes_the_item_with_get_nowait() -> None:
    taken: list[int] = []

    class Recording(asyncio.Queue[int]):
        def get_nowait(self) -> int:
            item = super().get_nowait()
            taken.append(item)
            return item

    queue = Recording()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(7)
    assert await asyncio.wait_for(getter, 5) == 7
    assert taken == [7], "asyncio.Queue.get no longer goes through get_nowait: in_hand breaks"


async def test_arrivals_go_through_our_queue_and_wait_there_for_the_drain(
    mosquitto: MosquittoServer,
) -> None:
    plant = _plant(mosquitto.port)
    state = PlantState(plant.name)
    queues: list[MessageQueue] = []
    kwargs: dict[str, Any] = client_kwargs(
        plant, "127.0.0.1", mosquitto.port, state.counters, queues
    )
    async with aiomqtt.Client(**kwargs) as client:
        assert len(queues) == 1, "aiomqtt did not build its queue from queue_type"
        queue = queues[0]
        await client.subscribe(TOPIC, qos=1)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as publisher:
            for index in range(COUNT):
                await publisher.publish(TOPIC, f"{index}".encode(), qos=1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while state.counters.received < COUNT and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert state.counters.received == COUNT, "arrivals no longer pass our put_nowait"
        messages = aiomqtt_iter(client)
        first: aiomqtt.Message = await asyncio.wait_for(anext(messages), 5)
        assert queue.in_hand is first, "client.messages no longer takes through get_nowait"
        assert queue.qsize() == COUNT - 1, "the other arrivals are not waiting in our queue"
        rest = [queue.get_nowait() for _ in range(COUNT - 1)]
        assert [m.payload for m in [first, *rest]] == [f"{i}".encode() for i in range(COUNT)]


def aiomqtt_iter(client: aiomqtt.Client) -> Any:
    """`client.messages` as an async iterator (its type differs between releases)."""
    return aiter(client.messages)
