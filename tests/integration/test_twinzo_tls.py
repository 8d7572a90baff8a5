"""twinzo over HTTPS: a certificate problem is named as such, not as a bare `ConnectError`.

A local aiohttp server on 127.0.0.1 presents a certificate from the test CA.
The client either does not trust that CA (verify failed), trusts it but the
certificate names another host (hostname mismatch), or trusts it (works).
"""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from dtp_console.config.model import TwinzoConfig
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.http import twinzo_http_client
from dtp_console.twinzo.wire import location_body
from tests.support.mosquitto import TlsFiles, free_port

#: One well-formed location (what the request carries is not under test here).
_BODY = location_body(int(time.time() * 1000), 2, 1.0, 0.0, 0.0, 1000, None, False)

pytestmark = pytest.mark.integration


async def _authenticate(_request: web.Request) -> web.Response:
    expires = int((time.time() + 3600) * 1000)
    return web.json_response(
        {"Token": "t", "Client": "c", "Branch": "b", "Expiration": expires, "Created": 0}
    )


async def _localization(_request: web.Request) -> web.Response:
    return web.json_response({"Login": "tugger-01", "Locations": [{"Success": True}]})


async def _https(cert: Path, key: Path) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v3/authorization/authenticate", _authenticate)
    app.router.add_post("/v3/localization", _localization)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def https_url(tls_files: TlsFiles) -> AsyncIterator[str]:
    """An HTTPS twinzo stand-in whose certificate names 127.0.0.1 (signed by the test CA)."""
    async for url in _https(tls_files.cert, tls_files.key):
        yield url


@pytest.fixture
async def wrong_host_url(tls_files: TlsFiles, tmp_path: Path) -> AsyncIterator[str]:
    """The same CA, but a certificate for broker.example.com only."""
    ca_dir = tls_files.ca.parent

    def _openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.csr",
        "-subj", "/CN=broker.example.com",
    )  # fmt: skip
    (tmp_path / "other.ext").write_text(
        "subjectAltName=DNS:broker.example.com\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "other.csr", "-CA", str(tls_files.ca),
        "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-CAserial", "other.srl",
        "-out", "other.crt", "-days", "2", "-extfile", "other.ext",
    )  # fmt: skip
    async for url in _https(tmp_path / "other.crt", tmp_path / "other.key"):
        yield url


def _config(ca: Path | None = None) -> TwinzoConfig:
    return TwinzoConfig(client="demo", password="change-me", api_key="change-me", ca_file=ca)


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    """The runtime's transport (aiohttp's) and httpx's own: both must name the problem."""
    return str(request.param)


def _http(transport: str, ca: Path | None) -> httpx.AsyncClient:
    if transport == "aiohttp":
        return twinzo_http_client(_config(ca), user_agent="t")
    verify: ssl.SSLContext | bool = True
    if ca is not None:
        verify = ssl.create_default_context(cafile=str(ca))
    return httpx.AsyncClient(verify=verify, timeout=5.0)


async def _post(url: str, ca: Path | None, transport: str) -> tuple[TwinzoClient, str | None]:
    async with _http(transport, ca) as http:
        client = TwinzoClient(http, _config(ca), base_url=url)
        result = await client.post_device("tugger-01", "change-me", [_BODY])
    return client, result.error


async def test_untrusted_certificate_says_certificate_verify_failed(
    https_url: str, transport: str
) -> None:
    client, error = await _post(https_url, None, transport)  # the system store lacks the CA
    assert error is not None
    assert error.startswith("connection error: ConnectError (certificate verify failed: ")
    assert "issuer" in error or "self" in error, error
    auth = client.state.auth["tugger-01"]
    assert auth.status == "failed"
    assert auth.last_error == error


async def test_hostname_mismatch_says_so(
    wrong_host_url: str, tls_files: TlsFiles, transport: str
) -> None:
    _client, error = await _post(wrong_host_url, tls_files.ca, transport)
    assert error is not None
    assert "certificate verify failed" in error
    assert "mismatch" in error.lower(), error


async def test_trusted_certificate_posts(
    https_url: str, tls_files: TlsFiles, transport: str
) -> None:
    async with _http(transport, tls_files.ca) as http:
        client = TwinzoClient(http, _config(tls_files.ca), base_url=https_url)
        result = await client.post_device("tugger-01", "change-me", [_BODY])
    assert result.ok, result


async def test_plain_connection_refused_stays_a_connect_error(transport: str) -> None:
    _client, error = await _post(f"https://127.0.0.1:{free_port()}", None, transport)
    assert error == "connection error: ConnectError"
