"""Property fuzzing of the `vda5050` parser and of `Bridge.handle` on a VDA 5050 plant.

Schema-shaped bodies with a few fields broken, their byte mutations, arbitrary
JSON and bytes, on VDA topics and junk ones: the parser returns a known shape
or a rejection from a fixed set, and every message the bridge takes ends in
exactly one counted outcome.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtp_console.bridge.formats import parser_for
from dtp_console.bridge.parse import Reading, Rejection, StatusOnly
from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from tests.fuzz.test_parsers_fuzz import (
    FUZZ_NOW_S,
    PARSER_REASONS,
    _bodies_as_bytes,
    corrupted,
    payloads_for,
)

VDA_REASONS = PARSER_REASONS | {"bad_topic", "wrong_version", "unsupported_topic", "id_mismatch"}
BRIDGE_VDA_REASONS = VDA_REASONS | {
    "oversize",
    "duplicate",
    "out_of_order",
    "out_of_range",
    "clock_ahead",
    "clock_behind",
    "not_localized",
    "low_localization",
    "unknown_map",
}
SERIALS = ["AGV-1", "AGV-2", "AGV-9", " AGV-1", "", "x\x1b[2J", "ロボ"]


def _plant() -> PlantConfig:
    body = {
        "name": "VDA fuzz",
        "format": "vda5050",
        "device_map": {"acme/AGV-1": "tug-1", "acme/AGV-2": "tug-2"},
        "twinzo": {"sector_id": 1},
        "affine": {"A": 1000, "D": 1000},
        "min_post_interval_ms": 0,
        "vda5050": {"min_localization_score": 0.3, "map_sectors": {"m1": 2}},
    }
    return ConsoleConfig.model_validate({"plants": [body]}).plants[0]


PLANT = _plant()
PARSE = parser_for(PLANT)


def _iso_text(seconds: int, fraction: str, zone: str) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + fraction + zone


_iso = st.builds(
    _iso_text,
    st.integers(int(FUZZ_NOW_S) - 600, int(FUZZ_NOW_S) + 600),
    st.sampled_from(["", ".1", ".123", ".123456789"]),
    st.sampled_from(["Z", "+01:00", "-0530", ""]),
)


@st.composite
def _vda_template(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "headerId": draw(st.integers(0, 50)),
        "timestamp": draw(_iso),
        "version": "2.1.0",
        "manufacturer": "acme",
        "serialNumber": draw(st.sampled_from(SERIALS)),
        "connectionState": draw(st.sampled_from(["ONLINE", "OFFLINE", "CONNECTIONBROKEN"])),
    }
    name = draw(st.sampled_from(["agvPosition", "mobileRobotPosition", None]))
    if name is not None:
        body[name] = {
            "x": draw(st.floats(-500, 500)),
            "y": draw(st.floats(-500, 500)),
            "theta": draw(st.floats(-4, 4)),
            "mapId": draw(st.sampled_from(["m1", "m2", ""])),
            "positionInitialized": draw(st.booleans()),
            "localizationScore": draw(st.floats(0, 1)),
        }
    if draw(st.booleans()):
        body["batteryState"] = {"batteryCharge": draw(st.floats(0, 100))}
        body["errors"] = [{"errorType": "e", "errorLevel": "FATAL"}] * draw(st.integers(0, 3))
        body["safetyState"] = {"eStop": draw(st.sampled_from(["NONE", "MANUAL"]))}
        body["operatingMode"] = draw(st.sampled_from(["AUTOMATIC", "MANUAL"]))
        body["driving"] = draw(st.booleans())
    return body


_topics = st.one_of(
    st.builds(
        "uagv/v2/acme/{}/{}".format,
        st.sampled_from(SERIALS),
        st.sampled_from(["visualization", "state", "connection", "order"]),
    ),
    st.sampled_from(["uagv/v1/acme/AGV-1/state", "a/b", "", "uagv/v2/acme/AGV-1/state/x"]),
    st.text(max_size=40),
)
vda_payloads = payloads_for(_bodies_as_bytes(corrupted(_vda_template())))


def _check(result: object) -> None:
    if isinstance(result, Rejection):
        assert result.reason in VDA_REASONS, result
        assert result.detail
        return
    assert isinstance(result, Reading | StatusOnly), result
    assert result.vendor_id and result.vendor_id.count("/") == 1
    assert result.battery is None or 0 <= result.battery <= 100
    assert result.report is not None
    if isinstance(result, Reading):
        assert math.isfinite(result.x) and math.isfinite(result.y)


@settings(max_examples=800)
@given(topic=_topics, payload=vda_payloads)
def test_vda_parser_never_raises(topic: str, payload: bytes) -> None:
    _check(PARSE(topic, payload))


@settings(max_examples=200)
@given(st.lists(st.tuples(_topics, vda_payloads), max_size=30))
def test_bridge_accounts_for_every_vda_message(messages: list[tuple[str, bytes]]) -> None:
    state = PlantState(PLANT.name)
    bridge = Bridge(
        PLANT,
        TwinzoConfig(),
        cast(TwinzoClient, object()),
        state,
        OpsLog(Bus(), 10.0),
        address=("127.0.0.1", 1),
        wall_clock=lambda: FUZZ_NOW_S,
    )
    for topic, payload in messages:
        state.counters.received += 1
        outcome = bridge.handle(topic, payload, now=1.0)
        assert outcome in {"queued", "unknown_device", "status_only"} or (
            outcome.startswith("rejected:") and outcome[9:] in BRIDGE_VDA_REASONS
        ), outcome
    for location in bridge.outbox.take_all():
        bridge.outbox.done(location, 1.0)
        state.counters.count("forwarded")
    assert state.counters.received == state.counters.outcomes.total()
    sequence = state.sequence
    assert sequence is not None and sequence.lost >= 0


@pytest.mark.parametrize("depth", [100, 10_000])
def test_deep_nesting_is_a_rejection(depth: int) -> None:
    payload = b'{"agvPosition": ' + b"[" * depth + b"]" * depth + b"}"
    result = PARSE("uagv/v2/acme/AGV-1/visualization", payload)
    assert isinstance(result, Rejection)
