"""The attach client's HTTP requests: bounded JSON bodies, status codes → the Engine's errors.

An attached command must fail the way the in-process one does, so the UI's
`except` clauses stay as they are: 412 → `DeviceMapConflictError`, 422 (and other
4xx) → `ValueError`, 503 → `ConfigWriteError`, 401/403 → `PermissionError`, and a
service out of reach → `ConnectionError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from dtp_console.config.writer import ConfigWriteError, DeviceMapConflictError
from dtp_console.textsafe import safe_text

__all__ = [
    "MAX_BODY",
    "ApiStatusError",
    "command_error",
    "error_message",
    "read_json",
    "request_json",
]

#: Largest JSON body the client reads from the service (a session with a big config).
MAX_BODY = 8 * 1024 * 1024
#: Seconds a command (a PUT, a registry call) may take end to end.
COMMAND_TIMEOUT_S = 30.0


class ApiStatusError(Exception):
    """The service answered with a status the caller did not expect."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {error_message(body)}")


def error_message(body: Mapping[str, Any]) -> str:
    """The service's reason (`message`, else `error`), as plain bounded text."""
    reason = body.get("message") or body.get("error") or "no reason given"
    return safe_text(str(reason), 500)


async def read_json(response: aiohttp.ClientResponse, limit: int = MAX_BODY) -> dict[str, Any]:
    """The response's JSON object, read at most `limit` bytes (`ValueError` beyond, or
    for anything but an object)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            msg = f"a response body larger than {limit} bytes"
            raise ValueError(msg)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        msg = f"HTTP {response.status}: not JSON ({safe_text(raw[:80].decode('utf-8', 'replace'))})"
        raise ValueError(msg) from None
    if not isinstance(body, dict):
        msg = f"HTTP {response.status}: a JSON {type(body).__name__}, not an object"
        raise ValueError(msg)
    return body


async def request_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one request; `ConnectionError` when the service is out of reach."""
    data = None if json is None else orjson.dumps(json)
    sent = dict(headers or {})
    if data is not None:
        sent["Content-Type"] = "application/json"
    try:
        async with http.request(
            method,
            url,
            data=data,
            headers=sent,
            params=params,
            timeout=aiohttp.ClientTimeout(total=COMMAND_TIMEOUT_S),
            allow_redirects=False,
        ) as response:
            return response.status, await read_json(response)
    except (aiohttp.ClientError, TimeoutError) as exc:
        msg = f"the service did not answer: {describe(exc)}"
        raise ConnectionError(msg) from exc


def describe(exc: BaseException) -> str:
    """A short, plain reason for a failed request or stream (never a traceback)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the service closed the connection"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate refused: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    text = str(exc) or type(exc).__name__
    return safe_text(text, 300)


def command_error(status: int, body: Mapping[str, Any], *, where: Path) -> Exception:
    """The exception the in-process Engine raises for what status `status` says."""
    message = error_message(body)
    if status == 412:
        current = body.get("current")
        keys = body.get("keys")
        if isinstance(current, dict) and isinstance(keys, list):
            mapping = {str(k): str(v) for k, v in current.items()}
            return DeviceMapConflictError(where, [str(k) for k in keys], mapping)
        return ConfigWriteError(message)
    if status in {401, 403}:
        return PermissionError(message)
    if status == 503:
        return ConfigWriteError(message)
    if 400 <= status < 500:
        return ValueError(message)
    return ConnectionError(f"HTTP {status}: {message}")
