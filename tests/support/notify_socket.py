"""A stand-in for systemd's notify socket: a Unix datagram socket the test binds.

It receives what `sd_notify(3)` clients send — datagrams of newline-separated
`KEY=VALUE` lines — and parses them as systemd does (a line without `=` is
refused). Bound in the filesystem or, with `abstract=True`, in Linux's abstract
namespace (`$NOTIFY_SOCKET` then starts with `@`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["Datagram", "NotifySocket"]


@dataclass(frozen=True, slots=True)
class Datagram:
    """One notification as received: when, and its assignments."""

    at: float
    """`time.monotonic()` at receipt."""
    fields: dict[str, str]


def _parse(payload: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in payload.decode("utf-8").split("\n"):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            msg = f"not an assignment: {line!r}"
            raise AssertionError(msg)
        fields[key] = value
    return fields


class NotifySocket:
    """Collects notifications in the background while the `async with` lasts."""

    def __init__(self, *, abstract: bool = False) -> None:
        self._dir: Path | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        if abstract:
            name = f"dtp-test-{uuid.uuid4().hex}"
            self._sock.bind(b"\0" + name.encode())
            self.env_value = f"@{name}"
        else:
            # A short private directory: sun_path holds at most 107 bytes.
            self._dir = Path(tempfile.mkdtemp(prefix="dtp-ns-"))
            path = self._dir / "notify.sock"
            self._sock.bind(os.fspath(path))
            self.env_value = os.fspath(path)
        self.received: list[Datagram] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NotifySocket:
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            payload = await loop.sock_recv(self._sock, 4096)
            self.received.append(Datagram(time.monotonic(), _parse(payload)))

    def times(self, key: str, value: str = "1") -> list[float]:
        """Receipt times of the datagrams that set `key` to `value`."""
        return [d.at for d in self.received if d.fields.get(key) == value]

    def statuses(self) -> list[str]:
        """Every STATUS= text received, in order."""
        return [d.fields["STATUS"] for d in self.received if "STATUS" in d.fields]

    async def wait_for(self, key: str, value: str = "1", timeout: float = 20.0) -> Datagram:
        """The first datagram setting `key` to `value`; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for datagram in self.received:
                if datagram.fields.get(key) == value:
                    return datagram
            await asyncio.sleep(0.02)
        msg = f"no {key}={value} within {timeout}s; got {[d.fields for d in self.received]}"
        raise AssertionError(msg)

    async def wait_count(self, count: int, timeout: float = 20.0) -> None:
        """Until `count` datagrams have arrived; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                msg = f"{len(self.received)} of {count} datagrams within {timeout}s"
                raise AssertionError(msg)
            await asyncio.sleep(0.02)
