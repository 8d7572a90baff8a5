"""Hostile twinzo answers: what the server sends back never becomes a broken header or a freeze.

A local aiohttp server plays a twinzo whose authentication returns a token that
cannot be a header, or whose 429 carries an absurd `Retry-After`; and the CLI
refuses a config with a bad header value with exit 2, naming only the field.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from dtp_console.config.model import TwinzoConfig
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.wire import location_body
from tests.support.mosquitto import free_port

#: One well-formed location (what the request carries is not under test here).
_BODY = location_body(int(time.time() * 1000), 2, 1.0, 0.0, 0.0, 1000, None, False)

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a loopback server answering authentication with the given handler."""
    runners: list[web.AppRunner] = []

    async def _serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v3/authorization/authenticate", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    yield _serve
    for runner in runners:
        await runner.cleanup()


async def _post(url: str) -> tuple[TwinzoClient, Any]:
    config = TwinzoConfig(client="demo", password="change-me", api_key="change-me")
    async with httpx.AsyncClient(timeout=5.0) as http:
        client = TwinzoClient(http, config, base_url=url)
        result = await client.post_device("tugger-01", "change-me", [_BODY])
    return client, result


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Token", "abc\r\nX-Evil: 1"),
        ("Token", "abc\u00a0def"),
        ("Branch", "\x1b[2J"),
        ("Client", "c\td"),
    ],
)
async def test_token_that_cannot_be_a_header_is_refused(
    serve: Serve, field: str, value: str
) -> None:
    async def authenticate(_request: web.Request) -> web.Response:
        body = {"Token": "t", "Client": "c", "Branch": "b", "Created": 0}
        body["Expiration"] = int((time.time() + 3600) * 1000)
        body[field] = value
        return web.json_response(body)

    client, result = await _post(await serve(authenticate))
    assert result.auth_failed
    assert result.error == f"authentication response: {field} is not a valid header"
    assert client.state.auth["tugger-01"].status == "failed"


@pytest.mark.parametrize(
    "header", ["86400", "inf", "nan", "-5", "1e309", "Fri, 01 Jan 2100 00:00:00 GMT"]
)
async def test_auth_429_retry_after_is_finite_or_none(serve: Serve, header: str) -> None:
    async def authenticate(_request: web.Request) -> web.Response:
        return web.json_response({}, status=429, headers={"Retry-After": header})

    _client, result = await _post(await serve(authenticate))
    assert result.auth_failed
    assert result.retryable
    after = result.retry_after_s
    assert after is None or (math.isfinite(after) and after >= 0), after


def test_cli_refuses_a_bad_header_value_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "console.yaml"
    config.write_text('twinzo:\n  api_key: "tz-Key-Zx81\\u00a0PqWv4"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "DTP_"))}
    env["DTP_API_LISTEN"] = "127.0.0.1:0"  # the API on a free port, never the fixed default
    for args in (("config", "show"), ("run", "--no-ui", "--for", "1s")):
        done = subprocess.run(
            [sys.executable, "-m", "dtp_console", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "twinzo.api_key: must be printable ASCII" in done.stderr
        assert "Zx81" not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
