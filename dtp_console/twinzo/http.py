"""The process's one HTTP client for twinzo: httpx's API over aiohttp's transport.

httpx's own transport (httpcore) costs ≈1.3 ms of event-loop CPU per POST here;
behind the same httpx API, `httpx_aiohttp.AiohttpTransport` costs ≈0.35 ms
(FIELD-NOTES, bench/bench_http.py). The twinzo client keeps speaking httpx:
timeouts, `Retry-After`, single-flight auth and result parsing are unchanged.

What the transport gets wrong is put right here: it maps every aiohttp
connection error to `httpx.ConnectTimeout`, so a refused connection or a bad
certificate would read as a time-out. Errors are re-mapped by their cause.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from dtp_console.config.model import TwinzoConfig

__all__ = ["TwinzoTransport", "tls_context", "twinzo_http_client"]

#: Idle keep-alive connections are closed after this long (aiohttp's connector).
_KEEPALIVE_S = 30.0


def tls_context(config: TwinzoConfig) -> ssl.SSLContext:
    """Certificate and host-name verification on (with `ca_file` when set) unless
    `verify_tls: false`."""
    context = ssl.create_default_context(
        cafile=str(config.ca_file) if config.ca_file is not None else None
    )
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TwinzoTransport(AiohttpTransport):
    """`AiohttpTransport` whose errors say what happened (refused, TLS, time-out)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
                raise
            if isinstance(cause, aiohttp.ClientConnectorError):
                # Refused, unreachable, DNS, TLS handshake: not a time-out.
                raise httpx.ConnectError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError):
                # e.g. ServerDisconnectedError: the connection broke mid-request.
                raise httpx.RemoteProtocolError(str(cause), request=request) from cause
            raise


def twinzo_http_client(config: TwinzoConfig, *, user_agent: str) -> httpx.AsyncClient:
    """The shared client: pooled keep-alive connections up to `max_concurrency`."""
    transport = TwinzoTransport(
        verify=tls_context(config),
        limits=httpx.Limits(max_connections=config.max_concurrency, keepalive_expiry=_KEEPALIVE_S),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=config.timeout_s,
        headers={"User-Agent": user_agent},
    )
