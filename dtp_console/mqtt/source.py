"""The MQTT source: one subscribing client per plant (or the platform), owned by one
long-lived task.

It connects through `dtp_console.mqtt.client` (TLS, login, sessions, backoff)
and is retried forever; each failure is one log line saying why. Incoming
messages go through a bounded queue whose overflow is counted, and the receive
loop only hands each message to a synchronous, non-blocking handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import aiomqtt

from dtp_console.config.model import BrokerConfig
from dtp_console.events import OpsLog
from dtp_console.mqtt.client import (
    DropHook,
    MessageQueue,
    broker_warnings,
    client_kwargs,
    describe_mqtt_error,
    payload_bytes,
    raise_if_cancelling,
    reconnect_backoff,
)
from dtp_console.state import PlantState

__all__ = ["Handler", "SourceConfig", "run_source"]

Handler = Callable[[str, bytes], object]


class SourceConfig(Protocol):
    """What a source needs of its config: a plant, or the platform worker's section."""

    @property
    def name(self) -> str: ...
    @property
    def broker(self) -> BrokerConfig: ...
    @property
    def topics(self) -> Sequence[str]: ...


_logger = logging.getLogger("dtp_console.mqtt")


async def run_source(
    plant: SourceConfig,
    address: tuple[str, int],
    handle: Handler,
    state: PlantState,
    log: OpsLog,
    *,
    reconnect: asyncio.Event | None = None,
    on_drop: DropHook | None = None,
) -> None:
    """Connect, subscribe and hand messages to `handle` until cancelled; reconnect forever.

    Messages still queued when a connection ends (error or cancellation) are
    handed to `handle` too, so a disconnect loses nothing that arrived. Setting
    `reconnect` (the silence watchdog does) drops a connection that is up and
    opens a new one at once, subscriptions and all; it is cleared on connect.
    """
    queues: list[MessageQueue] = []
    try:
        await _connect_loop(
            plant, address, handle, state, log, queues, reconnect=reconnect, on_drop=on_drop
        )
    finally:
        _hand_over_leftovers(queues, handle)


#: Most messages taken straight from the queue before the loop yields to other tasks.
_BURST = 256


def _drain_burst(queue: MessageQueue, handle: Handler) -> None:
    """Handle what is already queued without a task per message.

    aiomqtt's iterator wraps every `get` in a task and an `asyncio.wait`; in a burst
    that costs more than parsing. Synchronous and bounded, so other tasks still run
    between bursts.
    """
    for _ in range(_BURST):
        try:
            message = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        handle(message.topic.value, payload_bytes(message.payload))
        queue.in_hand = None


async def _pump(client: aiomqtt.Client, queue: MessageQueue | None, handle: Handler) -> None:
    async for message in client.messages:
        handle(message.topic.value, payload_bytes(message.payload))
        if queue is not None:
            queue.in_hand = None
            _drain_burst(queue, handle)


async def _receive(
    client: aiomqtt.Client,
    queue: MessageQueue | None,
    handle: Handler,
    reconnect: asyncio.Event | None,
) -> bool:
    """Hand messages to `handle` until the connection ends (its error raised) or
    `reconnect` is set: True then, and the caller leaves the client to reconnect."""
    if reconnect is None:
        await _pump(client, queue, handle)
        return False
    pump = asyncio.ensure_future(_pump(client, queue, handle))
    asked = asyncio.ensure_future(reconnect.wait())
    try:
        done, _ = await asyncio.wait({pump, asked}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # A message the pump had taken but not handled stays in `queue.in_hand`.
        pump.cancel()
        asked.cancel()
        await asyncio.wait({pump, asked})
    if pump in done:
        pump.result()  # the connection's error, as before the watchdog
        return False
    return True


def _hand_over_leftovers(queues: list[MessageQueue], handle: Handler) -> None:
    for queue in queues:
        while queue.in_hand is not None or not queue.empty():
            message = queue.in_hand if queue.in_hand is not None else queue.get_nowait()
            queue.in_hand = None
            handle(message.topic.value, payload_bytes(message.payload))
    queues.clear()


async def _connect_loop(
    plant: SourceConfig,
    address: tuple[str, int],
    handle: Handler,
    state: PlantState,
    log: OpsLog,
    queues: list[MessageQueue],
    *,
    reconnect: asyncio.Event | None = None,
    on_drop: DropHook | None = None,
) -> None:
    broker = plant.broker
    host, port = address
    backoff = reconnect_backoff(broker)
    # Kept in the state so STATS, the stats JSON and the UI repeat them while it runs.
    state.warnings = broker_warnings(plant, address)
    for warning in state.warnings:
        log.emit("WARN", warning, plant.name)
    while True:
        state.set_mqtt("connecting", f"{host}:{port}")
        connecting, forced = True, False
        try:
            kwargs = client_kwargs(
                plant, host, port, state.counters, queues, session=True, on_drop=on_drop
            )
            async with aiomqtt.Client(**kwargs) as client:
                connecting = False
                for topic in plant.topics:
                    await client.subscribe(topic, qos=broker.qos)
                state.set_mqtt("connected", f"{host}:{port}")
                state.connects += 1
                if reconnect is not None:
                    reconnect.clear()
                backoff.reset()
                topics = ", ".join(plant.topics)
                session = " (persistent session)" if broker.persistent else ""
                log.emit(
                    "INFO",
                    f"MQTT connected: {plant.name} <- {host}:{port} ({topics}){session}",
                    plant.name,
                )
                queue = queues[-1] if queues else None
                forced = await _receive(client, queue, handle, reconnect)
            if forced:
                _hand_over_leftovers(queues, handle)
        except asyncio.CancelledError:
            state.set_mqtt("stopped")
            raise
        except Exception as exc:
            # Not only MqttError: a CA file deleted after load, a filter paho refuses or
            # a bug must show as a disconnected plant that retries, never a dead task.
            raise_if_cancelling(exc)
            if forced:
                # The watchdog's disconnect of a connection that delivered nothing may time
                # out on a dead path: that is the point of reconnecting, not a new failure.
                _logger.debug("MQTT %s: forced disconnect failed", plant.name, exc_info=True)
                _hand_over_leftovers(queues, handle)
                continue
            delay = backoff.next()
            if isinstance(exc, aiomqtt.MqttError):
                reason = describe_mqtt_error(exc, tls=broker.tls if connecting else None)
            else:
                _logger.debug("MQTT %s: unexpected error", plant.name, exc_info=True)
                reason = f"{type(exc).__name__}: {describe_mqtt_error(exc)}"
            state.set_mqtt("disconnected", reason)
            log.limited(
                "WARN",
                f"mqtt:{plant.name}",
                f"MQTT {plant.name} ({host}:{port}): {reason}; retrying in {delay:.1f}s",
                plant.name,
            )
            _hand_over_leftovers(queues, handle)
            await asyncio.sleep(delay)
