"""The MQTT adapter: one aiomqtt client per plant, owned by one long-lived task.

TLS verifies the broker's certificate and host name unless a plant turns that
off explicitly. The connection is retried forever with jittered exponential
backoff and a cap; each failure is one log line saying why. Incoming messages
go through a bounded queue whose overflow is counted, and the receive loop
only hands each message to a synchronous, non-blocking handler.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dtp_console.backoff import Backoff
from dtp_console.config.model import BrokerConfig
from dtp_console.events import OpsLog
from dtp_console.state import PlantCounters, PlantState

__all__ = [
    "DropHook",
    "Handler",
    "MessageQueue",
    "SourceConfig",
    "broker_warnings",
    "client_kwargs",
    "describe_mqtt_error",
    "raise_if_cancelling",
    "run_source",
    "tls_context",
]

Handler = Callable[[str, bytes], object]
#: Told the topic of each message the full queue dropped (already counted as dropped).
DropHook = Callable[[str], object]


class SourceConfig(Protocol):
    """What a source needs of its config: a plant, or the platform worker's section."""

    @property
    def name(self) -> str: ...
    @property
    def broker(self) -> BrokerConfig: ...
    @property
    def topics(self) -> Sequence[str]: ...


_logger = logging.getLogger("dtp_console.mqtt")


def tls_context(broker: BrokerConfig) -> ssl.SSLContext:
    """A client TLS context: verification on unless `verify: false`."""
    context = ssl.create_default_context(cafile=str(broker.ca_file) if broker.ca_file else None)
    if not broker.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MessageQueue(asyncio.Queue[aiomqtt.Message]):
    """The client's incoming queue, remembering the message last taken until it is handled.

    aiomqtt's message iterator takes each message in a task of its own; when the
    iteration is cancelled just as that task has taken one, the message is
    dropped with the task. `in_hand` keeps it so the owner can still handle it.
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.in_hand: aiomqtt.Message | None = None

    def get_nowait(self) -> aiomqtt.Message:
        item = super().get_nowait()
        self.in_hand = item
        return item


def _counting_queue(
    counters: PlantCounters, created: list[MessageQueue], on_drop: DropHook | None = None
) -> type[MessageQueue]:
    class _CountingQueue(MessageQueue):
        """Counts every arrival; a full queue drops (and counts) instead of raising."""

        def __init__(self, maxsize: int = 0) -> None:
            super().__init__(maxsize)
            # The owner reads leftovers after the client closes, so nothing is lost.
            created.append(self)

        def put_nowait(self, item: aiomqtt.Message) -> None:
            counters.received += 1
            try:
                super().put_nowait(item)
            except asyncio.QueueFull:
                counters.count("dropped:queue_full")
                if on_drop is not None:
                    on_drop(item.topic.value)

    return _CountingQueue


def client_kwargs(
    plant: SourceConfig,
    host: str,
    port: int,
    counters: PlantCounters | None = None,
    queues: list[MessageQueue] | None = None,
    *,
    session: bool = False,
    on_drop: DropHook | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `aiomqtt.Client` from a plant's broker settings.

    `session` is for the bridge itself: it resumes the plant's persistent session
    when the plant has one. Any other reader (`sniff`) gets a random id and a clean
    session, because connecting with the bridge's id would take its session over
    and kick the running bridge off the broker.
    """
    broker = plant.broker
    persistent = session and broker.persistent
    slug = "".join(c if c.isalnum() else "-" for c in plant.name.lower())
    random_id = f"dtp-console-{slug}-{uuid.uuid4().hex[:8]}"
    stable_id = broker.client_id if persistent or not broker.persistent else None
    kwargs: dict[str, Any] = {
        "hostname": host,
        "port": port,
        "username": broker.username,
        "password": broker.password.get_secret_value() if broker.password else None,
        "identifier": stable_id or random_id,
        "protocol": (
            aiomqtt.ProtocolVersion.V5 if broker.protocol == "5" else aiomqtt.ProtocolVersion.V311
        ),
        "keepalive": broker.keepalive_s,
        "max_queued_incoming_messages": broker.queue_size,
        "logger": _logger,
        "timeout": 10.0,
    }
    if broker.protocol == "5":
        # aiomqtt builds a new paho client per connect, so its default "clean on the
        # first connect only" would be clean on every reconnect.
        kwargs["clean_start"] = not persistent
        if persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = broker.session_expiry_s
            kwargs["properties"] = properties
    else:
        kwargs["clean_session"] = not persistent
    if counters is not None:
        kwargs["queue_type"] = _counting_queue(counters, [] if queues is None else queues, on_drop)
    if broker.tls:
        kwargs["tls_context"] = tls_context(broker)
        if not broker.verify:
            kwargs["tls_insecure"] = True
    return kwargs


def _loopback(host: str) -> bool:
    if host in ("embedded", "localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def broker_warnings(plant: SourceConfig, address: tuple[str, int] | None = None) -> list[str]:
    """What is unsafe about how this plant talks to its broker (shown for as long as it runs).

    A password over plain MQTT is readable by anyone on the path unless the broker is
    on loopback; port 8883 is where an operator expects TLS, so a plain connection
    there is always worth a warning. `address` is where the bridge really connects
    (an embedded broker resolved); the configured host and port when None.
    """
    broker = plant.broker
    host, port = address or (broker.host, broker.port)
    where = f"{broker.host if broker.embedded else host}:{port}"
    out = []
    if broker.tls and not broker.verify:
        out.append(f"TLS verification is OFF for {plant.name} ({where}; broker.verify: false)")
    if not broker.tls and broker.password is not None and not broker.embedded:
        if port == 8883:
            out.append(
                f"MQTT password of {plant.name} sent in plaintext to {where}: port 8883 "
                "expects TLS (broker.tls: false)"
            )
        elif not _loopback(host):
            out.append(
                f"MQTT password of {plant.name} sent in plaintext to {where} (set broker.tls: true)"
            )
    return out


def raise_if_cancelling(exc: BaseException) -> None:
    """Re-raise cancellation that aiomqtt turned into an `MqttError`.

    When a task is cancelled inside `async with Client`, the client's graceful
    disconnect may time out and raise `MqttError` in place of the
    `CancelledError`; retrying then would swallow the cancellation forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def describe_mqtt_error(exc: BaseException, *, tls: bool | None = None) -> str:
    """One line an operator can act on.

    `tls` is whether the failed attempt was a TLS connect (None: unknown, or
    the connection was already up). aiomqtt keeps only the message of a socket
    error, so a plain MQTT broker resetting a TLS hello, or a TLS-only listener
    silently waiting on a plain CONNECT, would otherwise read as a generic
    reset or time-out.
    """
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return f"TLS certificate verification failed ({text})"
    if "wrong_version_number" in lowered or "ssl" in lowered:
        return f"TLS handshake failed ({text})"
    if tls and any(s in lowered for s in ("connection reset", "eof occurred", "unexpected eof")):
        hint = "the broker closed the connection; is it a plain MQTT port?"
        return f"TLS handshake failed: {hint} ({text})"
    if tls is False and "timed out" in lowered:
        return f"timed out waiting for the broker; if this port expects TLS, set tls: true ({text})"
    if "not authorized" in lowered or "code:135" in lowered or "code:5]" in lowered:
        return f"not authorized: check username/password ({text})"
    if "bad user name or password" in lowered or "code:134" in lowered or "code:4]" in lowered:
        return f"bad user name or password ({text})"
    if "connection refused" in lowered or "errno 111" in lowered:
        return f"connection refused ({text})"
    if "timed out" in lowered:
        return f"timed out ({text})"
    return text


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
        handle(message.topic.value, _payload_bytes(message.payload))
        queue.in_hand = None


async def _pump(client: aiomqtt.Client, queue: MessageQueue | None, handle: Handler) -> None:
    async for message in client.messages:
        handle(message.topic.value, _payload_bytes(message.payload))
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
            handle(message.topic.value, _payload_bytes(message.payload))
    queues.clear()


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


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
    backoff = Backoff(broker.reconnect_initial_s, broker.reconnect_max_s)
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
