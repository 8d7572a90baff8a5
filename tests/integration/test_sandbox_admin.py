"""The sandbox's admin endpoints take JSON only (issue 13 concern): a browser tab's
cross-site "simple" POST (text/plain, a form) must not switch faults on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from dtp_console.config.model import SandboxConfig
from dtp_console.twinzo.sandbox import TwinzoSandbox

pytestmark = pytest.mark.integration


@pytest.fixture
async def http() -> AsyncIterator[tuple[TwinzoSandbox, httpx.AsyncClient]]:
    sandbox = TwinzoSandbox(
        SandboxConfig(), client="acme", password="change-me", api_key="change-me", logins=("a",)
    )
    async with sandbox, httpx.AsyncClient(base_url=sandbox.url, timeout=5.0) as client:
        yield sandbox, client


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"error_rate": 1}'),
        ("application/x-www-form-urlencoded", b"error_rate=1"),
        (None, b'{"error_rate": 1}'),
    ],
)
async def test_set_faults_without_json_content_type_is_415_and_changes_nothing(
    http: tuple[TwinzoSandbox, httpx.AsyncClient], content_type: str | None, body: bytes
) -> None:
    sandbox, client = http
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await client.post("/sandbox/faults", content=body, headers=headers)
    assert resp.status_code == 415
    assert "application/json" in resp.json()["ErrorMessage"]
    assert sandbox.faults.error_rate == 0


async def test_expire_tokens_needs_json_too(
    http: tuple[TwinzoSandbox, httpx.AsyncClient],
) -> None:
    _, client = http
    assert (await client.post("/sandbox/expire-tokens")).status_code == 415
    assert (await client.post("/sandbox/expire-tokens", json={})).status_code == 200


async def test_json_admin_requests_and_gets_still_work(
    http: tuple[TwinzoSandbox, httpx.AsyncClient],
) -> None:
    sandbox, client = http
    assert (await client.post("/sandbox/faults", json={"error_rate": 1})).status_code == 200
    assert sandbox.faults.error_rate == 1
    assert (await client.get("/sandbox/stats")).status_code == 200
