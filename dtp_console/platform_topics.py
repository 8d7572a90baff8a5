"""Watch the platform broker's `dtp/#` topics (twin generators, sensors) and count them.

The stores issue maps these messages to observations and events; until then
the console shows that they flow, per topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt

from dtp_console.backoff import Backoff
from dtp_console.bridge.mqtt import describe_mqtt_error, raise_if_cancelling
from dtp_console.events import OpsLog
from dtp_console.state import EngineState

__all__ = ["PLATFORM_TOPICS", "watch_platform"]

PLATFORM_TOPICS = "dtp/#"
_MAX_TOPICS = 500


async def watch_platform(
    address: tuple[str, int],
    state: EngineState,
    log: OpsLog,
    *,
    username: str | None = None,
    password: str | None = None,
    on_message: Callable[[str, bytes], None] | None = None,
) -> None:
    """Count messages per topic on the platform broker until cancelled; reconnect forever.

    `on_message` (the stores' intake) gets every message; it must not block.
    """
    host, port = address
    backoff = Backoff(0.5, 30.0)
    counts = state.platform_topics
    while True:
        try:
            async with aiomqtt.Client(
                host, port, username=username, password=password, identifier=None
            ) as client:
                await client.subscribe(PLATFORM_TOPICS, qos=0)
                backoff.reset()
                async for message in client.messages:
                    topic = message.topic.value
                    if topic in counts or len(counts) < _MAX_TOPICS:
                        counts[topic] += 1
                    if on_message is not None and isinstance(message.payload, bytes):
                        on_message(topic, message.payload)
        except aiomqtt.MqttError as exc:
            raise_if_cancelling(exc)
            delay = backoff.next()
            log.limited(
                "WARN",
                "platform-mqtt",
                f"platform broker {host}:{port}: {describe_mqtt_error(exc)}; "
                f"retrying in {delay:.1f}s",
            )
            await asyncio.sleep(delay)
