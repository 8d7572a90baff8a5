"""The twinzo sandbox, driven over loopback with a real httpx client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from dtp_console.config.model import SandboxConfig
from dtp_console.twinzo.sandbox import TwinzoSandbox
from dtp_console.twinzo.sandbox_http import is_loopback

pytestmark = pytest.mark.integration

CLIENT = "acme"
PASSWORD = "s3cret"
API_KEY = "api-key-1"
LOGINS = ("amr-1", "amr-2")


def make_sandbox(**config: Any) -> TwinzoSandbox:
    return TwinzoSandbox(
        SandboxConfig(**config),
        client=CLIENT,
        password=PASSWORD,
        api_key=API_KEY,
        logins=LOGINS,
        seed=7,
    )


@pytest.fixture
async def sandbox() -> AsyncIterator[TwinzoSandbox]:
    async with make_sandbox(sectors=[1, 2]) as sb:
        yield sb


@pytest.fixture
async def http(sandbox: TwinzoSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=5.0) as client:
        yield client


def location(**changes: Any) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "Timestamp": int(time.time() * 1000),
        "SectorId": 1,
        "X": 1500.0,
        "Y": 2500,
        "Z": 0,
        "Interval": 1000,
        "Battery": 80,
        "IsMoving": True,
        "LocalizationAreas": [],
        "NoGoAreas": [],
    }
    loc.update(changes)
    return loc


def tenant(sb: TwinzoSandbox, **changes: str) -> dict[str, str]:
    headers = {"Client": sb.client_guid, "Branch": sb.branch_guid, "Api-Key": API_KEY}
    headers.update(changes)
    return headers


async def authenticate(http: httpx.AsyncClient, login: str = "amr-1") -> str:
    resp = await http.post(
        "/v3/authorization/authenticate",
        json={"client": CLIENT, "login": login, "password": PASSWORD},
    )
    assert resp.status_code == 200, resp.text
    token = resp.json()["Token"]
    assert isinstance(token, str)
    return token


async def localize(
    http: httpx.AsyncClient, sb: TwinzoSandbox, token: str, body: Any
) -> httpx.Response:
    return await http.post("/v3/localization", json=body, headers=tenant(sb, Token=token))


# -- auth and the happy path --------------------------------------------------------


async def test_authenticate_localize_and_record(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient
) -> None:
    before = int(time.time() * 1000)
    resp = await http.post(
        "/v3/authorization/authenticate",
        json={"client": CLIENT, "login": "amr-1", "password": PASSWORD},
    )
    assert resp.status_code == 200
    auth = resp.json()
    assert set(auth) == {"Token", "Client", "Branch", "Expiration", "Created"}
    assert auth["Client"] == sandbox.client_guid
    assert auth["Branch"] == sandbox.branch_guid
    assert before <= auth["Created"] <= int(time.time() * 1000)
    assert auth["Expiration"] == auth["Created"] + 3_600_000

    first, second = location(X=1.0), location(X=2.0, IsMoving=False)
    resp = await localize(http, sandbox, auth["Token"], [first, second])
    assert resp.status_code == 200
    assert resp.json() == {
        "Login": "amr-1",
        "Locations": [
            {
                "Timestamp": first["Timestamp"],
                "Action": "Add",
                "Success": True,
                "ErrorMessage": None,
            },
            {
                "Timestamp": second["Timestamp"],
                "Action": "Add",
                "Success": True,
                "ErrorMessage": None,
            },
        ],
        "ErrorMessage": None,
    }
    recorded = sandbox.locations("amr-1")
    assert [loc.x for loc in recorded] == [1.0, 2.0]
    assert recorded[0].sector_id == 1
    assert recorded[0].timestamp == first["Timestamp"]
    assert not recorded[0].batch
    assert sandbox.locations("amr-2") == []
    assert sandbox.latest()["amr-1"].x == 2.0
    assert sandbox.latest()["amr-1"].is_moving is False
    assert sandbox.stats.accepted == 2
    assert sandbox.stats.auth_calls["amr-1"] == 1
    assert sandbox.stats.status_counts[200] == 2
    assert sandbox.stats.requests == 2


async def test_client_header_may_be_the_client_name(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient
) -> None:
    token = await authenticate(http)
    resp = await http.post(
        "/v3/localization", json=[location()], headers=tenant(sandbox, Client=CLIENT, Token=token)
    )
    assert resp.status_code == 200


async def test_refresh_issues_a_new_working_token(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient
) -> None:
    token = await authenticate(http, "amr-2")
    resp = await http.get("/v3/authorization/token", headers={"Token": token})
    assert resp.status_code == 200
    fresh = resp.json()
    assert fresh["Token"] != token
    assert fresh["Client"] == sandbox.client_guid
    resp = await localize(http, sandbox, fresh["Token"], [location()])
    assert resp.json()["Login"] == "amr-2"
    assert sandbox.stats.refresh_calls == 1


async def test_expired_tokens_are_rejected(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    token = await authenticate(http)
    sandbox.expire_all_tokens()
    resp = await localize(http, sandbox, token, [location()])
    assert resp.status_code == 401
    assert "expired" in resp.json()["ErrorMessage"]
    resp = await http.get("/v3/authorization/token", headers={"Token": token})
    assert resp.status_code == 401
    resp = await localize(http, sandbox, await authenticate(http), [location()])
    assert resp.status_code == 200


async def test_short_token_lifetime_expires() -> None:
    async with (
        make_sandbox(token_lifetime_s=0.05) as sb,
        httpx.AsyncClient(base_url=sb.url) as http,
    ):
        token = await authenticate(http)
        await asyncio.sleep(0.06)
        assert (await localize(http, sb, token, [location()])).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"client": CLIENT, "login": "amr-1", "password": "wrong"},
        {"client": "other", "login": "amr-1", "password": PASSWORD},
        {"client": CLIENT, "login": "stranger", "password": PASSWORD},
    ],
    ids=["password", "client", "login"],
)
async def test_bad_credentials_are_401(http: httpx.AsyncClient, body: dict[str, str]) -> None:
    resp = await http.post("/v3/authorization/authenticate", json=body)
    assert resp.status_code == 401
    assert resp.json()["ErrorMessage"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"client": CLIENT, "login": "amr-1"}, "'password'"),
        ({"client": CLIENT, "login": "amr-1", "password": PASSWORD, "x": 1}, "'x'"),
        ({"client": CLIENT, "login": 5, "password": PASSWORD}, "body.login"),
        ([], "JSON object"),
    ],
)
async def test_malformed_auth_body_is_400(http: httpx.AsyncClient, body: Any, needle: str) -> None:
    resp = await http.post("/v3/authorization/authenticate", json=body)
    assert resp.status_code == 400
    assert needle in resp.json()["ErrorMessage"]


async def test_bearer_instead_of_token_is_401(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient
) -> None:
    token = await authenticate(http)
    headers = tenant(sandbox, Authorization=f"Bearer {token}")
    resp = await http.post("/v3/localization", json=[location()], headers=headers)
    assert resp.status_code == 401
    assert "Token" in resp.json()["ErrorMessage"]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"Api-Key": "nope"}, 401),
        ({"Api-Key": ""}, 401),
        ({"Branch": "00000000-0000-0000-0000-000000000000"}, 403),
        ({"Client": "someone-else"}, 403),
    ],
)
async def test_tenant_headers(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient, changes: dict[str, str], status: int
) -> None:
    token = await authenticate(http)
    headers = tenant(sandbox, Token=token, **changes)
    resp = await http.post("/v3/localization", json=[location()], headers=headers)
    assert resp.status_code == status
    assert sandbox.locations() == []


# -- body validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (location(), "expected a JSON array"),
        ([], "empty array"),
        (
            [{k: v for k, v in location().items() if k != "Battery"}],
            "location[0]: missing field 'Battery'",
        ),
        ([location(), location(X=True)], "location[1].X"),
        ([location(Y="NaN")], "location[0].Y"),
        ([location(Foo=1)], "location[0]: unknown field 'Foo'"),
        ([location(Timestamp=int(time.time()))], "location[0].Timestamp"),
        ([location(SectorId=1.5)], "location[0].SectorId"),
        ([location(Battery=150)], "location[0].Battery"),
        ([location(IsMoving=1)], "location[0].IsMoving"),
        ([location(NoGoAreas=None)], "location[0].NoGoAreas"),
    ],
    ids=[
        "not-array",
        "empty",
        "missing",
        "bool-x",
        "nan-string",
        "unknown-key",
        "seconds",
        "float-sector",
        "battery",
        "int-moving",
        "null-areas",
    ],
)
async def test_bad_location_bodies_are_400(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient, body: Any, needle: str
) -> None:
    resp = await localize(http, sandbox, await authenticate(http), body)
    assert resp.status_code == 400
    assert needle in resp.json()["ErrorMessage"]
    assert sandbox.locations() == []


async def test_non_json_bodies(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    headers = tenant(sandbox, Token=await authenticate(http))
    resp = await http.post(
        "/v3/localization",
        content=b'[{"X": NaN}]',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["ErrorMessage"]
    resp = await http.post("/v3/localization", content=b"[]", headers=headers)
    assert resp.status_code == 415


async def test_unknown_sector_fails_inside_200(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient
) -> None:
    resp = await localize(
        http, sandbox, await authenticate(http), [location(SectorId=9), location(SectorId=2)]
    )
    assert resp.status_code == 200
    results = resp.json()["Locations"]
    assert results[0]["Success"] is False
    assert results[0]["ErrorMessage"] == "Sector 9 not found"
    assert results[1]["Success"] is True
    assert [loc.sector_id for loc in sandbox.locations()] == [2]
    assert sandbox.stats.rejected_locations == 1


# -- batch --------------------------------------------------------------------------


async def test_batch_needs_no_token(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    body = [
        {"Login": "amr-1", "Locations": [location(X=1), location(X=2)]},
        {"Login": "amr-2", "Locations": [location(X=3)]},
    ]
    resp = await http.post("/v3/localization/batch", json=body, headers=tenant(sandbox))
    assert resp.status_code == 200
    results = resp.json()
    assert [r["Login"] for r in results] == ["amr-1", "amr-2"]
    assert all(loc["Success"] for r in results for loc in r["Locations"])
    assert [r["ErrorMessage"] for r in results] == [None, None]
    assert {login: loc.x for login, loc in sandbox.latest().items()} == {"amr-1": 2, "amr-2": 3}
    assert all(loc.batch for loc in sandbox.locations())
    assert sandbox.stats.auth_calls == {}


async def test_batch_unknown_login(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    body = [
        {"Login": "ghost", "Locations": [location(), location()]},
        {"Login": "amr-1", "Locations": [location()]},
    ]
    resp = await http.post("/v3/localization/batch", json=body, headers=tenant(sandbox))
    ghost, known = resp.json()
    assert ghost["ErrorMessage"] == "Device not found"
    assert [loc["Success"] for loc in ghost["Locations"]] == [False, False]
    assert known["Locations"][0]["Success"] is True
    assert [loc.login for loc in sandbox.locations()] == ["amr-1"]


async def test_batch_validation_names_device(
    sandbox: TwinzoSandbox, http: httpx.AsyncClient
) -> None:
    body = [
        {"Login": "amr-1", "Locations": [location()]},
        {"Login": "amr-2", "Locations": [location(), location(Z="high")]},
    ]
    resp = await http.post("/v3/localization/batch", json=body, headers=tenant(sandbox))
    assert resp.status_code == 400
    assert "device[1].location[1].Z" in resp.json()["ErrorMessage"]
    resp = await http.post("/v3/localization/batch", json=body, headers=tenant(sandbox, Branch="x"))
    assert resp.status_code == 403


# -- faults -------------------------------------------------------------------------


async def test_fault_503(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    sandbox.set_faults(error_rate=1.0)
    resp = await http.post("/v3/authorization/authenticate", json={})
    assert resp.status_code == 503
    assert sandbox.stats.faults_injected["error_503"] == 1
    assert sandbox.stats.status_counts[503] == 1


async def test_fault_429_with_retry_after(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    token = await authenticate(http)
    sandbox.set_faults(rate_429=1.0, retry_after_s=2.5)
    resp = await localize(http, sandbox, token, [location()])
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2.5"
    sandbox.set_faults(retry_after_s=3)
    resp = await localize(http, sandbox, token, [location()])
    assert resp.headers["Retry-After"] == "3"
    assert sandbox.stats.faults_injected["rate_429"] == 2


async def test_fault_latency(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    sandbox.faults.latency_ms = 150
    started = time.perf_counter()
    resp = await http.post("/v3/authorization/authenticate", json={})
    assert time.perf_counter() - started >= 0.14
    assert resp.status_code == 400
    assert sandbox.stats.faults_injected["latency"] == 1


async def test_fault_reject_token(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    token = await authenticate(http)
    sandbox.set_faults(reject_token_rate=1.0)
    assert (await localize(http, sandbox, token, [location()])).status_code == 401
    sandbox.set_faults(reject_token_rate=0.0)
    assert (await localize(http, sandbox, token, [location()])).status_code == 200
    assert sandbox.stats.faults_injected["reject_token"] == 1


async def test_fault_location_failure(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    sandbox.set_faults(location_failure_rate=1.0)
    resp = await localize(http, sandbox, await authenticate(http), [location(), location()])
    assert resp.status_code == 200
    assert [r["ErrorMessage"] for r in resp.json()["Locations"]] == ["Injected failure"] * 2
    assert sandbox.locations() == []
    assert sandbox.stats.faults_injected["location_failure"] == 2


async def test_faults_are_deterministic_per_seed() -> None:
    outcomes: list[list[bool]] = []
    for _ in range(2):
        async with make_sandbox() as sb, httpx.AsyncClient(base_url=sb.url) as http:
            sb.set_faults(location_failure_rate=0.5)
            resp = await localize(http, sb, await authenticate(http), [location()] * 20)
            outcomes.append([r["Success"] for r in resp.json()["Locations"]])
    assert outcomes[0] == outcomes[1]
    assert 0 < sum(outcomes[0]) < 20


def test_set_faults_validates() -> None:
    sb = make_sandbox()
    with pytest.raises(ValueError, match="error_rate"):
        sb.set_faults(error_rate=2)
    with pytest.raises(ValueError, match="bogus"):
        sb.set_faults(bogus=1)
    assert sb.faults.error_rate == 0


# -- server lifetime, bounds and admin ----------------------------------------------


async def test_non_loopback_bind_is_refused() -> None:
    sb = make_sandbox(host="0.0.0.0")
    with pytest.raises(ValueError, match="allow_remote"):
        await sb.start()
    with pytest.raises(RuntimeError):
        _ = sb.url


async def test_localhost_and_port_zero() -> None:
    sb = make_sandbox(host="localhost", port=0)
    url = await sb.start()
    try:
        assert url == sb.url
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
    finally:
        await sb.stop()
    await sb.stop()
    with pytest.raises(RuntimeError):
        _ = sb.url


async def test_recorded_locations_are_bounded() -> None:
    sb = TwinzoSandbox(
        SandboxConfig(), client=CLIENT, password=PASSWORD, api_key=API_KEY, max_recorded=3
    )
    async with sb, httpx.AsyncClient(base_url=sb.url) as http:
        token = await authenticate(http, "any-login")
        await localize(http, sb, token, [location(X=float(i)) for i in range(5)])
    assert [loc.x for loc in sb.locations()] == [2.0, 3.0, 4.0]
    assert sb.latest()["any-login"].x == 4.0
    assert sb.stats.accepted == 5


async def test_unknown_route_and_method(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v3/nothing")
    assert resp.status_code == 404
    assert "ErrorMessage" in resp.json()
    resp = await http.get("/v3/localization")
    assert resp.status_code == 405
    assert "POST" in resp.headers["Allow"]


async def test_admin_endpoints(sandbox: TwinzoSandbox, http: httpx.AsyncClient) -> None:
    token = await authenticate(http)
    resp = await http.post("/sandbox/faults", json={"error_rate": 1, "latency_ms": 5})
    assert resp.status_code == 200
    assert resp.json()["error_rate"] == 1
    assert sandbox.faults.error_rate == 1
    assert sandbox.faults.latency_ms == 5
    assert (await localize(http, sandbox, token, [location()])).status_code == 503
    resp = await http.post("/sandbox/faults", json={"error_rate": 2})
    assert resp.status_code == 400
    assert "error_rate" in resp.json()["ErrorMessage"]
    resp = await http.post("/sandbox/faults", json={"bogus": 1})
    assert resp.status_code == 400
    assert (await http.post("/sandbox/faults", json=[1])).status_code == 400
    resp = await http.post("/sandbox/faults", json={"error_rate": 0})
    assert (await http.get("/sandbox/faults")).json() == resp.json() == sandbox.faults.model_dump()
    assert (await localize(http, sandbox, token, [location()])).status_code == 200

    assert (await http.post("/sandbox/expire-tokens", json={})).status_code == 200
    assert (await localize(http, sandbox, token, [location()])).status_code == 401

    stats = (await http.get("/sandbox/stats")).json()
    assert stats == sandbox.stats.as_dict()
    assert stats["status_counts"] == {"200": 2, "401": 1, "503": 1}
    assert stats["accepted"] == 1
    assert stats["requests"] == 4


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
