"""A real `ApiServer` on a free loopback port over a SQLite registry, and SSE reading."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from dtp_console.api.config import ApiConfig, ApiToken
from dtp_console.api.server import ApiServer
from dtp_console.api.tokens import hash_token
from dtp_console.events import Bus
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.runner import open_registry
from dtp_console.registry.service import RegistryService
from dtp_console.stores.records import EventRecord

__all__ = [
    "TOKENS",
    "ApiRig",
    "SseEvent",
    "api_rig",
    "in_this_tree",
    "read_events",
    "require_module",
    "token_entries",
]

_ROOT = Path(__file__).resolve().parents[2]


def in_this_tree(name: str) -> bool:
    """Whether module `name` is importable from this checkout.

    A shared editable venv can resolve a module this tree lacks from another
    checkout (its finder runs after the path); such a module is not this tree's.
    """
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None else None
    return origin is not None and Path(origin).resolve().is_relative_to(_ROOT)


def require_module(name: str) -> None:
    """Skip the test unless `name` is part of this tree (`dtp_console.health`, …)."""
    if not in_this_tree(name):
        pytest.skip(f"{name} is not part of this tree")


#: label → (token, role, tenants). Placeholder tokens: test values, never real ones.
TOKENS: dict[str, tuple[str, str, list[str]]] = {
    "viewer-a": ("test-token-viewer-a", "viewer", ["plant-a"]),
    "operator-a": ("test-token-operator-a", "operator", ["plant-a"]),
    "operator-b": ("test-token-operator-b", "operator", ["plant-b"]),
    "admin-all": ("test-token-admin-all", "admin", ["*"]),
}


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """`app` served on a free loopback port while the block runs; its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def token_entries() -> list[ApiToken]:
    """`api.tokens` entries (hashes) of `TOKENS`."""
    return [
        ApiToken(label=label, hash=hash_token(token), role=role, tenants=tenants)
        for label, (token, role, tenants) in TOKENS.items()
    ]


def auth(label: str) -> dict[str, str]:
    """The Authorization header of a test token."""
    return {"Authorization": f"Bearer {TOKENS[label][0]}"}


@dataclass
class ApiRig:
    """The server, the registry under it, the event records it wrote, and an HTTP session."""

    server: ApiServer
    registry: RegistryService
    bus: Bus
    session: aiohttp.ClientSession
    records: list[EventRecord] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    async def call(
        self, method: str, path: str, label: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text) of one request."""
        headers = dict(kwargs.pop("headers", {}))
        if label is not None:
            headers.update(auth(label))
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, orjson.loads(raw)
            return resp.status, raw.decode("utf-8", "replace")


@contextlib.asynccontextmanager
async def api_rig(tmp_path: Path, *, registry: bool = True, **api: Any) -> AsyncIterator[ApiRig]:
    """An API on 127.0.0.1:0 with `TOKENS`, over a fresh SQLite registry (or none)."""
    bus = Bus()
    config = ApiConfig.model_validate(
        {"listen": "127.0.0.1:0", "tokens": [t.model_dump() for t in token_entries()], **api}
    )
    reg_config = RegistryConfig(twins_root=tmp_path / "twins", sqlite_path=tmp_path / "reg.db")
    async with open_registry(reg_config, bus) as service:
        records: list[EventRecord] = []

        def _record(record: EventRecord) -> bool:
            records.append(record)
            return True

        server = ApiServer(
            config, bus=bus, registry=lambda: service if registry else None, record_event=_record
        )
        async with server, aiohttp.ClientSession() as session:
            yield ApiRig(server, service, bus, session, records)


@dataclass(frozen=True)
class SseEvent:
    """One parsed server-sent event."""

    id: str | None
    event: str
    data: Any


async def read_events(
    response: aiohttp.ClientResponse, count: int, timeout: float = 5.0
) -> list[SseEvent]:
    """The next `count` events (comments skipped); fails after `timeout` seconds."""
    out: list[SseEvent] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        while len(out) < count:
            line = (await response.content.readline()).decode("utf-8")
            if line == "":
                break  # the stream ended
            line = line.rstrip("\r\n")
            if line == "":
                if "data" in fields or "event" in fields:
                    data = orjson.loads(fields["data"]) if "data" in fields else None
                    out.append(SseEvent(fields.get("id"), fields.get("event", "message"), data))
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return out
