"""`/api/console/...`: what `dtp-console attach` needs of a running console (issue #21).

The session (config without secrets, plants, running device maps), the state
stream (`dtp_console.attach.feed`) and the two commands that change a running
plant — the same `EngineCommands` the in-process UI calls, so a save from an
attached console is atomic, keeps the file's comments and is logged exactly as
one from the local UI. The server's middleware has already checked the role
(reads: viewer; writes: operator) and records every write with the token's label.

Plants carry no tenant: every token sees every plant of the console it reaches
(twin events on the stream are filtered by tenant, and their dependency flags shown
per token, as on the portal stream: `api.visibility` with looked-up owners).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationError

from dtp_console import __version__
from dtp_console.api.config import ApiConfig
from dtp_console.api.http import json_response, problems_of, read_object
from dtp_console.api.registry_routes import TARGET, principal_of
from dtp_console.api.stream import OwnerLookup
from dtp_console.attach.feed import ServedEngine, StateFeed, maps_body
from dtp_console.attach.gzip_stream import GzipFrames, accepts_gzip
from dtp_console.attach.wire import PROTOCOL, config_to_wire, map_etag
from dtp_console.calibrate.store import round_affine
from dtp_console.config.writer import ConfigWriteError, DeviceMapConflictError
from dtp_console.textsafe import safe_text

__all__ = ["AffinePut", "ConsoleRoutes", "DeviceMapPut"]

_RETRY_MS = 3_000
#: Seconds between heartbeat comments on the state stream.
_HEARTBEAT_S = 5.0
#: Seconds between checks that a quiet stream's client is still connected.
_LIVENESS_S = 0.5
#: Longest message text in an error body (vendor ids in it can be long).
_MESSAGE_CHARS = 1_000
_VIEWER_READ_ONLY = "viewer token: read-only"
_AFFINE_KEYS = ("a", "b", "c", "d", "tx", "ty")


class DeviceMapPut(BaseModel):
    """`PUT /api/console/plants/{plant}/device-map`: the operator's edited map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mapping: dict[str, str]
    """The map as the operator left it (vendor id → twinzo login)."""
    base: dict[str, str] | None = None
    """The map the editor opened with (its edits are what changed from it); the running
    map when unset."""


class AffinePut(BaseModel):
    """`PUT /api/console/plants/{plant}/affine`: new vendor → twinzo parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: dict[str, StrictFloat]
    """`a`, `b`, `c`, `d`, `tx`, `ty` (any case), each once: JSON numbers (`true` or `"2.5"` is no
    parameter, though pydantic's lax floats would take both)."""
    reason: str = Field(default="attach", min_length=1, max_length=200)
    """Why (calibration, manual): in the log line and the event."""


def _error(status: int, error: str, message: str, **extra: Any) -> web.Response:
    return json_response(
        status, {"error": error, "message": safe_text(message, _MESSAGE_CHARS), **extra}
    )


class ConsoleRoutes:
    """The attach routes over the engine an `ApiServer` serves."""

    def __init__(
        self,
        engine: Callable[[], ServedEngine | None],
        config: ApiConfig,
        *,
        owners: OwnerLookup | None = None,
        others: Callable[[], int] | None = None,
    ) -> None:
        """`owners`: the tenants of twins' dependencies (for restricted tokens' twin events);
        `others`: clients of the portal stream (they share `api.max_stream_clients`)."""
        self._engine = engine
        self._max_body = config.max_body_bytes
        self._saving = asyncio.Lock()
        """Held from a device map's If-Match comparison to its save."""
        self.feed = StateFeed(
            engine,
            queue_size=config.stream_queue,
            max_clients=config.max_stream_clients,
            owners=owners,
            others=others,
        )

    def add_to(self, app: web.Application) -> None:
        """Mount the routes, and end the state streams when the app shuts down."""
        app.router.add_get("/api/console/session", self.session)
        app.router.add_get("/api/console/state", self.state)
        app.router.add_put("/api/console/plants/{plant:.+}/device-map", self.put_device_map)
        app.router.add_put("/api/console/plants/{plant:.+}/affine", self.put_affine)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, _app: web.Application) -> None:
        await self.feed.close()

    # -- helpers ----------------------------------------------------------------------

    def _served(self) -> ServedEngine:
        engine = self._engine()
        if engine is None:
            raise web.HTTPNotFound(reason="this API serves no console engine")
        return engine

    @staticmethod
    def _plant(engine: ServedEngine, name: str) -> str | None:
        """The plant's name as configured (exact, else case-insensitive), None if unknown."""
        names = [p.name for p in engine.plants]
        if name in names:
            return name
        return next((n for n in names if n.casefold() == name.casefold()), None)

    def _unknown_plant(self, name: str) -> web.Response:
        return _error(404, "not_found", f"no plant named {name!r} runs here")

    # -- reads ------------------------------------------------------------------------

    async def session(self, request: web.Request) -> web.Response:
        """Who the engine is, who the caller is, the config (secrets redacted), the maps."""
        engine = self._served()
        principal = principal_of(request)
        maps = maps_body(engine)
        body = {
            "protocol": PROTOCOL,
            "engine": {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": engine.state.started_at,
                "version": __version__,
            },
            "principal": {"label": principal.label, "role": principal.role},
            "read_only": None if principal.can("operator") else _VIEWER_READ_ONLY,
            "config": config_to_wire(engine.config),
            "config_path": None if engine.config_path is None else str(engine.config_path),
            "plants": [p.name for p in engine.plants],
            "device_maps": maps["device_maps"],
            "affines": maps["affines"],
        }
        return json_response(200, body)

    async def state(self, request: web.Request) -> web.StreamResponse:
        """The state stream: a snapshot, then deltas at most every tick, and events."""
        engine = self._served()
        principal = principal_of(request)
        followed: list[str] = []
        for raw in request.query.get("devices", "").split(","):
            if not raw.strip():
                continue
            name = self._plant(engine, raw.strip())
            if name is None:
                return self._unknown_plant(raw.strip())
            followed.append(name)
        transport = request.transport

        def _abort() -> None:
            if transport is not None:
                transport.abort()

        client = self.feed.attach(principal, followed, _abort)
        if client is None:
            return _error(
                503, "too_many_clients", "too many stream clients (api.max_stream_clients)"
            )
        headers = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "Vary": "Accept-Encoding",
        }
        # One gzip stream per client, flushed after each write (`attach.gzip_stream`):
        # the deltas' keys and digits repeat tick after tick.
        gzip = GzipFrames() if accepts_gzip(request.headers.get("Accept-Encoding")) else None
        if gzip is not None:
            headers["Content-Encoding"] = "gzip"
        response = web.StreamResponse(headers=headers)
        stream = client.stream
        stats = self.feed.stats

        async def _write(data: bytes) -> None:
            if gzip is None:
                wire = data
            else:
                began = time.perf_counter()
                wire = gzip.frame(data)
                stats.compress_seconds += time.perf_counter() - began
            stats.wire_bytes += len(wire)
            await response.write(wire)

        try:
            await response.prepare(request)
            await _write(b"retry: %d\n: dtp-console attach\n\n" % _RETRY_MS)
            loop = asyncio.get_running_loop()
            beat_at = loop.time() + _HEARTBEAT_S
            while not stream.cut:
                try:
                    # Wake at least every _LIVENESS_S: aiohttp does not cancel a handler
                    # whose client left (as on the portal stream).
                    async with asyncio.timeout(_LIVENESS_S):
                        item = await stream.queue.get()
                except TimeoutError:
                    if transport is None or transport.is_closing():
                        break
                    if loop.time() >= beat_at:
                        await _write(b": hb\n\n")
                        beat_at = loop.time() + _HEARTBEAT_S
                    continue
                if item is None:
                    break
                frames = [item.frame]
                while not stream.queue.empty():
                    more = stream.queue.get_nowait()
                    if more is None:
                        stream.cut = True  # the server is stopping: write what came before
                        break
                    frames.append(more.frame)
                data = b"".join(frames)
                await _write(data)
                client.sent_bytes += len(data)
                stats.bytes += len(data)
                if loop.time() >= beat_at:  # every 5 s, busy or not
                    await _write(b": hb\n\n")
                    beat_at = loop.time() + _HEARTBEAT_S
        except (ConnectionError, RuntimeError):
            pass  # the client went away, or was cut off for falling behind
        finally:
            self.feed.detach(client)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if gzip is not None and response.prepared:
                await response.write(gzip.end())
            await response.write_eof()
        return response

    # -- commands ---------------------------------------------------------------------

    async def put_device_map(self, request: web.Request) -> web.Response:
        """Save a device map if the running one is still the one the editor opened."""
        engine = self._served()
        name = self._plant(engine, request.match_info["plant"])
        if name is None:
            return self._unknown_plant(request.match_info["plant"])
        request[TARGET] = name
        if engine.device_map(name) is None:
            return _error(404, "not_found", f"plant {name!r} has no running bridge")
        if_match = request.headers.get("If-Match")
        if if_match is None:
            return _error(
                428,
                "precondition_required",
                "If-Match is required: the etag of the device map the edit started from",
            )
        try:
            body = DeviceMapPut.model_validate(await read_object(request, self._max_body))
        except ValidationError as exc:
            return _invalid(exc)
        # The map to compare If-Match with is the one running now, after the body's await
        # (another PUT may have saved meanwhile), and no other save runs between the
        # comparison and this one: of two PUTs sent with one etag, exactly one is saved.
        async with self._saving:
            return await self._save_device_map(engine, name, if_match, body)

    async def _save_device_map(
        self, engine: ServedEngine, name: str, if_match: str, body: DeviceMapPut
    ) -> web.Response:
        running = engine.device_map(name)
        if running is None:
            return _error(404, "not_found", f"plant {name!r} has no running bridge")
        etag = map_etag(running)
        if if_match.strip() != etag:
            keys = _both_ways(body.base, body.mapping, running)
            return _error(
                412,
                "conflict",
                f"the device map of {name} changed since the edit started",
                current=running,
                etag=etag,
                keys=keys,
            )
        try:
            saved = await engine.save_device_map(name, body.mapping, body.base)
        except DeviceMapConflictError as exc:
            return _error(
                412,
                "conflict",
                str(exc),
                current=exc.current,
                etag=map_etag(exc.current),
                keys=exc.keys,
            )
        except ConfigWriteError as exc:
            return _error(503, "write_failed", str(exc))
        except ValueError as exc:
            return _error(422, "invalid", str(exc))
        return json_response(200, {"mapping": saved, "etag": map_etag(saved)})

    async def put_affine(self, request: web.Request) -> web.Response:
        """Store and apply a plant's affine."""
        engine = self._served()
        name = self._plant(engine, request.match_info["plant"])
        if name is None:
            return self._unknown_plant(request.match_info["plant"])
        request[TARGET] = name
        principal = principal_of(request)
        try:
            body = AffinePut.model_validate(await read_object(request, self._max_body))
        except ValidationError as exc:
            return _invalid(exc)
        try:
            round_affine(body.values)  # refuse before anything is written (422, not 503)
        except ConfigWriteError as exc:
            return _error(422, "invalid", str(exc))
        given = sorted(key.lower() for key in body.values)
        if given != sorted(_AFFINE_KEYS):
            # A missing parameter would default (`{}` is the identity): one malformed body
            # would undo a calibration. `a` and `A` both: which one is meant?
            return _error(422, "invalid", "values: give each of a, b, c, d, tx, ty once (any case)")
        reason = f"{body.reason} (api token {principal.label})"
        try:
            saved = await engine.save_affine(name, body.values, reason=reason)
        except ConfigWriteError as exc:
            return _error(503, "write_failed", str(exc))
        except ValueError as exc:
            return _error(422, "invalid", str(exc))
        return json_response(
            200,
            {
                "plant": saved.plant,
                "values": dict(saved.values),
                "written": None if saved.written is None else str(saved.written),
                "applied": saved.applied,
            },
        )


def _invalid(exc: ValidationError) -> web.Response:
    problems = problems_of(exc)
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    return _error(422, "invalid", f"{first['field']}: {first['message']}", problems=problems)


def _both_ways(
    base: Mapping[str, str] | None, mine: Mapping[str, str], theirs: Mapping[str, str]
) -> list[str]:
    """Vendor ids the editor changed from `base` that also changed in the running map."""
    if base is None:
        return sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k))
    edited = {k for k in {*base, *mine} if base.get(k) != mine.get(k)}
    moved = {k for k in {*base, *theirs} if base.get(k) != theirs.get(k)}
    return sorted(k for k in edited & moved if mine.get(k) != theirs.get(k))
