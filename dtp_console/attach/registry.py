"""`RemoteRegistry`: the running service's twin registry over its `/api/registry` routes.

The attached UI's registry panel and twin view use it exactly as they use the
in-process `LoggedRegistry`: the same `RegistryView`, the same errors
(`TwinNotFoundError` for a 404, `RegistryError` with the service's reason for
anything else it refuses, `PermissionError` for a viewer token, `ConnectionError`
while the link is down). The service logs each lifecycle move under the token's label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from dtp_console.attach.http import error_message, request_json
from dtp_console.registry.errors import RegistryError, TwinNotFoundError
from dtp_console.registry.model import ServiceRecord, StatusChange, TwinRecord

__all__ = ["RemoteRegistry"]


class RemoteRegistry:
    """A `RegistryView` over HTTP; `http` returns the link's session (None while down)."""

    def __init__(
        self,
        base_url: str,
        http: Callable[[], aiohttp.ClientSession | None],
        headers: Mapping[str, str],
    ) -> None:
        self._base = base_url.rstrip("/") + "/api/registry"
        self._http = http
        self._headers = dict(headers)

    async def _call(
        self,
        method: str,
        path: str,
        twin_id: str | None = None,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        http = self._http()
        if http is None:
            msg = "the link to the service is down"
            raise ConnectionError(msg)
        status, body = await request_json(
            http, method, self._base + path, json=json, headers=self._headers, params=params
        )
        if status in {200, 201}:
            return body
        if status == 404 and twin_id is not None:
            raise TwinNotFoundError(twin_id)
        if status in {401, 403}:
            raise PermissionError(error_message(body))
        raise RegistryError(f"HTTP {status}: {error_message(body)}")

    @staticmethod
    def _twin(body: Mapping[str, Any]) -> TwinRecord:
        try:
            return TwinRecord.model_validate(body.get("twin"))
        except ValidationError as exc:
            msg = f"the service sent a twin this console cannot read ({exc.error_count()} errors)"
            raise RegistryError(msg) from None

    @staticmethod
    def _path(twin_id: str) -> str:
        return "/twins/" + quote(twin_id, safe=":")

    async def list_twins(self) -> list[TwinRecord]:
        """Every twin the token's tenants see, ordered by id."""
        body = await self._call("GET", "/twins")
        try:
            twins = [TwinRecord.model_validate(t) for t in body.get("twins", [])]
        except (ValidationError, TypeError) as exc:
            msg = f"the service sent twins this console cannot read: {type(exc).__name__}"
            raise RegistryError(msg) from None
        return sorted(twins, key=lambda t: t.id)

    async def get(self, twin_id: str) -> TwinRecord:
        """One twin; `TwinNotFoundError` when unknown."""
        return self._twin(await self._call("GET", self._path(twin_id), twin_id))

    async def history(self, twin_id: str) -> list[StatusChange]:
        """The twin's status changes, oldest first."""
        body = await self._call("GET", self._path(twin_id), twin_id)
        try:
            return [StatusChange.model_validate(h) for h in body.get("status_history", [])]
        except (ValidationError, TypeError):
            msg = f"the service sent a history of {twin_id} this console cannot read"
            raise RegistryError(msg) from None

    async def list_services(self) -> list[ServiceRecord]:
        """Every registered service the token sees, ordered by id."""
        body = await self._call("GET", "/services")
        try:
            services = [ServiceRecord.model_validate(s) for s in body.get("services", [])]
        except (ValidationError, TypeError):
            msg = "the service sent services this console cannot read"
            raise RegistryError(msg) from None
        return sorted(services, key=lambda s: s.id)

    async def activate(self, twin_id: str, *, reason: str = "activate") -> TwinRecord:  # noqa: ARG002 - the service records the token's label as the reason
        """Set `active` (PATCH status)."""
        body = await self._call("PATCH", self._path(twin_id), twin_id, json={"status": "active"})
        return self._twin(body)

    async def deprecate(self, twin_id: str, *, reason: str = "deprecate") -> TwinRecord:  # noqa: ARG002
        """Soft delete (`DELETE ?soft=true`): the twin as it is now."""
        path = self._path(twin_id)
        return self._twin(await self._call("DELETE", path, twin_id, params={"soft": "true"}))

    async def delete(self, twin_id: str, *, reason: str = "delete") -> TwinRecord:  # noqa: ARG002
        """Hard delete: the twin as it was."""
        path = self._path(twin_id)
        return self._twin(await self._call("DELETE", path, twin_id, params={"soft": "false"}))
