"""`/api/registry/...`: thin handlers over the running `RegistryService`.

Bodies are validated with the registry's own models (`TwinFile` and its
normalisation, `Interfaces`, `Dependencies`, `ServiceSpec`), so the routes,
the CLI and twin files agree on every rule. A token sees only its tenants: a
twin of another tenant is a 404 by id and absent from lists; writing into a
tenant it lacks is a 403; a dependency on it is reported unknown
(`api.visibility`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from dtp_console.api.http import ApiError, json_response, read_object, validation_error
from dtp_console.api.tokens import Principal
from dtp_console.api.visibility import flagged_dependencies_known, visible_to
from dtp_console.registry.errors import (
    IllegalTransitionError,
    RegistryError,
    ServiceNotFoundError,
    TwinNotFoundError,
)
from dtp_console.registry.lifecycle import TwinStatus
from dtp_console.registry.model import (
    Dependencies,
    Interfaces,
    ServiceRecord,
    ServiceSpec,
    TwinFile,
    TwinRecord,
    TwinSpec,
    normalise,
)
from dtp_console.registry.service import RegistryService

__all__ = ["PRINCIPAL", "TARGET", "RegistryRoutes", "TwinPatch", "principal_of"]

#: Request keys the server's middleware sets and reads: the caller, the id a write touched.
PRINCIPAL = web.RequestKey("principal", Principal)
TARGET = web.RequestKey("target", str)

_T = TypeVar("_T")

_STATUSES: tuple[str, ...] = get_args(TwinStatus)
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


class TwinPatch(BaseModel):
    """`PATCH /api/registry/twins/{id}`: any of lifecycle status, interfaces, dependencies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: TwinStatus | None = None
    """Move the twin along its lifecycle (`active`, `deprecated`)."""
    interfaces: Interfaces | None = None
    """Replace its interfaces."""
    dependencies: Dependencies | None = None
    """Replace its dependencies."""


def principal_of(request: web.Request) -> Principal:
    """The caller the auth middleware identified."""
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise ApiError(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return principal


def twin_json(twin: TwinRecord) -> dict[str, Any]:
    """A twin as the API returns it."""
    return twin.model_dump(mode="json")


def service_json(service: ServiceRecord) -> dict[str, Any]:
    """A service as the API returns it."""
    return service.model_dump(mode="json")


class RegistryRoutes:
    """The registry handlers; `registry` returns the running service or None."""

    def __init__(
        self, registry: Callable[[], RegistryService | None], *, max_body_bytes: int
    ) -> None:
        self._registry = registry
        self._limit = max_body_bytes

    def add_to(self, app: web.Application) -> None:
        """Mount the routes."""
        app.router.add_post("/api/registry/twins", self.upsert_twin)
        app.router.add_get("/api/registry/twins", self.list_twins)
        app.router.add_get("/api/registry/twins/{twin_id:.+}", self.get_twin)
        app.router.add_patch("/api/registry/twins/{twin_id:.+}", self.patch_twin)
        app.router.add_delete("/api/registry/twins/{twin_id:.+}", self.delete_twin)
        app.router.add_post("/api/registry/services", self.upsert_service)
        app.router.add_get("/api/registry/services", self.list_services)

    # -- helpers ----------------------------------------------------------------------

    def _service(self) -> RegistryService:
        service = self._registry()
        if service is None:
            raise ApiError(503, "the registry is not running (registry.enabled, twins folder)")
        return service

    @staticmethod
    def _tenant_filter(request: web.Request, principal: Principal) -> str | None:
        tenant = request.query.get("tenant")
        if tenant is None or tenant == "":
            return None
        if not principal.sees(tenant):
            raise ApiError(403, f"tenant {tenant!r} is not granted to token {principal.label!r}")
        return tenant

    async def _visible_twin(
        self, service: RegistryService, principal: Principal, twin_id: str
    ) -> TwinRecord:
        twin = await _guard(service.find(twin_id))
        if twin is None or not principal.sees(twin.tenant):
            raise ApiError(404, f"no twin {twin_id!r} is registered")
        return twin

    @staticmethod
    async def _seen(
        service: RegistryService, principal: Principal, twins: list[TwinRecord]
    ) -> list[dict[str, Any]]:
        """Flagged twins as JSON, dependencies of tenants the token cannot see as unknown."""
        if principal.all_tenants:
            return [twin_json(t) for t in twins]
        known = {dep for twin in twins for dep in flagged_dependencies_known(twin)}
        owners = await _guard(service.tenants_of(known)) if known else {}
        return [twin_json(visible_to(principal, t, owners)) for t in twins]

    # -- twins ------------------------------------------------------------------------

    async def upsert_twin(self, request: web.Request) -> web.Response:
        """Register or re-attach a twin from its twin.yaml form (`@id`, `tenant`, …)."""
        principal = principal_of(request)
        body = await read_object(request, self._limit)
        spec = _twin_spec(body)
        request[TARGET] = spec.id
        if not principal.sees(spec.tenant):
            raise ApiError(
                403, f"tenant {spec.tenant!r} is not granted to token {principal.label!r}"
            )
        service = self._service()
        existing = await _guard(service.find(spec.id))
        if existing is not None and not principal.sees(existing.tenant):
            raise ApiError(409, f"twin id {spec.id!r} is registered by another tenant")
        result = await _guard(service.register(spec, reason=f"api: {principal.label}"))
        (shown,) = await self._seen(service, principal, [result.twin])
        body_out = {
            "twin": shown,
            "created": result.created,
            "changed": result.changed,
        }
        return json_response(201 if result.created else 200, body_out)

    async def list_twins(self, request: web.Request) -> web.Response:
        """Twins of the token's tenants (`?tenant=`, `?status=` narrow it)."""
        principal = principal_of(request)
        tenant = self._tenant_filter(request, principal)
        status_text = request.query.get("status") or None
        if status_text is not None and status_text not in _STATUSES:
            shown = status_text[:40]
            raise ApiError(400, f"status must be one of {', '.join(_STATUSES)} (got {shown!r})")
        status = cast("TwinStatus | None", status_text)
        service = self._service()
        twins = await _guard(service.list_twins(tenant=tenant, status=status))
        visible = [t for t in twins if principal.sees(t.tenant)]
        return json_response(200, {"twins": await self._seen(service, principal, visible)})

    async def get_twin(self, request: web.Request) -> web.Response:
        """One twin and its status history."""
        principal = principal_of(request)
        twin_id = request.match_info["twin_id"]
        service = self._service()
        twin = await self._visible_twin(service, principal, twin_id)
        history = await _guard(service.history(twin_id))
        (shown,) = await self._seen(service, principal, [twin])
        return json_response(
            200,
            {
                "twin": shown,
                "status_history": [h.model_dump(mode="json") for h in history],
            },
        )

    async def patch_twin(self, request: web.Request) -> web.Response:
        """Change lifecycle status, interfaces and/or dependencies."""
        principal = principal_of(request)
        twin_id = request.match_info["twin_id"]
        request[TARGET] = twin_id
        body = await read_object(request, self._limit)
        try:
            patch = TwinPatch.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        if patch.status is None and patch.interfaces is None and patch.dependencies is None:
            problems = [{"field": "body", "message": "give status, interfaces or dependencies"}]
            raise ApiError(422, "body: nothing to change", problems=problems)
        service = self._service()
        await self._visible_twin(service, principal, twin_id)
        why = f"api: {principal.label}"
        twin: TwinRecord | None = None
        if patch.interfaces is not None or patch.dependencies is not None:
            twin = await _guard(
                service.patch(
                    twin_id,
                    interfaces=patch.interfaces,
                    dependencies=patch.dependencies,
                    reason=why,
                )
            )
        if patch.status is not None:
            twin = await _guard(service.set_status(twin_id, patch.status, reason=why))
        assert twin is not None
        (shown,) = await self._seen(service, principal, [twin])
        return json_response(200, {"twin": shown})

    async def delete_twin(self, request: web.Request) -> web.Response:
        """`?soft=true`: deprecate; otherwise remove the twin and its history."""
        principal = principal_of(request)
        twin_id = request.match_info["twin_id"]
        request[TARGET] = twin_id
        soft_text = request.query.get("soft", "").strip().lower()
        if soft_text not in _TRUE | _FALSE:
            raise ApiError(400, f"soft must be true or false (got {soft_text[:20]!r})")
        soft = soft_text in _TRUE
        service = self._service()
        await self._visible_twin(service, principal, twin_id)
        why = f"api: {principal.label}"
        if soft:
            twin = await _guard(service.deprecate(twin_id, reason=why))
            (shown,) = await self._seen(service, principal, [twin])
        else:  # the removed record is not flagged (see `api.visibility`): shown as it is
            shown = twin_json(await _guard(service.delete(twin_id, reason=why)))
        return json_response(200, {"twin": shown, "deleted": "soft" if soft else "hard"})

    # -- services ---------------------------------------------------------------------

    async def upsert_service(self, request: web.Request) -> web.Response:
        """Register or update a service (`id`, `category`, `interfaces`, `health`, …)."""
        principal = principal_of(request)
        body = await read_object(request, self._limit)
        if isinstance(body.get("id"), str) and "name" not in body:
            body = {**body, "name": body["id"]}
        try:
            spec = ServiceSpec.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        request[TARGET] = spec.id
        if not principal.sees(spec.tenant):
            raise ApiError(
                403, f"tenant {spec.tenant!r} is not granted to token {principal.label!r}"
            )
        service = self._service()
        try:
            existing: ServiceRecord | None = await service.get_service(spec.id)
        except ServiceNotFoundError:
            existing = None
        except RegistryError as exc:
            raise ApiError(503, f"registry unavailable: {exc}") from None
        if existing is not None and not principal.sees(existing.tenant):
            raise ApiError(409, f"service id {spec.id!r} is registered by another tenant")
        record = await _guard(service.register_service(spec))
        return json_response(201 if existing is None else 200, {"service": service_json(record)})

    async def list_services(self, request: web.Request) -> web.Response:
        """Services of the token's tenants (`?category=`, `?tenant=` narrow it)."""
        principal = principal_of(request)
        tenant = self._tenant_filter(request, principal)
        category = request.query.get("category") or None
        services = await _guard(self._service().list_services(category=category))
        visible = [
            service_json(s)
            for s in services
            if principal.sees(s.tenant) and (tenant is None or s.tenant == tenant)
        ]
        return json_response(200, {"services": visible})


def _twin_spec(body: dict[str, Any]) -> TwinSpec:
    """The body as a twin file, normalised the way discovery does (no folder to infer from)."""
    try:
        raw = TwinFile.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if raw.id is None:
        problems = [{"field": "@id", "message": "required (there is no folder to name it after)"}]
        raise ApiError(422, "@id: required", problems=problems)
    if raw.name is None:
        raw = raw.model_copy(update={"name": raw.id})
    try:
        return normalise(raw, Path("."), {}, infer_api=False)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def _guard(work: Awaitable[_T]) -> _T:
    """Await a registry call; its errors become 404 / 409 / 503 with the registry's reason."""
    try:
        return await work
    except (TwinNotFoundError, ServiceNotFoundError) as exc:
        raise ApiError(404, str(exc)) from None
    except IllegalTransitionError as exc:
        raise ApiError(409, str(exc)) from None
    except RegistryError as exc:
        raise ApiError(503, f"registry unavailable: {exc}") from None
    except (OSError, TimeoutError, sqlite3.Error) as exc:
        raise ApiError(503, f"registry unavailable: {type(exc).__name__}") from None
