"""The API over TLS, and the loud warning when a remote bind is plaintext on purpose."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from dtp_console.api.config import ApiConfig
from dtp_console.api.server import ApiServer
from dtp_console.config.model import ConsoleConfig
from dtp_console.events import Bus, LogLine
from dtp_console.runtime import Engine
from tests.support.api import auth, token_entries
from tests.support.mosquitto import TlsFiles

pytestmark = pytest.mark.integration


async def test_the_api_serves_https_with_the_configured_certificate(tls_files: TlsFiles) -> None:
    config = ApiConfig(
        listen="127.0.0.1:0",
        tls={"cert_file": tls_files.cert, "key_file": tls_files.key},
        tokens=token_entries(),
    )
    server = ApiServer(config, bus=Bus(), registry=lambda: None)
    trusted = ssl.create_default_context(cafile=str(tls_files.ca))
    async with server, aiohttp.ClientSession() as session:
        assert server.url.startswith("https://127.0.0.1:")
        async with session.get(server.url + "/api/openapi.json", ssl=trusted) as resp:
            assert resp.status == 200
        async with session.get(
            server.url + "/api/registry/twins", ssl=trusted, headers=auth("viewer-a")
        ) as resp:
            assert resp.status == 503  # no registry here; the point is the TLS handshake
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(server.url + "/api/openapi.json")  # system CAs do not know it
        plain = server.url.replace("https://", "http://")
        with pytest.raises(aiohttp.ClientError):
            await session.get(plain + "/api/openapi.json")


def test_tls_files_that_do_not_load_are_refused(tmp_path: Path, tls_files: TlsFiles) -> None:
    with pytest.raises(ValueError, match="not found"):
        ApiConfig(tls={"cert_file": tmp_path / "none.crt", "key_file": tls_files.key})
    with pytest.raises(ValueError, match="not a readable PEM"):
        ApiConfig(tls={"cert_file": tls_files.ca, "key_file": tls_files.key})


async def test_a_plaintext_remote_bind_warns_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ConsoleConfig.model_validate(
        {
            "registry": {"enabled": False},
            "stores": {"enabled": False},
            "simulator": {"enabled": False},
            "api": {"listen": "127.0.0.1:0", "allow_plaintext_remote": True},
        }
    )
    # Tests bind loopback only: the engine is told this address is remote instead.
    monkeypatch.setattr("dtp_console.api.config.is_loopback_host", lambda _host: False)
    engine = Engine(config)
    lines = engine.bus.subscribe()
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 15)
    stop.set()
    await asyncio.wait_for(task, 15)
    warned = [e.text for e in lines.drain() if isinstance(e, LogLine) and e.level == "WARN"]
    assert any("plaintext http on a non-loopback address" in text for text in warned)
