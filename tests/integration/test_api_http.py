"""The registry routes over real HTTP: auth, roles, tenants, validation, delete modes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import ApiRig, api_rig

pytestmark = pytest.mark.integration


def _twin(twin_id: str, tenant: str = "plant-a", **extra: Any) -> dict[str, Any]:
    return {
        "@id": twin_id,
        "tenant": tenant,
        "metadata": {"domain": ["logistics"]},
        "interfaces": {"api": "http://127.0.0.1:9000", "data_streams": ["MQTT:dtp/lift/alerts"]},
        "dependencies": {"static": [], "dynamic": []},
        **extra,
    }


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    async with api_rig(tmp_path) as rig:
        yield rig


async def test_no_token_or_an_unknown_one_is_401_and_the_document_is_open(rig: ApiRig) -> None:
    async with rig.session.get(rig.url + "/api/registry/twins") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"] == "a bearer token is required"
    status, body = await rig.call(
        "GET", "/api/registry/twins", headers={"Authorization": "Bearer test-token-nope"}
    )
    assert (status, body["error"]) == (401, "unknown token")
    status, body = await rig.call(
        "GET", "/api/registry/twins", headers={"Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert status == 401
    status, doc = await rig.call("GET", "/api/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    assert rig.server.stats.unauthorized == 3


async def test_upsert_get_list_and_history(rig: ApiRig) -> None:
    status, body = await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:L1"))
    assert status == 201
    assert body["created"] is True
    assert body["twin"]["id"] == "dt:L1"
    assert body["twin"]["name"] == "dt:L1"
    assert body["twin"]["status"] == "instantiated"
    status, body = await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:L1"))
    assert (status, body["created"], body["changed"]) == (200, False, False)

    status, body = await rig.call(
        "PATCH", "/api/registry/twins/dt:L1", "operator-a", json={"status": "active"}
    )
    assert status == 200
    assert body["twin"]["status"] == "active"
    status, body = await rig.call("GET", "/api/registry/twins/dt:L1", "viewer-a")
    assert status == 200
    assert [(h["from_status"], h["to_status"]) for h in body["status_history"]] == [
        (None, "instantiated"),
        ("instantiated", "active"),
    ]
    assert body["status_history"][1]["reason"] == "api: operator-a"
    status, body = await rig.call("GET", "/api/registry/twins?tenant=plant-a", "viewer-a")
    assert [t["id"] for t in body["twins"]] == ["dt:L1"]
    status, body = await rig.call("GET", "/api/registry/twins?status=deprecated", "viewer-a")
    assert body["twins"] == []
    # The CLI's service sees the same twin: nothing implemented twice.
    assert (await rig.registry.get("dt:L1")).status == "active"


async def test_every_write_is_an_event_log_entry_naming_the_label(rig: ApiRig) -> None:
    await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:L1"))
    await rig.call("POST", "/api/registry/twins", "viewer-a", json=_twin("dt:L2"))
    await rig.call("DELETE", "/api/registry/twins/dt:L1", "operator-a")
    bodies = [(r.source, r.body) for r in rig.records]
    assert bodies == [
        (
            "api",
            {
                "token": "operator-a",
                "method": "POST",
                "path": "/api/registry/twins",
                "status": 201,
                "target": "dt:L1",
            },
        ),
        (
            "api",
            {
                "token": "viewer-a",
                "method": "POST",
                "path": "/api/registry/twins",
                "status": 403,
                "target": None,
            },
        ),
        (
            "api",
            {
                "token": "operator-a",
                "method": "DELETE",
                "path": "/api/registry/twins/dt:L1",
                "status": 200,
                "target": "dt:L1",
            },
        ),
    ]
    assert not any("test-token" in str(r.body) for r in rig.records)


async def test_roles(rig: ApiRig) -> None:
    status, body = await rig.call("POST", "/api/registry/twins", "viewer-a", json=_twin("dt:L1"))
    assert status == 403
    assert "needs operator" in body["error"]
    status, _ = await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:L1"))
    assert status == 201
    for method in ("PATCH", "DELETE"):
        status, _ = await rig.call(method, "/api/registry/twins/dt:L1", "viewer-a", json={})
        assert status == 403
    status, _ = await rig.call("POST", "/api/registry/services", "viewer-a", json={})
    assert status == 403
    status, _ = await rig.call("GET", "/api/registry/twins/dt:L1", "viewer-a")
    assert status == 200


async def test_a_token_never_sees_or_changes_another_tenants_twins(rig: ApiRig) -> None:
    assert (await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:A")))[
        0
    ] == 201
    assert (
        await rig.call("POST", "/api/registry/twins", "operator-b", json=_twin("dt:B", "plant-b"))
    )[0] == 201

    _, body = await rig.call("GET", "/api/registry/twins", "viewer-a")
    assert [t["id"] for t in body["twins"]] == ["dt:A"]
    _, body = await rig.call("GET", "/api/registry/twins", "admin-all")
    assert [t["id"] for t in body["twins"]] == ["dt:A", "dt:B"]
    status, body = await rig.call("GET", "/api/registry/twins?tenant=plant-b", "viewer-a")
    assert status == 403
    status, body = await rig.call("GET", "/api/registry/twins/dt:B", "viewer-a")
    assert (status, body["error"]) == (404, "no twin 'dt:B' is registered")
    for method, path, payload in (
        ("PATCH", "/api/registry/twins/dt:B", {"status": "active"}),
        ("DELETE", "/api/registry/twins/dt:B", None),
        ("DELETE", "/api/registry/twins/dt:B?soft=true", None),
    ):
        status, _ = await rig.call(method, path, "operator-a", json=payload)
        assert status == 404, (method, path)
    # Writing into a tenant it lacks, or over another tenant's id.
    status, body = await rig.call(
        "POST", "/api/registry/twins", "operator-a", json=_twin("dt:A2", "plant-b")
    )
    assert status == 403
    assert "plant-b" in body["error"]
    status, _ = await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:B"))
    assert status == 409
    twin_b = await rig.registry.get("dt:B")
    assert (twin_b.tenant, twin_b.status) == ("plant-b", "instantiated")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_twin("dt:X", interfaces={"api": "not-a-url"}), "interfaces.api"),
        (_twin("dt:X", interfaces={"data_streams": ["nocolon"]}), "interfaces.data_streams"),
        (_twin("dt:X", dependencies={"static": ["has space"]}), "dependencies.static"),
        (_twin("dt:X", colour="red"), "colour"),
        ({"tenant": "plant-a"}, "@id"),
        (_twin("dt:X", tenant="two words"), "tenant"),
        (_twin("has space"), "@id"),
        (_twin("dt:X", metadata={"status": "retired"}), "metadata.status"),
        (_twin("dt:X", name="   "), "name"),
        (_twin("dt:X", interfaces="http://x"), "interfaces"),
    ],
)
async def test_invalid_twins_are_422_naming_the_field(
    rig: ApiRig, payload: dict[str, Any], field: str
) -> None:
    status, body = await rig.call("POST", "/api/registry/twins", "operator-a", json=payload)
    assert status == 422, body
    assert body["problems"][0]["field"] == field
    assert body["error"].startswith(field)


async def test_malformed_bodies_are_4xx_with_a_reason(rig: ApiRig) -> None:
    post = "/api/registry/twins"
    status, body = await rig.call("POST", post, "operator-a", data=b"{nope")
    assert status == 415  # no JSON content type
    headers = {"Content-Type": "application/json"}
    status, body = await rig.call("POST", post, "operator-a", data=b"{nope", headers=headers)
    assert status == 400
    assert body["error"].startswith("body is not valid JSON")
    status, body = await rig.call("POST", post, "operator-a", json=[1, 2])
    assert (status, body["problems"][0]["field"]) == (422, "body")
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = await rig.call("POST", post, "operator-a", data=deep, headers=headers)
    assert status == 400
    huge = b'{"@id": "dt:X", "metadata": {"blob": "' + b"x" * 2_000_000 + b'"}}'
    status, body = await rig.call(
        "POST", post, "operator-a", data=io.BytesIO(huge), headers=headers
    )
    assert status == 413
    assert "api.max_body_bytes" in body["error"]
    status, body = await rig.call("GET", "/api/registry/twins?status=zombie", "viewer-a")
    assert status == 400
    status, body = await rig.call("GET", "/api/nowhere", "viewer-a")
    assert status == 404
    assert "error" in body
    status, body = await rig.call("PUT", "/api/registry/twins", "operator-a", json={})
    assert status == 405
    big = _twin("dt:Y", metadata={"n": 2**70})
    status, body = await rig.call("POST", post, "operator-a", json=big)
    assert status in (201, 400), body  # beyond 64-bit integers: kept exactly, or refused
    status, _ = await rig.call("GET", "/api/registry/twins", "viewer-a")
    assert status == 200
    assert rig.server.stats.server_errors == 0


async def test_hostile_ids_round_trip_as_data(rig: ApiRig) -> None:
    for twin_id in ("dt:\x1b[31mred\x1b[0m", "dt:[bold]x[/bold]", "dt:Lüft_ü✓", "dt:a/b%2Fc"):
        status, body = await rig.call(
            "POST", "/api/registry/twins", "operator-a", json=_twin(twin_id)
        )
        assert status == 201, (twin_id, body)
        assert body["twin"]["id"] == twin_id
    _, body = await rig.call("GET", "/api/registry/twins", "viewer-a")
    assert len(body["twins"]) == 4
    # By id over a percent-encoded path.
    from urllib.parse import quote

    status, body = await rig.call("GET", "/api/registry/twins/" + quote("dt:Lüft_ü✓"), "viewer-a")
    assert (status, body["twin"]["id"]) == (200, "dt:Lüft_ü✓")
    assert rig.server.stats.server_errors == 0


async def test_patch(rig: ApiRig) -> None:
    await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:L1"))
    await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:L0"))
    path = "/api/registry/twins/dt:L1"
    status, body = await rig.call(
        "PATCH",
        path,
        "operator-a",
        json={
            "interfaces": {"api": "https://lift.example:8443"},
            "dependencies": {"static": ["dt:L0", "dt:Nope"]},
        },
    )
    assert status == 200
    assert body["twin"]["interfaces"]["api"] == "https://lift.example:8443"
    assert body["twin"]["unknown_dependencies"] == ["dt:Nope"]
    status, body = await rig.call("PATCH", path, "operator-a", json={})
    assert (status, body["error"]) == (422, "body: nothing to change")
    status, body = await rig.call("PATCH", path, "operator-a", json={"status": "gone"})
    assert (status, body["problems"][0]["field"]) == (422, "status")
    status, body = await rig.call("PATCH", path, "operator-a", json={"status": "deprecated"})
    assert status == 200
    status, body = await rig.call("PATCH", path, "operator-a", json={"status": "instantiated"})
    assert status == 409
    assert "cannot go from deprecated to instantiated" in body["error"]
    status, _ = await rig.call(
        "PATCH", "/api/registry/twins/dt:None", "operator-a", json={"status": "active"}
    )
    assert status == 404


async def test_soft_and_hard_delete(rig: ApiRig) -> None:
    await rig.call("POST", "/api/registry/twins", "operator-a", json=_twin("dt:L1"))
    status, body = await rig.call("DELETE", "/api/registry/twins/dt:L1?soft=true", "operator-a")
    assert (status, body["deleted"], body["twin"]["status"]) == (200, "soft", "deprecated")
    status, body = await rig.call("GET", "/api/registry/twins/dt:L1", "viewer-a")
    assert (status, body["twin"]["status"]) == (200, "deprecated")
    status, body = await rig.call("DELETE", "/api/registry/twins/dt:L1?soft=maybe", "operator-a")
    assert status == 400
    status, body = await rig.call("DELETE", "/api/registry/twins/dt:L1", "operator-a")
    assert (status, body["deleted"]) == (200, "hard")
    status, _ = await rig.call("GET", "/api/registry/twins/dt:L1", "viewer-a")
    assert status == 404
    assert await rig.registry.find("dt:L1") is None
    status, _ = await rig.call("DELETE", "/api/registry/twins/dt:L1", "operator-a")
    assert status == 404


async def test_services(rig: ApiRig) -> None:
    service = {
        "id": "svc:lift-ui",
        "category": "ui",
        "tenant": "plant-a",
        "health": "healthy",
        "interfaces": {"api": "http://127.0.0.1:9001"},
    }
    status, body = await rig.call("POST", "/api/registry/services", "operator-a", json=service)
    assert status == 201
    assert (body["service"]["name"], body["service"]["health"]) == ("svc:lift-ui", "healthy")
    status, body = await rig.call(
        "POST", "/api/registry/services", "operator-a", json={**service, "health": "degraded"}
    )
    assert (status, body["service"]["health"]) == (200, "degraded")
    other = {"id": "svc:b", "category": "api", "tenant": "plant-b"}
    assert (await rig.call("POST", "/api/registry/services", "operator-b", json=other))[0] == 201
    _, body = await rig.call("GET", "/api/registry/services", "viewer-a")
    assert [s["id"] for s in body["services"]] == ["svc:lift-ui"]
    _, body = await rig.call("GET", "/api/registry/services?category=api", "admin-all")
    assert [s["id"] for s in body["services"]] == ["svc:b"]
    status, body = await rig.call(
        "POST", "/api/registry/services", "operator-a", json={**service, "health": "fine"}
    )
    assert (status, body["problems"][0]["field"]) == (422, "health")
    status, body = await rig.call(
        "POST", "/api/registry/services", "operator-a", json={"id": "svc:x"}
    )
    assert (status, body["problems"][0]["field"]) == (422, "category")
    status, _ = await rig.call(
        "POST", "/api/registry/services", "operator-a", json={**other, "tenant": "plant-a"}
    )
    assert status == 409


async def test_without_a_running_registry_routes_answer_503(tmp_path: Path) -> None:
    async with api_rig(tmp_path, registry=False) as rig:
        status, body = await rig.call("GET", "/api/registry/twins", "viewer-a")
        assert status == 503
        assert "registry is not running" in body["error"]
