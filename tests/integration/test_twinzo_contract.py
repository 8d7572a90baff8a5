"""Every vendor format over a real mosquitto into the sandbox's SDK-typed validation.

The sandbox checks each location as tdevkit's `LocationContract` types it (an
integer `Battery` or null, integer millisecond `Timestamp` near now, single
precision X/Y/Z). A float battery or a stamp in seconds that slips through
would come back as a 400 and a `failed:` outcome — these tests would see it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from dtp_console.config.model import PlantConfig, TwinzoConfig
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.integration.conftest import SANDBOX_CREDENTIALS
from tests.integration.test_bridge import (  # noqa: F401 - start_bridge is a fixture
    Running,
    _config,
    _publish,
    _until,
    start_bridge,
)
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

YEAR_MS = 365 * 86_400_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ati_messages() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    topic = "ati_fm/sherpa/status"

    def ati(vendor: str, x: float, **extra: Any) -> tuple[str, bytes]:
        body = {"sherpa_name": vendor, "mode": "fleet", "pose": [x, 2.0, 0.1], **extra}
        return topic, orjson.dumps(body)

    plant: dict[str, Any] = {}
    return plant, [
        ati("ati_amr_001", 1.0, battery_status=79.4),
        ati("ati_amr_002", 2.0),  # no battery: none is sent, never an invented 100
    ]


def _hitech_messages() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    now = _now_ms()

    def hitech(vendor: str, stamp: float, x: float, **extra: Any) -> tuple[str, bytes]:
        body = {"device_id": vendor, "timestamp": stamp, "position": {"x": x, "y": 5.0}, **extra}
        return f"hitech/amr/{vendor}/position", orjson.dumps(body)

    plant = {
        "format": "hitech",
        "device_map": {"amr-1": "tugger-03", "amr-2": "tugger-04"},
        "affine": {},
        "twinzo": {"sector_id": 1},
    }
    return plant, [
        hitech("amr-1", now / 1000, 100.0, battery=79.6),  # seconds
        hitech("amr-1", now + 10 * YEAR_MS, 110.0, battery=80),  # a clock years ahead
        hitech("amr-2", now * 1000 + 1000, 200.0),  # microseconds, no battery
    ]


def _generic_messages() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    now = _now_ms()

    def generic(vendor: str, stamp: float, x: float, bat: Any) -> tuple[str, bytes]:
        body = {"id": vendor, "ts": stamp, "x": x, "y": 7.0, "bat": bat}
        return f"fleet/{vendor}/pos", orjson.dumps(body)

    plant = {
        "format": "generic",
        "generic": {"id": "id", "x": "x", "y": "y", "battery": "bat", "timestamp": "ts"},
        "broker": {"topics": ["fleet/+/pos"]},
        "device_map": {"g-1": "tugger-07", "g-2": "tugger-08"},
        "affine": {},
        "twinzo": {"sector_id": 3},
    }
    return plant, [
        generic("g-1", now * 1_000_000, 1.0, 55.5),  # nanoseconds
        generic("g-2", now, 2.0, "n/a"),
    ]


FORMATS = {"ati": _ati_messages, "hitech": _hitech_messages, "generic": _generic_messages}


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_every_format_lands_typed_as_the_sdk_says(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: Callable[[PlantConfig, TwinzoConfig], Awaitable[Running]],  # noqa: F811
    fmt: str,
    batch: bool,
) -> None:
    overrides, messages = FORMATS[fmt]()
    twinzo = dict(overrides.get("twinzo", {"sector_id": 2}))
    if batch:
        twinzo |= {"batch": True, "branch": sandbox.branch_guid}
    plant, twinzo_cfg = _config(mosquitto.port, **{**overrides, "twinzo": twinzo})
    running = await start_bridge(plant, twinzo_cfg)
    state = running.bridge.state
    await _until(lambda: state.mqtt == "connected")
    started_ms = _now_ms()
    await _publish(mosquitto.port, messages)
    await _until(lambda: state.counters.received == len(messages) and state.counters.pending == 0)
    outcomes = state.counters.outcomes
    assert state.counters.received == outcomes.total(), outcomes
    assert not [k for k in outcomes if k.startswith(("failed:", "rejected:"))], outcomes
    assert outcomes["forwarded"] + outcomes["coalesced"] == len(messages)
    assert sandbox.stats.status_counts.get(400, 0) == 0
    latest = sandbox.latest()
    expected = {
        "ati": {"tugger-05-old": 79, "tugger-06-old": None},
        "hitech": {"tugger-03": 80, "tugger-04": None},
        "generic": {"tugger-07": 56, "tugger-08": None},
    }[fmt]
    assert set(latest) == set(expected)
    for location in latest.values():
        assert location.battery is None or type(location.battery) is int
        # Seconds, micro- and nanoseconds, and a clock years ahead all land near now.
        assert started_ms - 5_000 <= location.timestamp <= _now_ms() + 1_000
        assert location.batch is batch
    assert {loc.login: loc.battery for loc in latest.values()} == expected


async def test_the_sandbox_refuses_a_float_battery_precisely(sandbox: TwinzoSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=5.0) as http:
        auth = await http.post(
            "/v3/authorization/authenticate",
            json={
                "client": SANDBOX_CREDENTIALS["client"],
                "login": "tugger-03",
                "password": SANDBOX_CREDENTIALS["password"],
            },
            headers={"Api-Key": SANDBOX_CREDENTIALS["api_key"]},
        )
        assert auth.status_code == 200
        token = auth.json()
        headers = {
            "Client": token["Client"],
            "Branch": token["Branch"],
            "Token": token["Token"],
            "Api-Key": SANDBOX_CREDENTIALS["api_key"],
        }
        location = {
            "Timestamp": _now_ms(),
            "SectorId": 1,
            "X": 1.0,
            "Y": 2.0,
            "Z": 0.0,
            "Interval": 1000,
            "Battery": 79.0,
            "IsMoving": False,
            "LocalizationAreas": [],
            "NoGoAreas": [],
        }
        single = await http.post("/v3/localization", json=[location], headers=headers)
        assert single.status_code == 400
        assert single.json()["ErrorMessage"] == (
            "location[0].Battery: expected a JSON integer 0..100 (byte?), got 79.0"
        )
        batch_headers = {k: v for k, v in headers.items() if k != "Token"}
        batch = await http.post(
            "/v3/localization/batch",
            json=[{"Login": "tugger-03", "Locations": [location]}],
            headers=batch_headers,
        )
        assert batch.status_code == 400
        assert (
            "device[0].location[0].Battery: expected a JSON integer"
            in (batch.json()["ErrorMessage"])
        )
        for good in (79, None):
            ok = await http.post(
                "/v3/localization", json=[{**location, "Battery": good}], headers=headers
            )
            assert ok.status_code == 200
            assert ok.json()["Locations"][0]["Success"] is True
        seconds = await http.post(
            "/v3/localization",
            json=[{**location, "Battery": 5, "Timestamp": _now_ms() // 1000}],
            headers=headers,
        )
        assert seconds.status_code == 400
        assert (
            "location[0].Timestamp: expected unix milliseconds" in (seconds.json()["ErrorMessage"])
        )
