"""How every MQTT client of ours connects: the bridges' and the platform's source, the
simulator's publishers and `dtp-console sniff` all build their client here.

TLS verifies the broker's certificate and host name unless a broker turns that
off explicitly (`verify: false`); user name and password, client id, MQTT
version, keep-alive and persistent sessions all come from the broker's config.
Reconnects wait the shared jittered, capped backoff (`reconnect_backoff`), and
each failure is described in one line an operator can act on
(`describe_mqtt_error`). Payloads are handed on as bytes (`payload_bytes`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dtp_console.backoff import Backoff
from dtp_console.config.model import BrokerConfig
from dtp_console.state import PlantCounters

__all__ = [
    "DropHook",
    "Endpoint",
    "MessageQueue",
    "broker_warnings",
    "client_kwargs",
    "describe_mqtt_error",
    "payload_bytes",
    "raise_if_cancelling",
    "reconnect_backoff",
    "tls_context",
]

#: Told the topic of each message the full queue dropped (already counted as dropped).
DropHook = Callable[[str], object]


class Endpoint(Protocol):
    """What connecting needs of a config: a name (for logs and client ids) and a broker."""

    @property
    def name(self) -> str: ...
    @property
    def broker(self) -> BrokerConfig: ...


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
    plant: Endpoint,
    host: str,
    port: int,
    counters: PlantCounters | None = None,
    queues: list[MessageQueue] | None = None,
    *,
    session: bool = False,
    on_drop: DropHook | None = None,
    role: str = "console",
) -> dict[str, Any]:
    """Keyword arguments for `aiomqtt.Client` from a plant's broker settings.

    `session` is for the bridge itself: it connects with the plant's `client_id`
    and resumes its persistent session when the plant has one. Any other client
    (`sniff`, the simulator's publishers) gets a random id (`dtp-<role>-<plant>-…`)
    and a clean session, because connecting with the bridge's id would take its
    session over and kick the running bridge off the broker. `counters` (with
    `queues`, `on_drop`) installs the counting incoming queue of a source.
    """
    broker = plant.broker
    persistent = session and broker.persistent
    slug = "".join(c if c.isalnum() else "-" for c in plant.name.lower())
    random_id = f"dtp-{role}-{slug}-{uuid.uuid4().hex[:8]}"
    stable_id = broker.client_id if session else None
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


def broker_warnings(plant: Endpoint, address: tuple[str, int] | None = None) -> list[str]:
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


def payload_bytes(payload: Any) -> bytes:
    """A message payload as bytes (aiomqtt types it loosely; paho hands over bytes)."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def reconnect_backoff(broker: BrokerConfig) -> Backoff:
    """The delays between connection attempts to `broker` (its `reconnect_*` settings)."""
    return Backoff(broker.reconnect_initial_s, broker.reconnect_max_s)
