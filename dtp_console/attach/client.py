"""`RemoteEngine`: a running headless service as the UI's `ConsoleEngine`, over its API.

The App and its screens hold a `ConsoleEngine` and never learn which kind: this
one reads `GET /api/console/session` (config, plants, device maps, whether the
token may edit), then follows `GET /api/console/state` (SSE) into an
`EngineState` replica and a local `Bus`, so the UI's clock and subscription
work unchanged. Commands are round trips that fail as the Engine's do
(`dtp_console.attach.http`). When the link drops the last picture stays (the UI
greys it), `link` says why, and `run` reconnects with the shared capped backoff;
the fresh snapshot replaces the picture. Ending `run` leaves the service alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson

from dtp_console.attach.gzip_stream import Gunzip
from dtp_console.attach.http import (
    MAX_BODY,
    ApiStatusError,
    command_error,
    describe,
    read_json,
    request_json,
)
from dtp_console.attach.registry import RemoteRegistry
from dtp_console.attach.replica import FrameError, apply_frame, event_of
from dtp_console.attach.session import (
    AttachError,
    Session,
    fetch_session,
    parse_maps,
)
from dtp_console.attach.sse import SseEvent, SseParser
from dtp_console.attach.wire import map_etag
from dtp_console.backoff import Backoff
from dtp_console.commands import capture_point
from dtp_console.config.model import Affine
from dtp_console.events import Bus, Level, LogLine, OpsLog, StoreHealth, Subscription
from dtp_console.state import EngineState
from dtp_console.textsafe import safe_text
from dtp_console.view import AffineSaved, LinkState, LinkStatus

if TYPE_CHECKING:
    from dtp_console.calibrate.points import ControlPoint
    from dtp_console.config.model import ConsoleConfig, PlantConfig
    from dtp_console.ingest.rings import Rings
    from dtp_console.view import RegistryView

__all__ = ["AttachError", "RemoteEngine", "Session"]

#: Seconds without a byte on the stream (the service sends `: hb` every 5 s) before it is dead.
STREAM_IDLE_S = 20.0
#: Seconds to reach the service (TCP and TLS).
CONNECT_S = 10.0
#: Seconds a link must have been up for its drop to start the backoff afresh (a service
#: that sends a snapshot and then breaks the protocol is not retried at the first delay).
STABLE_S = 10.0
#: Reconnect backoff: first delay and cap (seconds).
BACKOFF_INITIAL_S, BACKOFF_CAP_S = 0.5, 15.0


@dataclass(frozen=True, slots=True)
class _AffineHeld:
    """A plant's affine as the service last reported it (what `capture_point` reads)."""

    affine: Affine


class RemoteEngine:
    """A `ConsoleEngine` whose workers run in another process (`dtp-console run --no-ui`)."""

    def __init__(
        self,
        url: str,
        token: str,
        session: Session,
        *,
        tls: ssl.SSLContext | bool = True,
        idle_s: float = STREAM_IDLE_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self._idle_s = idle_s
        self._monotonic = monotonic
        """This host's monotonic clock, onto which the service's times are moved."""
        self._wall = wall
        """The wall clock of this client's own log lines."""
        self._headers = {"Authorization": f"Bearer {token}"}
        self._tls = tls
        self._session = session
        self._plants = self._plant_list(session)
        self._state = EngineState()
        self._bus = Bus()
        self._store_health: dict[str, StoreHealth] = {}
        self._log = OpsLog(self._bus)
        self._maps = dict(session.device_maps)
        self._etags = dict(session.etags)
        self._affines = dict(session.affines)
        self._link = LinkStatus("connecting", self.url, since=time.time())
        self._http: aiohttp.ClientSession | None = None
        self.backoff = Backoff(BACKOFF_INITIAL_S, BACKOFF_CAP_S)
        """Delays between reconnects (`failures`: consecutive drops of short-lived links)."""
        self._up_at: float | None = None
        """This host's monotonic time the current link got its snapshot."""
        self._twins: RemoteRegistry | None = None
        self.frames = 0
        """State frames applied."""
        self.snapshots = 0
        """Snapshots taken (one per connection that got as far)."""
        self.reconnects = 0
        """Times the link came up again after it went down."""
        self.bad_events = 0
        """`log` / `store` / `twin` frames that could not be read (each logged)."""
        self.crashes = 0
        """Links lost to an unexpected error (a defect; logged with its traceback)."""
        self.wire_bytes = 0
        """Bytes of the state streams read off the socket (compressed, when it was)."""

    @classmethod
    async def open(
        cls,
        url: str,
        token: str,
        *,
        tls: ssl.SSLContext | bool = True,
        idle_s: float = STREAM_IDLE_S,
    ) -> RemoteEngine:
        """Read the session once (the UI lays its tabs out from it); `AttachError` when the
        service cannot be reached or refuses the token."""
        async with _client(token, tls) as http:
            try:
                session = await fetch_session(http, url.rstrip("/"))
            except (ConnectionError, ValueError) as exc:
                raise AttachError(str(exc)) from None
        return cls(url, token, session, tls=tls, idle_s=idle_s)

    # -- EngineView ---------------------------------------------------------------------

    @property
    def config(self) -> ConsoleConfig:
        """The service's config (secrets replaced by placeholders)."""
        return self._session.config

    @property
    def state(self) -> EngineState:
        """The replica of the service's state (the last picture while the link is down)."""
        return self._state

    @property
    def plants(self) -> Sequence[PlantConfig]:
        """The service's plants this token sees, in tab order."""
        return self._plants

    @property
    def twins(self) -> RegistryView | None:
        """The service's registry over its routes (a new object per connection, so the
        UI reads every twin again after a reconnect); None when it runs none."""
        return self._twins

    @property
    def store_health(self) -> Mapping[str, StoreHealth]:
        """The service's latest check per store, as its `store` frames said (kept while the
        link is down: the picture stays, greyed)."""
        return self._store_health

    @property
    def rings(self) -> Rings | None:
        """None: the platform worker's rings stay in the service."""
        return None

    def subscribe(self, *, maxsize: int) -> Subscription:
        """A bounded reader of the stream's events (and this client's own log lines)."""
        return self._bus.subscribe(maxsize)

    def device_map(self, plant_name: str) -> dict[str, str] | None:
        """The service's running device map of a plant, as last reported."""
        mapping = self._maps.get(plant_name)
        return None if mapping is None else dict(mapping)

    @property
    def link(self) -> LinkStatus:
        """The link to the service."""
        return self._link

    @property
    def read_only(self) -> str | None:
        """Why this token may not edit (a viewer token), or None."""
        return self._session.read_only

    # -- EngineCommands -----------------------------------------------------------------

    async def save_device_map(
        self,
        plant_name: str,
        mapping: Mapping[str, str],
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """`PUT …/device-map` with `If-Match` of the map the editor opened."""
        opened = dict(base) if base is not None else self._maps.get(plant_name, {})
        body = {"mapping": dict(mapping), "base": opened}
        status, answer = await self._command(
            "PUT",
            f"/api/console/plants/{quote(plant_name, safe='')}/device-map",
            body,
            {"If-Match": map_etag(opened)},
        )
        if status != 200:
            raise command_error(status, answer, where=self._where())
        saved = {str(k): str(v) for k, v in (answer.get("mapping") or {}).items()}
        self._maps[plant_name] = saved
        self._etags[plant_name] = str(answer.get("etag") or map_etag(saved))
        return saved

    async def save_affine(
        self, plant_name: str, values: Mapping[str, float], *, reason: str
    ) -> AffineSaved:
        """`PUT …/affine`."""
        status, answer = await self._command(
            "PUT",
            f"/api/console/plants/{quote(plant_name, safe='')}/affine",
            {"values": dict(values), "reason": reason},
        )
        if status != 200:
            raise command_error(status, answer, where=self._where())
        stored = {str(k): float(v) for k, v in (answer.get("values") or {}).items()}
        with contextlib.suppress(ValueError):
            self._affines[plant_name] = Affine.model_validate(stored)
        written = answer.get("written")
        return AffineSaved(
            plant_name,
            stored,
            None if written is None else Path(written),
            bool(answer.get("applied")),
        )

    def capture_point(
        self, plant_name: str, vendor_id: str, twinzo_x: float, twinzo_y: float, name: str
    ) -> ControlPoint:
        """The in-process pairing, on the replica (no round trip)."""
        bridge = None
        if plant_name in self._maps:
            bridge = _AffineHeld(self._affine(plant_name))
        return capture_point(
            plant_name,
            vendor_id,
            twinzo_x,
            twinzo_y,
            name,
            bridge=bridge,
            state=self._state.plants.get(plant_name),
        )

    # -- run ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the service until `stop` is set; reconnect by itself when the link drops."""
        backoff = self.backoff
        async with _client(
            self._headers["Authorization"].removeprefix("Bearer "), self._tls
        ) as http:
            self._http = http
            try:
                while not stop.is_set():
                    try:
                        reason = await self._until(stop, self._follow(http))
                    except (
                        aiohttp.ClientError,
                        TimeoutError,
                        OSError,
                        ValueError,  # SseError, FrameError, a body that is not JSON
                        AttachError,
                        ApiStatusError,
                    ) as exc:
                        reason = describe(exc)
                    except Exception as exc:  # a defect here: logged and counted, then retried
                        self.crashes += 1
                        logging.getLogger(__name__).exception("attach link failed")
                        reason = f"unexpected {safe_text(repr(exc), 200)}"
                    if stop.is_set():
                        break
                    up_at, self._up_at = self._up_at, None
                    if up_at is not None and self._monotonic() - up_at >= STABLE_S:
                        backoff.reset()  # it was up a while: a fresh drop, not a flapping one
                    delay = backoff.next()
                    self._down(f"{reason}; retrying in {delay:.1f}s")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
            finally:
                self._http = None
        self._emit("INFO", f"detached from {self.url} (the service keeps running)")

    @staticmethod
    async def _until(stop: asyncio.Event, work: Any) -> str:
        """Run `work` until it ends (its reason) or `stop` is set."""
        task: asyncio.Task[str] = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return "detached" if not task.done() or task.cancelled() else task.result()

    async def _follow(self, http: aiohttp.ClientSession) -> str:
        """One connection: a fresh session, then the stream until it ends (why it ended)."""
        session = await fetch_session(http, self.url)
        # Only plants the service still runs: it answers 404 for a name it does not know.
        devices = ",".join(p for p in self._session.plants if p in session.plants)
        self._take_session(session)
        async with http.get(
            self.url + "/api/console/state",
            params={"devices": devices},
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_S, sock_read=self._idle_s
            ),
            headers={"Accept": "text/event-stream", "Accept-Encoding": "gzip"},
            # As the commands: a redirect is an answer to report, never followed with
            # the token (a service is reached at the address the operator gave).
            allow_redirects=False,
            # Inflated here, a bounded piece at a time (`attach.gzip_stream`): the SSE
            # parser's caps then apply to what the compressed stream expands to.
            auto_decompress=False,
        ) as response:
            if response.status != 200:
                raise ApiStatusError(response.status, await _error_body(response))
            if not response.content_type.startswith("text/event-stream"):
                msg = f"the state route answered {response.content_type}, not an event stream"
                raise AttachError(msg)
            gunzip = _inflater(response.headers.get("Content-Encoding"))
            parser = SseParser()
            snapshot = False
            try:
                async for chunk in response.content.iter_any():
                    self.wire_bytes += len(chunk)
                    for piece in (chunk,) if gunzip is None else gunzip.feed(chunk):
                        for event in parser.feed(piece):
                            if self._on_event(event, first=not snapshot):
                                snapshot = True
                                self._up_at = self._monotonic()
            except TimeoutError:
                msg = f"nothing from the service for {self._idle_s:g}s (its heartbeats stopped)"
                raise AttachError(msg) from None
        return "the service ended the stream"

    def _on_event(self, event: SseEvent, *, first: bool) -> bool:
        """Apply one stream event; True for a snapshot."""
        try:
            body = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            if event.event in {"snapshot", "delta"}:
                msg = f"a {event.event} frame that is not JSON"
                raise FrameError(msg) from None
            self._bad(event.event, "not JSON")
            return False
        if event.event == "snapshot":
            fresh = EngineState()
            apply_frame(fresh, body, now=self._monotonic())
            self._state = fresh
            self.frames += 1
            self.snapshots += 1
            self._up()
            return True
        if first:
            msg = f"the stream began with {safe_text(event.event, 40)!r}, not a snapshot"
            raise FrameError(msg)
        if event.event == "delta":
            apply_frame(self._state, body, now=self._monotonic())
            self.frames += 1
        elif event.event == "maps":
            self._take_maps(body)
        elif event.event in {"log", "store", "twin"}:
            try:
                bus_event = event_of(event.event, body)
            except FrameError as exc:
                self._bad(event.event, str(exc))
                return False
            if isinstance(bus_event, StoreHealth):
                self._store_health[bus_event.name] = bus_event
            if bus_event is not None:
                self._bus.publish(bus_event)
        return False

    # -- link and session ---------------------------------------------------------------

    def _set_link(self, state: LinkState, detail: str) -> None:
        since = self._link.since if state == self._link.state else time.time()
        self._link = LinkStatus(state, self.url, safe_text(detail, 300), since)

    def _up(self) -> None:
        was = self._link.state
        self._set_link("up", f"{self._session.principal} on {self._session.host}")
        if self.snapshots > 1 and was == "down":
            self.reconnects += 1
            self._emit("OK", f"attach: link to {self.url} up again; picture replaced")
        elif self.snapshots == 1:
            read_only = " (read only)" if self.read_only else ""
            self._emit(
                "OK",
                f"attached to {self.url} as {self._session.principal}{read_only}"
                f" — {self._session.host}",
            )

    def _down(self, reason: str) -> None:
        first = self._link.state != "down"
        self._set_link("down", reason)
        if first:
            self._emit("FAIL", f"attach: link to {self.url} down: {reason}")
        else:
            self._log.limited("WARN", "attach:retry", f"attach: {self.url} still down: {reason}")

    def _emit(self, level: Level, text: str) -> None:
        self._bus.publish(LogLine(level=level, text=text, ts=self._wall()))

    def _bad(self, kind: str, why: str) -> None:
        self.bad_events += 1
        self._log.limited("WARN", f"attach:bad:{kind}", f"attach: a {kind} event skipped: {why}")

    def _take_session(self, session: Session) -> None:
        if session.plants != self._session.plants:
            # The tabs were laid out from the first session; a changed service shows in the log.
            shown = ", ".join(session.plants) or "none"
            self._emit(
                "WARN", f"attach: the service now runs plants {shown}; attach again to see them"
            )
            session = dataclasses.replace(session, plants=self._session.plants)
        self._session = session
        self._plants = self._plant_list(session)
        self._maps = dict(session.device_maps)
        self._etags = dict(session.etags)
        self._affines = dict(session.affines)
        registry = session.config.registry
        self._twins = (
            RemoteRegistry(self.url, lambda: self._http, self._headers)
            if registry.enabled
            else None
        )

    def _take_maps(self, body: Any) -> None:
        if not isinstance(body, dict):
            self._bad("maps", "not an object")
            return
        try:
            maps, etags = parse_maps(body.get("device_maps") or {})
            affines = {
                str(p): Affine.model_validate(v) for p, v in (body.get("affines") or {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._bad("maps", type(exc).__name__)
            return
        self._maps.update(maps)
        self._etags.update(etags)
        self._affines.update(affines)

    def _plant_list(self, session: Session) -> list[PlantConfig]:
        by_name = {p.name: p for p in session.config.plants}
        return [by_name[name] for name in session.plants if name in by_name]

    def _affine(self, plant_name: str) -> Affine:
        held = self._affines.get(plant_name)
        if held is not None:
            return held
        for plant in self._plants:
            if plant.name == plant_name:
                return plant.affine
        return Affine()

    def _where(self) -> Path:
        return Path(self._session.config_path or f"{self.url} (no config file)")

    async def _command(
        self, method: str, path: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        http = self._http
        if http is None or self._link.state != "up":
            msg = f"not connected to {self.url}: {self._link.detail or self._link.state}"
            raise ConnectionError(msg)
        return await request_json(http, method, self.url + path, json=body, headers=headers)


def _client(token: str, tls: ssl.SSLContext | bool) -> aiohttp.ClientSession:
    """The one HTTP session of a link (connection pool, bearer token, TLS verification)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls),
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_S),
        read_bufsize=2**16,
        max_line_size=8190,
        max_field_size=8190,
    )


def _inflater(content_encoding: str | None) -> Gunzip | None:
    """The reader of the stream's encoding: None for none; `AttachError` for one it did
    not ask for."""
    coding = (content_encoding or "identity").strip().lower()
    if coding == "identity":
        return None
    if coding in {"gzip", "x-gzip"}:
        return Gunzip()
    msg = f"the state stream came as {safe_text(coding, 40)!r}, not gzip or plain"
    raise AttachError(msg)


async def _error_body(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        return await read_json(response, limit=min(MAX_BODY, 64 * 1024))
    except ValueError as exc:
        return {"error": str(exc)}
