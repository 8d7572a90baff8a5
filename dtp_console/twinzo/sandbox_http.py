"""HTTP helpers of the twinzo sandbox: JSON responses, errors and header checks."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "RejectError",
    "admin_refusal",
    "error_response",
    "is_loopback",
    "json_response",
    "read_json",
    "same_id",
    "seconds_header",
]


class RejectError(Exception):
    """Abort a request with an error status; turned into a JSON error body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback IP address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """`body` serialised with orjson."""
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A twinzo-style error body: ``{"ErrorMessage": message}``."""
    return json_response(status, {"ErrorMessage": message}, headers)


def same_id(sent: str, *expected: str) -> bool:
    """Whether `sent` equals one of `expected`, comparing GUIDs case-insensitively."""
    for candidate in expected:
        if sent == candidate:
            return True
        try:
            if uuid.UUID(sent) == uuid.UUID(candidate):
                return True
        except ValueError:
            continue
    return False


def seconds_header(value: float) -> str:
    """Seconds for a `Retry-After` header: an integer when whole, else up to 3 decimals."""
    # Fractions are non-standard but keep fault tests fast; clients should parse a float.
    return str(int(value)) if value.is_integer() else f"{value:.3f}".rstrip("0")


async def read_json(request: web.Request) -> Any:
    """The decoded JSON body; RejectError 415 without a JSON content type, 400 if malformed."""
    # twinzo (ASP.NET) answers 415 to a JSON body sent without its content type.
    if request.content_type != "application/json":
        sent = request.headers.get("Content-Type")
        raise RejectError(415, f"Content-Type must be application/json, got {sent!r}")
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RejectError(400, f"body is not valid JSON: {exc}") from exc


def admin_refusal(request: web.Request) -> web.Response | None:
    """Why an admin request (`/sandbox/...`) is refused, as the response; None to serve it.

    Loopback peers only. A POST must say `Content-Type: application/json`: a web page the
    operator has open can send a cross-site "simple" POST (`text/plain`, a form) to
    127.0.0.1 without the browser asking first, but not a JSON one — that needs a CORS
    preflight, which the sandbox never grants. So fault injection cannot be switched on
    from a browser tab.
    """
    if request.remote is None or not is_loopback(request.remote):
        return error_response(403, "sandbox admin endpoints answer loopback peers only")
    if request.method == "POST" and request.content_type != "application/json":
        sent = request.headers.get("Content-Type")
        return error_response(415, f"Content-Type must be application/json, got {sent!r}")
    return None
