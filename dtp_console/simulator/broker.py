"""The embedded demo MQTT broker: amqtt 0.12.1 in-process, loopback only.

For the zero-setup demo, not for production. Know its limits:

- It speaks MQTT 3.1.1 only; an MQTT 5 client is refused (CONNACK code 132).
- It delivers at the subscription's QoS instead of min(publish QoS,
  subscription QoS) as the spec requires (an amqtt bug).
- Measured on a 2-core machine: about 5k msg/s when it shares the process and
  event loop with its subscriber — ample for a demo fleet.

amqtt's own defaults listen on 0.0.0.0:1883 and load a `$SYS` publisher and a
packet logger; here the only listener is the given loopback address and the
only plugin is anonymous authentication.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from types import TracebackType
from typing import Any

__all__ = ["EmbeddedBroker", "is_loopback"]

_log = logging.getLogger(__name__)
_PORT_ATTEMPTS = 5


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.cache
def _broker_class() -> Any:
    """amqtt's Broker, fixed to close the socket of a client that never sent CONNECT.

    amqtt 0.12.1 returns from such a connection (a port probe, a health check)
    without closing its writer, leaking the socket until garbage collection.
    Imported late: amqtt costs ~80 ms to import, and only the demo needs it.
    """
    from amqtt.broker import Broker

    class _ClosingBroker(Broker):  # type: ignore[misc]
        async def stream_connected(
            self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
        ) -> None:
            try:
                await super().stream_connected(reader, writer, listener_name)
            finally:
                writer.close()  # no-op when amqtt already closed it

    return _ClosingBroker


class EmbeddedBroker:
    """amqtt running in this process and event loop, bound to one loopback address.

    ```python
    async with EmbeddedBroker() as broker:
        print(broker.port)
    ```
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False
    ) -> None:
        if not allow_remote and not is_loopback(host):
            msg = (
                f"the embedded broker binds to loopback only, not {host!r} "
                "(it has no authentication; pass allow_remote=True to override)"
            )
            raise ValueError(msg)
        if not 0 <= port <= 65535:
            msg = f"port {port} is out of range"
            raise ValueError(msg)
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        """The bound port while running."""
        self._broker: Any = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect to; only while running."""
        if self.port is None:
            msg = "the embedded broker is not running"
            raise RuntimeError(msg)
        return self.host, self.port

    def _config(self, port: int) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": _bind(self.host, port)}},
            # An explicit plugin map replaces amqtt's defaults ($SYS, packet and event loggers).
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    async def start(self) -> int:
        """Start listening; returns the bound port (a free one when the port is 0)."""
        if self._broker is not None:
            msg = "the embedded broker is already running"
            raise RuntimeError(msg)
        from amqtt.errors import BrokerError

        broker_class = _broker_class()

        attempts = _PORT_ATTEMPTS if self._requested_port == 0 else 1
        for attempt in range(1, attempts + 1):
            port = self._requested_port or _free_port(self.host)
            broker = broker_class(self._config(port))
            try:
                await broker.start()
            except BrokerError as exc:
                # With port 0 another process may take the probed port first; try another.
                if attempt == attempts:
                    msg = f"embedded broker could not listen on {_bind(self.host, port)}: {exc}"
                    raise OSError(msg) from exc
                continue
            self._broker, self.port = broker, port
            _log.info("embedded MQTT broker listening on %s", _bind(self.host, port))
            return port
        raise AssertionError("unreachable")  # pragma: no cover

    async def stop(self) -> None:
        """Disconnect every client and stop listening (idempotent)."""
        broker, self._broker = self._broker, None
        self.port = None
        if broker is not None:
            await broker.shutdown()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
