"""A loopback twinzo v3 server for tests, benchmarks and the demo.

`TwinzoSandbox` implements the contract the bridge relies on — per-device
authentication and token refresh, `POST /v3/localization` and its batch form —
strictly: bodies are validated field by field and answered with the same shapes
and status codes twinzo uses, so a client that passes here is not merely lucky.
Faults (latency, 503, 429, spurious 401, per-location failures) are injected
from a seeded `random.Random`, so tests that use them are deterministic.

Admin endpoints for demos live on the same server and answer loopback peers
only: ``GET /sandbox/stats``, ``GET``/``POST /sandbox/faults`` and
``POST /sandbox/expire-tokens``. They are not subject to faults and are not
counted in `SandboxStats`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from types import TracebackType
from typing import Any, Self

import orjson
import pydantic
from aiohttp import web

from dtp_console.config.model import SandboxConfig, SandboxFaults
from dtp_console.twinzo.sandbox_http import (
    RejectError,
    admin_refusal,
    error_response,
    is_loopback,
    json_response,
    read_json,
    same_id,
    seconds_header,
)
from dtp_console.twinzo.sandbox_schema import (
    BodyError,
    LocationIn,
    parse_auth,
    parse_batch,
    parse_locations,
)
from dtp_console.twinzo.sandbox_state import (
    AcceptedLocation,
    SandboxStats,
    TokenError,
    TokenStore,
)

__all__ = ["AcceptedLocation", "SandboxStats", "TwinzoSandbox"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Namespace of the deterministic client and branch GUIDs.
_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-5b7a-9a55-7a1f0d2b9c3e")
# Batches of ~50 devices x 50 locations are ~0.5 MB; leave ample headroom.
_MAX_BODY_BYTES = 16 * 1024 * 1024


class TwinzoSandbox:
    """A loopback HTTP server implementing the twinzo v3 contract.

    One tenant: `client` / `password` authenticate any login (or only those in
    `logins`), localization needs `api_key`. Use it as ``async with
    TwinzoSandbox(cfg, client=..., password=..., api_key=...) as sandbox:`` and
    point a client at `sandbox.url`. `faults` may be changed at any time; it
    starts as a copy of ``config.faults``.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        client: str,
        password: str,
        api_key: str,
        logins: Collection[str] | None = None,
        branch: str | None = None,
        max_recorded: int = 100_000,
        seed: int | None = None,
    ) -> None:
        """Configure the sandbox; nothing is bound until `start`."""
        self._config = config
        self._client = client
        self._password = password
        self._api_key = api_key
        self._logins = frozenset(logins) if logins is not None else None
        self._sectors = frozenset(config.sectors) if config.sectors is not None else None
        self.client_guid: str = str(uuid.uuid5(_NAMESPACE, f"client:{client}"))
        """The ``Client`` GUID authenticate returns (uuid5 of the client name)."""
        self.branch_guid: str = branch or str(uuid.uuid5(_NAMESPACE, f"branch:{client}"))
        """The ``Branch`` GUID authenticate returns and localization requires."""
        self.faults: SandboxFaults = config.faults.model_copy()
        """Faults injected from now on; mutable, or replace through `set_faults`."""
        self.stats = SandboxStats()
        self._rng = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._tokens = TokenStore(config.token_lifetime_s)
        self._recorded: deque[AcceptedLocation] = deque(maxlen=max_recorded)
        self._latest: dict[str, AcceptedLocation] = {}
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # -- lifetime -----------------------------------------------------------------

    async def start(self) -> str:
        """Bind and serve; returns the base URL, e.g. ``http://127.0.0.1:40123``.

        Raises ValueError for a non-loopback host unless ``config.allow_remote``.
        """
        if self._runner is not None:
            msg = "the twinzo sandbox is already started"
            raise RuntimeError(msg)
        host = self._config.host
        if not self._config.allow_remote and not is_loopback(host):
            msg = (
                f"the twinzo sandbox refuses to bind non-loopback host {host!r}; "
                "use 127.0.0.1 or set sandbox.allow_remote: true"
            )
            raise ValueError(msg)
        # "localhost" may resolve to two sockets with two different free ports.
        bind_host = "127.0.0.1" if host.lower() == "localhost" else host
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, bind_host, self._config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"http://{shown}:{port}"
        return self._url

    async def stop(self) -> None:
        """Stop serving and close connections; safe to call twice."""
        runner, self._runner = self._runner, None
        self._url = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL with the real port; RuntimeError before `start`."""
        if self._url is None:
            msg = "the twinzo sandbox is not started"
            raise RuntimeError(msg)
        return self._url

    # -- control and inspection ---------------------------------------------------

    def set_faults(self, **changes: Any) -> None:
        """Change some fault settings; pydantic.ValidationError (a ValueError) if invalid."""
        self.faults = SandboxFaults.model_validate({**self.faults.model_dump(), **changes})

    def expire_all_tokens(self) -> None:
        """Make every token issued so far expired now."""
        self._tokens.expire_all()

    def locations(self, login: str | None = None) -> list[AcceptedLocation]:
        """Recorded accepted locations in arrival order, optionally of one login."""
        return [loc for loc in self._recorded if login is None or loc.login == login]

    def latest(self) -> dict[str, AcceptedLocation]:
        """The latest accepted location (by arrival) per login."""
        return dict(self._latest)

    # -- HTTP plumbing ------------------------------------------------------------

    def _build_app(self) -> web.Application:
        @web.middleware
        async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
            if request.path.startswith("/sandbox/"):
                if (refused := admin_refusal(request)) is not None:
                    return refused
                return await self._guarded(request, handler)
            self.stats.requests += 1
            try:
                response = await self._with_faults(request, handler)
            except Exception:
                self.stats.status_counts[500] += 1
                raise
            self.stats.status_counts[response.status] += 1
            return response

        app = web.Application(middlewares=[middleware], client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/v3/authorization/authenticate", self._authenticate)
        app.router.add_get("/v3/authorization/token", self._refresh)
        app.router.add_post("/v3/localization", self._localization)
        app.router.add_post("/v3/localization/batch", self._batch)
        app.router.add_get("/sandbox/stats", self._admin_stats)
        app.router.add_get("/sandbox/faults", self._admin_get_faults)
        app.router.add_post("/sandbox/faults", self._admin_set_faults)
        app.router.add_post("/sandbox/expire-tokens", self._admin_expire_tokens)
        return app

    async def _guarded(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RejectError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except BodyError as exc:
            return error_response(400, str(exc))
        except web.HTTPException as exc:
            # Keep headers like Allow (405); the body and its type are replaced.
            kept = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return error_response(exc.status, exc.reason, kept)

    async def _with_faults(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        faults = self.faults
        if faults.latency_ms > 0:
            self.stats.faults_injected["latency"] += 1
            await asyncio.sleep(faults.latency_ms / 1000)
        if self._roll(faults.error_rate):
            self.stats.faults_injected["error_503"] += 1
            return error_response(503, "Injected fault: service unavailable")
        if self._roll(faults.rate_429):
            self.stats.faults_injected["rate_429"] += 1
            retry_after = seconds_header(faults.retry_after_s)
            return error_response(
                429, "Injected fault: too many requests", {"Retry-After": retry_after}
            )
        return await self._guarded(request, handler)

    def _roll(self, rate: float) -> bool:
        # Draw only for active faults so enabling one does not reshuffle the others.
        return rate > 0 and self._rng.random() < rate

    # -- auth ---------------------------------------------------------------------

    def _issue(self, login: str) -> dict[str, Any]:
        token, created, expires = self._tokens.issue(login)
        return {
            "Token": token,
            "Client": self.client_guid,
            "Branch": self.branch_guid,
            "Expiration": expires,
            "Created": created,
        }

    def _token_login(self, request: web.Request) -> str:
        token = request.headers.get("Token")
        if not token:
            if "Authorization" in request.headers:
                msg = (
                    "send the token in the 'Token' header; 'Authorization: Bearer' is not accepted"
                )
                raise RejectError(401, msg)
            raise RejectError(401, "missing 'Token' header")
        try:
            return self._tokens.login_for(token)
        except TokenError as exc:
            raise RejectError(401, str(exc)) from exc

    def _check_tenant(self, request: web.Request) -> None:
        api_key = request.headers.get("Api-Key")
        if not api_key:
            raise RejectError(401, "missing 'Api-Key' header")
        if not secrets.compare_digest(api_key.encode(), self._api_key.encode()):
            raise RejectError(401, "invalid 'Api-Key'")
        client = request.headers.get("Client")
        if not client or not same_id(client, self.client_guid, self._client):
            raise RejectError(403, f"unknown 'Client' {client!r}")
        branch = request.headers.get("Branch")
        if not branch or not same_id(branch, self.branch_guid):
            raise RejectError(403, f"unknown 'Branch' {branch!r} for this client")

    async def _authenticate(self, request: web.Request) -> web.Response:
        client, login, password = parse_auth(await read_json(request))
        self.stats.auth_calls[login] += 1
        known_login = self._logins is None or login in self._logins
        good_password = secrets.compare_digest(password.encode(), self._password.encode())
        if not (same_id(client, self._client, self.client_guid) and good_password and known_login):
            return error_response(401, "invalid client, login or password")
        return json_response(200, self._issue(login))

    async def _refresh(self, request: web.Request) -> web.Response:
        self.stats.refresh_calls += 1
        return json_response(200, self._issue(self._token_login(request)))

    # -- localization -------------------------------------------------------------

    async def _localization(self, request: web.Request) -> web.Response:
        self._check_tenant(request)
        login = self._token_login(request)
        if self._roll(self.faults.reject_token_rate):
            self.stats.faults_injected["reject_token"] += 1
            raise RejectError(401, "Injected fault: token rejected")
        locations = parse_locations(await read_json(request))
        return json_response(200, self._accept(login, locations, batch=False))

    async def _batch(self, request: web.Request) -> web.Response:
        self._check_tenant(request)
        devices = parse_batch(await read_json(request))
        results = [
            self._accept(login, locations, batch=True)
            if self._logins is None or login in self._logins
            else self._unknown_device(login, locations)
            for login, locations in devices
        ]
        return json_response(200, results)

    def _accept(self, login: str, locations: list[LocationIn], *, batch: bool) -> dict[str, Any]:
        received_at = time.time()
        failure_rate = self.faults.location_failure_rate
        results: list[dict[str, Any]] = []
        for loc in locations:
            error: str | None = None
            if self._sectors is not None and loc.sector_id not in self._sectors:
                error = f"Sector {loc.sector_id} not found"
            elif self._roll(failure_rate):
                self.stats.faults_injected["location_failure"] += 1
                error = "Injected failure"
            if error is None:
                accepted = AcceptedLocation(
                    login=login,
                    sector_id=loc.sector_id,
                    x=loc.x,
                    y=loc.y,
                    z=loc.z,
                    timestamp=loc.timestamp,
                    battery=loc.battery,
                    is_moving=loc.is_moving,
                    interval=loc.interval,
                    received_at=received_at,
                    batch=batch,
                )
                self._recorded.append(accepted)
                self._latest[login] = accepted
                self.stats.accepted += 1
            else:
                self.stats.rejected_locations += 1
            results.append(_result(loc, error))
        return {"Login": login, "Locations": results, "ErrorMessage": None}

    def _unknown_device(self, login: str, locations: list[LocationIn]) -> dict[str, Any]:
        self.stats.rejected_locations += len(locations)
        results = [_result(loc, "Device not found") for loc in locations]
        return {"Login": login, "Locations": results, "ErrorMessage": "Device not found"}

    # -- admin --------------------------------------------------------------------

    async def _admin_stats(self, _request: web.Request) -> web.Response:
        return json_response(200, self.stats.as_dict())

    async def _admin_get_faults(self, _request: web.Request) -> web.Response:
        return json_response(200, self.faults.model_dump())

    async def _admin_set_faults(self, request: web.Request) -> web.Response:
        # `admin_refusal` has required `Content-Type: application/json` (curl -H ... -d ...).
        try:
            changes = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return error_response(400, f"body is not valid JSON: {exc}")
        if not isinstance(changes, dict):
            return error_response(400, "body: expected a JSON object of SandboxFaults fields")
        try:
            self.set_faults(**changes)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            return error_response(400, problems)
        return json_response(200, self.faults.model_dump())

    async def _admin_expire_tokens(self, _request: web.Request) -> web.Response:
        self.expire_all_tokens()
        return json_response(200, {"expired": len(self._tokens)})


def _result(loc: LocationIn, error: str | None) -> dict[str, Any]:
    return {
        "Timestamp": loc.timestamp,
        "Action": "Add",
        "Success": error is None,
        "ErrorMessage": error,
    }
