"""The twinzo client over real HTTP against the sandbox, with injected faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from dtp_console.config.model import TwinzoConfig
from dtp_console.twinzo.client import TwinzoClient, parse_retry_after
from dtp_console.twinzo.sandbox import TwinzoSandbox
from dtp_console.twinzo.wire import LocationBody
from tests.integration.conftest import SANDBOX_CREDENTIALS

pytestmark = pytest.mark.integration

PASSWORD = SANDBOX_CREDENTIALS["password"]


def _location(x: float = 1000.0) -> LocationBody:
    return {
        "Timestamp": int(time.time() * 1000),
        "SectorId": 2,
        "X": x,
        "Y": 2000.0,
        "Z": 0.0,
        "Interval": 1000,
        "Battery": 90,
        "IsMoving": True,
        "LocalizationAreas": [],
        "NoGoAreas": [],
    }


@pytest.fixture
async def client(sandbox: TwinzoSandbox) -> AsyncIterator[TwinzoClient]:
    config = TwinzoConfig(
        client=SANDBOX_CREDENTIALS["client"],
        password=PASSWORD,
        api_key=SANDBOX_CREDENTIALS["api_key"],
        timeout_s=0.5,
    )
    async with httpx.AsyncClient(timeout=config.timeout_s) as http:
        yield TwinzoClient(http, config, base_url=sandbox.url)


async def test_post_device_authenticates_once_and_is_recorded(
    client: TwinzoClient, sandbox: TwinzoSandbox
) -> None:
    for x in (1000.0, 1100.0, 1200.0):
        result = await client.post_device("tugger-03", PASSWORD, [_location(x)])
        assert result.ok, result
        assert result.status == 200
    assert sandbox.stats.auth_calls["tugger-03"] == 1
    assert [loc.x for loc in sandbox.locations("tugger-03")] == [1000.0, 1100.0, 1200.0]
    assert client.state.auth["tugger-03"].status == "valid"


async def test_concurrent_posts_share_one_authentication(
    client: TwinzoClient, sandbox: TwinzoSandbox
) -> None:
    sandbox.set_faults(latency_ms=50)
    results = await asyncio.gather(
        *(client.post_device("tugger-04", PASSWORD, [_location()]) for _ in range(20))
    )
    assert all(r.ok for r in results)
    assert sandbox.stats.auth_calls["tugger-04"] == 1


async def test_expired_token_reauthenticates_once_on_401(
    client: TwinzoClient, sandbox: TwinzoSandbox
) -> None:
    assert (await client.post_device("tugger-03", PASSWORD, [_location()])).ok
    sandbox.expire_all_tokens()  # the client still believes its token is valid
    result = await client.post_device("tugger-03", PASSWORD, [_location()])
    assert result.ok
    assert sandbox.stats.auth_calls["tugger-03"] == 2


async def test_401_on_valid_token_gives_up_after_one_reauthentication(
    client: TwinzoClient, sandbox: TwinzoSandbox
) -> None:
    sandbox.set_faults(reject_token_rate=1.0)
    result = await client.post_device("tugger-03", PASSWORD, [_location()])
    assert not result.ok
    assert result.status == 401
    assert not result.retryable
    assert sandbox.stats.auth_calls["tugger-03"] == 2  # the first and exactly one retry


async def test_bad_password_is_an_auth_failure(client: TwinzoClient) -> None:
    result = await client.post_device("tugger-03", "wrong-password", [_location()])
    assert result.auth_failed
    assert result.status == 401
    assert not result.retryable
    assert client.state.auth["tugger-03"].status == "failed"


async def test_5xx_and_429_are_retryable_and_429_carries_retry_after(
    client: TwinzoClient, sandbox: TwinzoSandbox
) -> None:
    assert (await client.post_device("tugger-03", PASSWORD, [_location()])).ok
    sandbox.set_faults(error_rate=1.0)
    result = await client.post_device("tugger-03", PASSWORD, [_location()])
    assert (result.status, result.retryable) == (503, True)
    sandbox.set_faults(error_rate=0.0, rate_429=1.0, retry_after_s=2.5)
    result = await client.post_device("tugger-03", PASSWORD, [_location()])
    assert (result.status, result.retryable, result.retry_after_s) == (429, True, 2.5)


async def test_timeout_is_retryable(client: TwinzoClient, sandbox: TwinzoSandbox) -> None:
    assert (await client.post_device("tugger-03", PASSWORD, [_location()])).ok
    sandbox.set_faults(latency_ms=1500)  # longer than the client's 0.5 s timeout
    started = time.monotonic()
    result = await client.post_device("tugger-03", PASSWORD, [_location()])
    assert time.monotonic() - started < 1.4
    assert (result.ok, result.status, result.error, result.retryable) == (
        False,
        None,
        "timeout",
        True,
    )


async def test_success_false_inside_http_200_counts_as_failure(
    client: TwinzoClient, sandbox: TwinzoSandbox
) -> None:
    sandbox.set_faults(location_failure_rate=1.0)
    result = await client.post_device("tugger-03", PASSWORD, [_location(), _location()])
    assert result.status == 200
    assert not result.ok
    assert not result.retryable
    assert result.failed_locations == 2
    assert result.error == "Injected failure"
    assert sandbox.locations() == []


async def test_batch_posts_many_devices_in_one_request(
    client: TwinzoClient, sandbox: TwinzoSandbox
) -> None:
    devices = {f"tugger-{i:02d}": [_location(float(i))] for i in range(10)}
    results = await client.post_batch(sandbox.branch_guid, devices)
    assert set(results) == set(devices)
    assert all(r.ok for r in results.values())
    assert sandbox.stats.requests == 1
    assert {loc.login for loc in sandbox.locations()} == set(devices)
    assert all(loc.batch for loc in sandbox.locations())


async def test_connection_refused_is_retryable() -> None:
    config = TwinzoConfig(client="demo", timeout_s=0.5)
    async with httpx.AsyncClient() as http:
        client = TwinzoClient(http, config, base_url="http://127.0.0.1:9")
        result = await client.post_device("tugger-03", "x", [_location()])
    assert result.auth_failed and result.retryable and result.status is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
