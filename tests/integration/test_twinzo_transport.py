"""The shared twinzo HTTP client on aiohttp's transport keeps every guarantee of httpx's.

Real servers on loopback: the sandbox, and small aiohttp servers (HTTPS with a
CA made per session, slow, counting connections) for what the sandbox does not do.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from dtp_console.config.model import TwinzoConfig
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.http import TwinzoTransport, twinzo_http_client
from dtp_console.twinzo.sandbox import TwinzoSandbox
from dtp_console.twinzo.wire import LocationBody
from tests.integration.conftest import SANDBOX_CREDENTIALS
from tests.support.mosquitto import TlsFiles, free_port

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _config(**changes: Any) -> TwinzoConfig:
    return TwinzoConfig.model_validate({**SANDBOX_CREDENTIALS, "timeout_s": 2.0, **changes})


def _location() -> LocationBody:
    return {
        "Timestamp": int(time.time() * 1000),
        "SectorId": 1,
        "X": 1.0,
        "Y": 2.0,
        "Z": 0.0,
        "Interval": 1000,
        "Battery": None,
        "IsMoving": False,
        "LocalizationAreas": [],
        "NoGoAreas": [],
    }


class Server:
    """An aiohttp app on a free loopback port, optionally HTTPS."""

    def __init__(self, handler: Handler, tls: TlsFiles | None = None) -> None:
        self.port = free_port()
        self.peers: set[tuple[str, int]] = set()
        self._handler = handler
        self._tls = tls
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    async def _count(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.peers.add((peer[0], peer[1]))
        return await self._handler(request)

    async def __aenter__(self) -> Server:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._count)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self._tls.cert, self._tls.key)
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context)
        await site.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def _ok(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def https(tls_files: TlsFiles) -> AsyncIterator[Server]:
    async with Server(_ok, tls=tls_files) as server:
        yield server


async def test_posts_to_the_sandbox_through_the_aiohttp_transport(sandbox: TwinzoSandbox) -> None:
    config = _config()
    async with twinzo_http_client(config, user_agent="dtp-console/test") as http:
        assert isinstance(http._transport, TwinzoTransport)
        client = TwinzoClient(http, config, base_url=sandbox.url)
        results = await asyncio.gather(
            *(client.post_device("tugger-03", SANDBOX_CREDENTIALS["password"], [_location()])
              for _ in range(10))
        )  # fmt: skip
    assert all(r.ok for r in results), results
    assert sandbox.stats.auth_calls["tugger-03"] == 1  # one in-flight authentication per device
    assert len(sandbox.locations("tugger-03")) == 10


async def test_a_self_signed_ca_fails_without_ca_file_and_works_with_it(
    https: Server, tls_files: TlsFiles
) -> None:
    async with twinzo_http_client(_config(), user_agent="t") as http:
        with pytest.raises(httpx.ConnectError) as failed:
            await http.get(https.url + "/x")
    chain: list[BaseException] = []
    exc: BaseException | None = failed.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in chain), chain
    async with twinzo_http_client(_config(ca_file=tls_files.ca), user_agent="t") as http:
        assert (await http.get(https.url + "/x")).json() == {"ok": True}
    async with twinzo_http_client(_config(verify_tls=False), user_agent="t") as http:
        assert (await http.get(https.url + "/x")).status_code == 200


async def test_a_host_name_mismatch_is_refused(https: Server, tls_files: TlsFiles) -> None:
    # The certificate names 127.0.0.1 and localhost; ::1-free trick: a name it lacks.
    async with twinzo_http_client(_config(ca_file=tls_files.ca), user_agent="t") as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(https.url.replace("127.0.0.1", "127.0.0.2") + "/x")


async def test_refused_is_a_connect_error_not_a_timeout() -> None:
    port = free_port()
    async with twinzo_http_client(_config(), user_agent="t") as http:
        with pytest.raises(httpx.ConnectError) as failed:
            await http.post(f"http://127.0.0.1:{port}/v3/localization", content=b"[]")
    assert not isinstance(failed.value, httpx.TimeoutException)


async def test_the_timeout_holds() -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    async with (
        Server(slow) as server,
        twinzo_http_client(_config(timeout_s=0.3), user_agent="t") as http,
    ):
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await http.post(server.url + "/v3/localization", content=b"[]")
        assert time.monotonic() - started < 2.0


async def test_connections_are_pooled_and_limited_to_max_concurrency() -> None:
    active = 0
    most = 0

    async def busy(_request: web.Request) -> web.Response:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.05)
        active -= 1
        return web.json_response({})

    async with (
        Server(busy) as server,
        twinzo_http_client(_config(max_concurrency=3), user_agent="t") as http,
    ):
        await asyncio.gather(*(http.post(server.url + "/p", content=b"[]") for _ in range(30)))
    assert most == 3
    assert len(server.peers) == 3  # keep-alive: 30 requests over 3 connections


async def test_retry_after_and_error_bodies_pass_through(sandbox: TwinzoSandbox) -> None:
    sandbox.set_faults(rate_429=1.0, retry_after_s=7)
    config = _config()
    async with twinzo_http_client(config, user_agent="t") as http:
        client = TwinzoClient(http, config, base_url=sandbox.url)
        result = await client.post_device(
            "tugger-03", SANDBOX_CREDENTIALS["password"], [_location()]
        )
    assert result.status == 429
    assert result.retryable
    assert result.retry_after_s == pytest.approx(7, abs=0.5)


async def test_close_on_shutdown_closes_the_aiohttp_session(sandbox: TwinzoSandbox) -> None:
    http = twinzo_http_client(_config(), user_agent="t")
    async with http:
        await http.get(sandbox.url + "/sandbox/stats")
        transport = http._transport
        assert isinstance(transport, TwinzoTransport)
        session = transport.client
        assert session is not None
        assert not session.closed  # type: ignore[union-attr]
    assert session.closed  # type: ignore[union-attr]


async def test_user_agent_and_headers_are_sent() -> None:
    seen: list[Any] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())  # case-insensitive, as HTTP header names are
        return web.json_response({})

    async with Server(echo) as server, twinzo_http_client(_config(), user_agent="dtp/9") as http:
        await http.post(server.url + "/p", content=b"[]", headers={"Api-Key": "test-key"})
    assert seen[0]["User-Agent"] == "dtp/9"
    assert seen[0]["Api-Key"] == "test-key"
