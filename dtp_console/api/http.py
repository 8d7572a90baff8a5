"""HTTP helpers of the API: JSON bodies in and out, errors with reasons.

Every refusal is an `ApiError` turned into `{"error": reason}` (plus `problems`
for a 422: one `{"field", "message"}` per invalid field, the field path as the
twin.yaml model names it, e.g. `interfaces.api` or `dependencies.static[0]`).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

__all__ = ["ApiError", "json_response", "problems_of", "read_object", "validation_error"]

_JSON = "application/json"


class ApiError(Exception):
    """Abort a request with a 4xx (or 503) and a reason."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        problems: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.problems = problems
        self.headers = headers

    def response(self) -> web.Response:
        """The JSON error response."""
        body: dict[str, Any] = {"error": self.reason}
        if self.problems is not None:
            body["problems"] = self.problems
        return json_response(self.status, body, headers=self.headers)


def json_response(status: int, body: Any, *, headers: dict[str, str] | None = None) -> web.Response:
    """`body` serialised with orjson."""
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON, headers=headers)


def _field_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text or "body"


def problems_of(error: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """One `{"field", "message"}` per error; values are never echoed."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        loc = tuple(p for p in item["loc"] if p != "__root__")
        field = _field_path(loc)
        if prefix:
            field = f"{prefix}.{field}" if field != "body" else prefix
        problems.append({"field": field, "message": item["msg"].removeprefix("Value error, ")})
    return problems


def validation_error(error: ValidationError, prefix: str = "") -> ApiError:
    """A 422 naming each invalid field (the first in the reason)."""
    problems = problems_of(error, prefix)
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(422, f"{first['field']}: {first['message']}{more}", problems=problems)


async def read_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The request's JSON object; 415, 413, 400 or 422 when it is not one."""
    if request.content_type != _JSON:
        sent = request.headers.get("Content-Type")
        raise ApiError(415, f"Content-Type must be application/json, got {sent!r}")
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body is larger than {limit} bytes (api.max_body_bytes)")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"body is larger than {limit} bytes (api.max_body_bytes)") from None
    except web.RequestPayloadError as exc:
        # A body its Content-Encoding cannot decode, or a broken chunked framing.
        why = " ".join(str(exc).split())[:200]
        raise ApiError(400, f"body could not be read: {why}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        problems = [{"field": "body", "message": "must be a JSON object"}]
        raise ApiError(422, "body: must be a JSON object", problems=problems)
    return data
