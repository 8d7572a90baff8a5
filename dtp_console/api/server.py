"""The console's HTTP server: auth, errors, the change stream, health and metrics routes.

`ApiServer` is the one adapter for HTTP clients of the console. Its middleware
identifies the bearer token (constant-time, against hashes), enforces the
route's role, turns every refusal into a 4xx with a reason, and records each
write as an `event_log` entry naming the token's label (never the token).
Registry routes live in `registry_routes`; `/healthz`, `/readyz` and `/metrics`
delegate to `dtp_console.health` and `dtp_console.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import importlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dtp_console.api.config import ApiConfig, Role, is_loopback_host
from dtp_console.api.console_routes import ConsoleRoutes
from dtp_console.api.errors import ApiBindError
from dtp_console.api.http import ApiError, json_response
from dtp_console.api.openapi import openapi_document
from dtp_console.api.registry_routes import PRINCIPAL, TARGET, RegistryRoutes, principal_of
from dtp_console.api.stream import StreamHub
from dtp_console.api.tokens import Principal, TokenTable
from dtp_console.attach.feed import ServedEngine
from dtp_console.events import Bus, OpsLog
from dtp_console.registry.service import RegistryService
from dtp_console.stores.records import EventRecord
from dtp_console.textsafe import safe_text

__all__ = ["ApiBindError", "ApiServer", "ApiStats"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
#: Paths anyone may read: the document describes routes, it holds no data.
_PUBLIC = frozenset({"/api/openapi.json"})
#: Paths that may be open to loopback peers (`api.open_health_on_loopback`).
_HEALTH = frozenset({"/healthz", "/readyz", "/metrics"})
#: Headers a reverse proxy adds; never trusted, only read as "not a local client".
_FORWARDING = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
_RETRY_MS = 3_000
#: Seconds between checks that a quiet stream's client is still connected.
_LIVENESS_S = 0.5
#: Seconds an idle keep-alive connection (or one that never sends a byte) stays open.
_KEEPALIVE_S = 30.0
_logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ApiStats:
    """Counters of the HTTP surface (read by `/metrics`)."""

    requests: int = 0
    """Requests answered."""
    unauthorized: int = 0
    """401s: no or unknown token."""
    forbidden: int = 0
    """403s: role or tenant not granted."""
    client_errors: int = 0
    """Other 4xx."""
    server_errors: int = 0
    """5xx (503 included)."""
    writes: int = 0
    """Write requests by an identified token (each one an event_log entry)."""
    writes_unrecorded: int = 0
    """Writes no event store was there to record (stores disabled or not open)."""
    connections_refused: int = 0
    """Connections closed on arrival because `api.max_connections` were open."""
    bad_requests: int = 0
    """Requests aiohttp could not parse (answered 400 by aiohttp itself)."""


class ApiServer:
    """The API on `config.listen`; `start` binds, `stop` closes streams and the listener."""

    def __init__(
        self,
        config: ApiConfig,
        *,
        bus: Bus,
        registry: Callable[[], RegistryService | None],
        record_event: Callable[[EventRecord], bool] | None = None,
        engine: ServedEngine | None = None,
        log: OpsLog | None = None,
    ) -> None:
        """`record_event` writes an `EventRecord` (False: no store); `engine` feeds health."""
        self.config = config
        self.engine = engine
        self._record = record_event
        self._log = log
        self._tokens = TokenTable(config.tokens)
        self._registry = registry
        self.hub = StreamHub(
            bus,
            replay=config.stream_replay,
            queue_size=config.stream_queue,
            max_clients=config.max_stream_clients,
            owners=self._dependency_owners,
            log=log,
            # One budget for both streams: each its own would let streams hold every
            # connection (2 × 200 streams = the default 400 connections).
            others=lambda: self.console.feed.stats.clients,
        )
        self.stats = ApiStats()
        self._routes = RegistryRoutes(registry, max_body_bytes=config.max_body_bytes)
        self.console = ConsoleRoutes(
            lambda: self.engine,
            config,
            owners=self._dependency_owners,
            others=lambda: self.hub.stats.clients,
        )
        """The attach routes (`/api/console/...`) and their state feed."""
        self._runner: web.AppRunner | None = None
        self._hub_task: asyncio.Task[None] | None = None
        self._url: str | None = None
        self.address: tuple[str, int] | None = None
        """(host, port) actually bound, once started."""

    # -- lifetime -------------------------------------------------------------------

    async def start(self) -> str:
        """Bind and serve; the base URL with the real port. `ApiBindError` when it cannot."""
        host, port = self.config.address
        bind_host = "127.0.0.1" if host.lower() == "localhost" else host
        context = self._tls_context()
        protocol_logger = logging.Logger("dtp_console.api.protocol")  # unregistered: ours only
        protocol_logger.addHandler(_ProtocolErrors(self))
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=_KEEPALIVE_S,
            logger=protocol_logger,
        )
        await runner.setup()
        self._cap_connections(runner)
        try:
            await web.TCPSite(runner, bind_host, port, ssl_context=context).start()
        except OSError as exc:
            await runner.cleanup()
            self.hub.release()
            why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            msg = (
                f"api.listen: cannot bind {self.config.listen} ({why or exc}); choose another "
                "port (0 picks a free one), stop what holds it, or set api.enabled: false"
            )
            raise ApiBindError(msg) from None
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.address = (bound_host, bound_port)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        scheme = "https" if context is not None else "http"
        self._url = f"{scheme}://{shown}:{bound_port}"
        self._hub_task = asyncio.create_task(self.hub.run(), name="api-stream-hub")
        warning = self.config.tls.key_file_warning() if self.config.tls is not None else None
        if warning is not None and self._log is not None:
            self._log.emit("WARN", warning)
        return self._url

    def _cap_connections(self, runner: web.AppRunner) -> None:
        """Close a new connection at once while `api.max_connections` are open.

        aiohttp has no limit of its own: it keeps a connection that trickles its
        headers forever. The cap wraps the server's `connection_made` hook.
        """
        server = runner.server
        assert server is not None
        admit = server.connection_made
        limit = self.config.max_connections

        def _connection_made(handler: Any, transport: asyncio.Transport) -> None:
            admit(handler, transport)
            if len(server.connections) > limit:
                self.stats.connections_refused += 1
                if self._log is not None:
                    self._log.limited(
                        "WARN",
                        "api:connections",
                        f"api: {limit} connections open (api.max_connections); "
                        "closing new ones until some end",
                    )
                transport.abort()

        server.connection_made = _connection_made  # type: ignore[method-assign]

    async def stop(self) -> None:
        """End every stream, then close the listener; safe to call twice."""
        task, self._hub_task = self._hub_task, None
        await self.hub.close(task)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ApiServer:
        """Start serving."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop serving."""
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL with the real port; RuntimeError before `start`."""
        if self._url is None:
            msg = "the API is not started"
            raise RuntimeError(msg)
        return self._url

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return context

    # -- the app ----------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._middleware], client_max_size=self.config.max_body_bytes
        )
        self._routes.add_to(app)
        self.console.add_to(app)
        app.router.add_get("/api/portal/stream", self._stream)
        app.router.add_get("/api/openapi.json", self._openapi)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            self._authorise(request)
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            # Router answers (404, 405) and aiohttp's own refusals (413), as JSON.
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            response = ApiError(exc.status, exc.reason, headers=headers or None).response()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a defect: answered, counted and told, never silent
            shown = safe_text(request.path, 200)  # the client's path, percent-decoded
            _logger.exception("api: %s %s failed", request.method, shown)
            if self._log is not None:
                self._log.limited(
                    "FAIL",
                    "api:internal",
                    f"api: {request.method} {shown} failed: {type(exc).__name__}",
                )
            response = json_response(500, {"error": "internal error (see the console log)"})
        self._count(request, response.status)
        return response

    def _count(self, request: web.Request, status: int) -> None:
        self.stats.requests += 1
        if status == 401:
            self.stats.unauthorized += 1
        elif status == 403:
            self.stats.forbidden += 1
        elif 400 <= status < 500:
            self.stats.client_errors += 1
        elif status >= 500:
            self.stats.server_errors += 1
        principal = request.get(PRINCIPAL)
        if request.method in _WRITES and isinstance(principal, Principal):
            self._record_write(request, principal, status)

    def _record_write(self, request: web.Request, principal: Principal, status: int) -> None:
        self.stats.writes += 1
        target = request.get(TARGET)
        record = EventRecord(
            ts=dt.datetime.now(dt.UTC),
            severity=1 if status < 400 else 2,
            source="api",
            body={
                "token": principal.label,
                "method": request.method,
                "path": request.path[:500],
                "status": status,
                "target": target if isinstance(target, str) else None,
            },
        )
        if self._record is None or not self._record(record):
            self.stats.writes_unrecorded += 1

    # -- auth -------------------------------------------------------------------------

    def _authorise(self, request: web.Request) -> None:
        """Identify the token and check the route's role; raises 401/403."""
        path = request.path
        if path in _PUBLIC:
            return
        if path in _HEALTH:
            peer = request.remote or ""
            # A forwarding header from a loopback peer: a proxy on this host relays a
            # request from elsewhere, which the loopback exemption must not cover.
            relayed = any(h in request.headers for h in _FORWARDING)
            if self.config.open_health_on_loopback and is_loopback_host(peer) and not relayed:
                return
            need: Role = "admin" if path == "/metrics" else "viewer"
        elif request.method in _WRITES:
            need = "operator"
        else:
            need = "viewer"
        principal = self._identify(request)
        request[PRINCIPAL] = principal  # before the role check: a refused write is recorded too
        if not principal.can(need):
            raise ApiError(
                403, f"token {principal.label!r} has role {principal.role}; this needs {need}"
            )

    def _identify(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="dtp-console"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "a bearer token is required", headers=challenge)
        principal = self._tokens.lookup(token.strip())
        if principal is None:
            raise ApiError(401, "unknown token", headers=challenge)
        return principal

    # -- the stream ---------------------------------------------------------------------

    async def _dependency_owners(self, ids: Collection[str]) -> dict[str, str]:
        """The hub's lookup: registered id → tenant (nothing while no registry runs)."""
        service = self._registry()
        return {} if service is None else await service.tenants_of(ids)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        tenant = request.query.get("tenant") or None
        if tenant is not None and not principal.sees(tenant):
            raise ApiError(403, f"tenant {tenant!r} is not granted to token {principal.label!r}")
        transport = request.transport

        def _abort() -> None:
            if transport is not None:
                transport.abort()

        attached = self.hub.attach(principal, tenant, request.headers.get("Last-Event-ID"), _abort)
        if attached is None:
            raise ApiError(503, "too many stream clients (api.max_stream_clients)")
        client, resume = attached
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        heartbeat = self.config.stream_heartbeat_s
        try:
            await response.prepare(request)
            opening = b"retry: %d\n: dtp-console stream\n\n" % _RETRY_MS
            if resume.gap:
                opening += b'event: stream.gap\ndata: {"resync": true}\n\n'
            backlog = [e.frame_for(principal) for e in resume.backlog]
            await response.write(opening + b"".join(backlog))
            self.hub.stats.delivered += len(resume.backlog)
            queue = client.queue
            loop = asyncio.get_running_loop()
            beat_at = loop.time() + heartbeat
            while not client.cut:
                try:
                    # Wake at least every _LIVENESS_S: aiohttp does not cancel a handler
                    # whose client left, and a dead stream must not hold its slot until
                    # the next heartbeat write finds it gone.
                    async with asyncio.timeout(min(heartbeat, _LIVENESS_S)):
                        item = await queue.get()
                except TimeoutError:
                    if transport is None or transport.is_closing():
                        break
                    if loop.time() >= beat_at:
                        await response.write(b": heartbeat\n\n")
                        beat_at = loop.time() + heartbeat
                    continue
                if item is None:
                    break
                frames = [item.frame_for(principal)]
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        client.cut = True  # the server is stopping: write what came before
                        break
                    frames.append(more.frame_for(principal))
                await response.write(b"".join(frames))
                beat_at = loop.time() + heartbeat
                self.hub.stats.delivered += len(frames)
        except (ConnectionError, RuntimeError):
            pass  # the client went away, or was cut off for falling behind
        finally:
            self.hub.detach(client)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    # -- document, health, metrics ----------------------------------------------------

    async def _openapi(self, _request: web.Request) -> web.Response:
        return json_response(200, openapi_document())

    async def _healthz(self, _request: web.Request) -> web.Response:
        health = _optional("dtp_console.health", "health checks")
        return json_response(200, health.liveness(self.engine))

    async def _readyz(self, _request: web.Request) -> web.Response:
        health = _optional("dtp_console.health", "health checks")
        ready, body = await health.readiness(self.engine)
        return json_response(200 if ready else 503, body)

    async def _metrics(self, _request: web.Request) -> web.Response:
        metrics = _optional("dtp_console.metrics", "metrics")
        body = await metrics.render_metrics(self.engine)
        response = web.Response(body=body)
        # CONTENT_TYPE carries parameters (`; version=0.0.4; charset=utf-8`).
        response.headers["Content-Type"] = metrics.CONTENT_TYPE
        return response


class _ProtocolErrors(logging.Handler):
    """aiohttp's own error reports: a malformed request is counted and one folded line.

    aiohttp logs each unparsable request as an ERROR with a traceback, so anyone who
    reaches the port could flood the console's stderr. Anything else it reports (a
    defect, not a client's fault) still goes to the module logger with its traceback.
    """

    def __init__(self, server: ApiServer) -> None:
        super().__init__(logging.DEBUG)
        self._server = server

    def emit(self, record: logging.LogRecord) -> None:
        """Count and fold a client's malformed request; pass anything else on."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            self._server.stats.bad_requests += 1
            log = self._server._log
            if log is not None:
                lines = (exc.message or type(exc).__name__).strip().splitlines()
                why = lines[0].rstrip(":") if lines else type(exc).__name__
                log.limited(
                    "WARN",
                    "api:bad-request",
                    f"api: malformed request answered 400 ({exc.code}): {why}",
                )
        elif record.levelno >= logging.WARNING:
            _logger.handle(record)


def _optional(name: str, what: str) -> Any:
    """`dtp_console.health` / `dtp_console.metrics`, imported when first asked for.

    They are separate modules (the Prometheus client loads only when scraped); a build
    without one answers 503 rather than failing to start.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise ApiError(503, f"{what} are not part of this build") from None
