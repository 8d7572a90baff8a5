"""An attached console for UI tests and snapshots: a `RemoteEngine` fed a seeded service's frames.

`FrozenRemote.run()` opens no socket. It runs a `SeededEngine` (the service), reads
its session and state the way the service's routes put them on the wire
(`dtp_console.attach.wire`), and hands the client's own stream handler one
`snapshot` event and the service's log lines as `log` events — the code path a
real stream takes. Then the replica is frozen: nothing moves until the test says,
so the picture is the same on every run (positions come from the seeded fleets
on a `FixedClock`, and the replica's clocks are that clock).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from devtools.seeded import SeededEngine, write_config
from dtp_console.attach.client import RemoteEngine
from dtp_console.attach.session import parse_session
from dtp_console.attach.sse import SseEvent
from dtp_console.attach.wire import (
    PROTOCOL,
    config_to_wire,
    encode_auth,
    encode_device,
    encode_plant_summary,
    map_etag,
)
from dtp_console.events import LogLine
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.display import FixedClock

__all__ = ["URL", "FrozenRemote", "make_attached_app", "session_body", "snapshot_frame"]

#: The service the frozen client says it is attached to (never connected).
URL = "https://ops-host.example:8470"


def session_body(service: SeededEngine, *, viewer: bool = False) -> dict[str, Any]:
    """`GET /api/console/session` of `service`, as the contract shapes it."""
    maps = {}
    for plant in service.plants:
        mapping = service.device_map(plant.name)
        if mapping is not None:
            maps[plant.name] = {"map": mapping, "etag": map_etag(mapping)}
    role = "viewer" if viewer else "operator"
    return {
        "protocol": PROTOCOL,
        "engine": {"host": "ops-host", "pid": 4242, "started_at": 0.0, "version": "test"},
        "principal": {"label": f"{role}-ops", "role": role},
        "read_only": "viewer token: read-only" if viewer else None,
        "config": config_to_wire(service.config),
        "config_path": "/srv/dtp/console.yaml",
        "plants": [p.name for p in service.plants],
        "device_maps": maps,
    }


def snapshot_frame(service: SeededEngine, clock: FixedClock) -> dict[str, Any]:
    """The `snapshot` the service's state stream starts with (every plant's devices)."""
    state = service.state
    plants = {
        name: {
            "plant": encode_plant_summary(plant),
            "devices": {vid: encode_device(d) for vid, d in plant.devices.items()},
        }
        for name, plant in state.plants.items()
    }
    return {
        "mono": clock.monotonic(),
        "wall": clock.wall(),
        "plants": plants,
        "auth": {login: encode_auth(a) for login, a in state.auth.items()},
        "twinzo_url": state.twinzo_url,
        "platform": None,
        "stores": None,
    }


class FrozenRemote(RemoteEngine):
    """A `RemoteEngine` whose stream is one seeded snapshot and the service's log lines."""

    def __init__(self, folder: Path, clock: FixedClock, *, viewer: bool = False) -> None:
        self.service = SeededEngine(write_config(folder), clock=clock)
        session = parse_session(session_body(self.service, viewer=viewer))
        super().__init__(URL, "frozen", session, monotonic=clock.monotonic, wall=clock.wall)
        self.clock = clock
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Seed the service, hand its frames to the client's handler, then idle."""
        lines = self.service.bus.subscribe(100_000)
        service_stop = asyncio.Event()
        service = asyncio.create_task(self.service.run(service_stop))
        await self.service.ready.wait()
        session = parse_session(session_body(self.service, viewer=self.read_only is not None))
        self._take_session(session)
        self._twins = None  # the seeded service runs no registry
        self.push("snapshot", snapshot_frame(self.service, self.clock))
        for event in lines.drain():
            if isinstance(event, LogLine):
                body = {"ts": event.ts, "level": event.level, "text": event.text}
                self.push("log", {**body, "plant": event.plant})
        service_stop.set()
        await service
        self.ready.set()
        await stop.wait()

    def push(self, kind: str, body: Any) -> None:
        """One stream event, as the SSE parser would hand it over."""
        self._on_event(SseEvent(kind, orjson.dumps(body).decode(), None), first=kind == "snapshot")

    def drop(self, reason: str) -> None:
        """The link goes down as a lost stream takes it down (the picture stays)."""
        self._down(reason)


def make_attached_app(folder: Path, *, viewer: bool = False) -> DtpConsoleApp:
    """The console App on a `FrozenRemote`, redrawn only when told (`refresh_s=None`)."""
    clock = FixedClock()
    engine = FrozenRemote(folder, clock, viewer=viewer)
    return DtpConsoleApp(engine, clock=clock, refresh_s=None)
