"""Fuzzing of every payload parser and of `Bridge.handle` (hypothesis).

Properties, for arbitrary bytes, near-valid vendor payloads with hostile field
values, byte-level mutations of valid payloads, deep nesting, huge numbers,
NaN/Inf and 1 MB payloads:

- no exception escapes a parser, and `handle` never needs its internal-error net;
- a parser returns a `Reading` (finite coordinates, sane battery and timestamp),
  a `StatusOnly`, or a `Rejection` whose reason is one of a fixed set, with a detail;
- `handle` returns one known outcome per message, and every message is either
  counted in an outcome or waiting in the outbox (`received == outcomes + pending`);
- whatever reaches the outbox serialises to the JSON twinzo gets.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator
from typing import Any, cast

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtp_console.bridge.parse import (
    Parser,
    Reading,
    Rejection,
    StatusOnly,
    parse_ati,
    parse_generic,
    parse_hitech,
)
from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import GenericFields, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, LogLine, OpsLog, Subscription
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.sandbox_schema import parse_locations

#: Every reason a parser may give.
PARSER_REASONS = frozenset(
    {
        "invalid_json",
        "not_object",
        "missing_id",
        "not_in_fleet",
        "disabled",
        "no_pose",
        "bad_pose",
        "wrong_type",
        "non_finite",
        "missing_position",
        "bad_timestamp",
    }
)
#: Every reason `Bridge.handle` may give; `internal_error` (an exception it caught) is a bug.
BRIDGE_REASONS = PARSER_REASONS | {
    "oversize",
    "duplicate",
    "out_of_order",
    "out_of_bounds",
    "out_of_range",
    "clock_ahead",
    "clock_behind",
}
BRIDGE_OUTCOMES = frozenset(
    {"queued", "unknown_device", "status_only"} | {f"rejected:{r}" for r in BRIDGE_REASONS}
)
#: Vendor ids the fuzzed payloads use; the bridge maps some of them.
IDS = ["r1", "r2", "ati_amr_001", "hitech-amr-001", "7", " r1 ", ""]
DEVICE_MAP = {"r1": "tug-1", "r2": "tug-2", "ati_amr_001": "tug-3", "hitech-amr-001": "tug-4"}
DEVICE_MAP["7"] = "tug-7"
_TS_LIMIT_MS = 2**53
#: The bridge's receive clock in these tests (2027-01-15): fuzzed stamps fall around it.
FUZZ_NOW_S = 1_800_000_000.0

# -- strategies ----------------------------------------------------------------------

#: Vendor stamps (unix s): mostly near the bridge's clock, some years off either way.
_stamp_s = st.one_of(st.floats(FUZZ_NOW_S - 600, FUZZ_NOW_S + 600), st.floats(1.6e9, 1.9e9))

_HOSTILE_STRINGS = [
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "nan",
    "-inf",
    "Infinity",
    "0x10",
    "1_000",
    " 12.5 ",
    "",
    " ",
    "١٢",  # Arabic-Indic digits: float() accepts them
    "9" * 5000,
    "1" + "0" * 400,
    "\x00",
    "\ud800",  # a lone surrogate: JSON-escapable, not valid UTF-8
]

_numberish = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, -(2**63) - 1]),
    st.floats(),  # NaN, ±Inf, subnormals, ±0.0
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from(_HOSTILE_STRINGS),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)

_json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), _numberish
)
_any_json = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=15,
)
_field = st.one_of(_numberish, _any_json)
_vendor_id = st.one_of(st.sampled_from(IDS), st.integers(min_value=-5, max_value=10), _field)


_good_number = st.one_of(
    st.floats(-1e5, 1e5), st.integers(-100_000, 100_000), st.floats(-1e5, 1e5).map(str)
)
_good_battery = st.floats(0, 100) | st.integers(0, 100)
#: Values a corrupted field takes: anything, with the numbers that broke things before.
_hostile = st.one_of(
    _field, st.sampled_from([1e300, -1e300, 1e308, 2**53, 2**63, 2**64, -1, 10**400, -(10**400)])
)

Path = tuple[str | int, ...]


def _paths(node: Any, prefix: Path = ()) -> list[Path]:
    """Every key path in a JSON tree (containers included)."""
    found: list[Path] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*prefix, key))
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.append((*prefix, i))
            found += _paths(value, (*prefix, i))
    return found


def _parent(body: Any, path: Path) -> Any:
    node = body
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def corrupted(draw: st.DrawFn, template: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid body with 0-3 of its fields (nested ones too) deleted or made hostile."""
    body = draw(template)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(body, path)
        if draw(st.integers(0, 3)) == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_hostile)
    return body


@st.composite
def _ati_template(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.sampled_from([3, 6]))
    body: dict[str, Any] = {
        "sherpa_name": draw(st.sampled_from(IDS)),
        "mode": draw(st.sampled_from(["fleet", "Fleet", " FLEET "])),
        "pose": draw(st.lists(_good_number, min_size=size, max_size=size)),
        "battery_status": draw(_good_battery),
    }
    if draw(st.booleans()):
        body["disabled"] = False
    return body


@st.composite
def _hitech_template(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    id_key = draw(st.sampled_from(["device_id", "amr_id", "id", None]))
    if id_key is not None:  # else the id comes from the topic
        body[id_key] = draw(st.sampled_from(IDS))
    coords = {"x": draw(_good_number), "y": draw(_good_number)}
    if draw(st.booleans()):
        coords["z"] = draw(_good_number)
    layout = draw(st.sampled_from(["nested", "flat", "status"]))
    if layout == "nested":
        body["position"] = coords
    elif layout == "flat":
        body.update(coords)
    else:
        body["status"] = draw(st.sampled_from(["idle", "charging"]))
    body["battery"] = draw(_good_battery)
    if draw(st.booleans()):
        body["timestamp"] = int(draw(_stamp_s) * 1000)
    return body


#: `generic` layouts whose templates below are valid payloads.
GENERIC_LAYOUTS = [
    GenericFields(),
    GenericFields(id="data.0.id", x="pos.x", y="pos.y", z="pos.z", battery="bat", timestamp="ts"),
    GenericFields(id="data.0.id", x="pos.x", y="pos.y", timestamp="ts", timestamp_unit="s"),
    GenericFields(x="p.0", y="p.1", timestamp="t", id_topic_level=2),
]


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, creating dicts (and lists for numeric parts) on the way."""
    parts = path.split(".")
    node: Any = body
    for part, following in itertools.pairwise(parts):
        empty: Any = [] if following.isdigit() else {}
        if isinstance(node, list):
            index = int(part)
            node.extend([None] * (index + 1 - len(node)))
            node[index] = node[index] if node[index] is not None else empty
            node = node[index]
        else:
            node = node.setdefault(part, empty)
    if isinstance(node, list):
        node.extend([None] * (int(parts[-1]) + 1 - len(node)))
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


@st.composite
def _generic_template(draw: st.DrawFn, fields: GenericFields) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if fields.id_topic_level is None:
        _put(body, fields.id, draw(st.sampled_from(IDS)))
    _put(body, fields.x, draw(_good_number))
    _put(body, fields.y, draw(_good_number))
    if fields.z:
        _put(body, fields.z, draw(_good_number))
    if fields.battery:
        _put(body, fields.battery, draw(_good_battery))
    if fields.timestamp:
        seconds = draw(_stamp_s)
        _put(
            body, fields.timestamp, seconds if fields.timestamp_unit == "s" else int(seconds * 1000)
        )
    return body


@st.composite
def ati_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """ATI status objects: valid ones with a few fields broken."""
    return draw(corrupted(_ati_template()))


@st.composite
def hitech_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """HiTech position/battery/status objects, nested or flat, with a few fields broken."""
    return draw(corrupted(_hitech_template()))


def generic_bodies(fields: GenericFields) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads of a `generic` layout with a few fields broken."""
    return corrupted(_generic_template(fields))


_PATHS = [
    "id",
    "x",
    "y",
    "z",
    "ts",
    "bat",
    "a.b",
    "data.0.id",
    "pos.x",
    "pos.y",
    "0",
    "",
    "a..b",
    ".",
]
_KEYS = ["id", "x", "y", "z", "ts", "bat", "a", "b", "data", "pos", "0", ""]


@st.composite
def generic_fields(draw: st.DrawFn) -> GenericFields:
    """Any valid `generic` field configuration."""
    optional = st.none() | st.sampled_from(_PATHS)
    return GenericFields(
        id=draw(st.sampled_from(_PATHS)),
        x=draw(st.sampled_from(_PATHS)),
        y=draw(st.sampled_from(_PATHS)),
        z=draw(optional),
        battery=draw(optional),
        timestamp=draw(optional),
        timestamp_unit=draw(st.sampled_from(["ms", "s"])),
        id_topic_level=draw(st.none() | st.integers(0, 6)),
    )


_generic_bodies = st.recursive(
    _numberish | st.sampled_from(IDS),
    lambda inner: (
        st.dictionaries(st.sampled_from(_KEYS), inner, max_size=6) | st.lists(inner, max_size=4)
    ),
    max_leaves=20,
)

_topics = st.one_of(
    st.sampled_from(
        [
            "ati_fm/sherpa/status",
            "hitech/amr/r1/position",
            "hitech/amr/r2/battery",
            "hitech/amr//position",
            "hitech",
            "",
            "/" * 20,
        ]
    ),
    st.text(max_size=40),
)


def _encode(value: Any, style: int) -> bytes:
    """JSON in a few dialects: strict, with NaN/Infinity literals, or as text."""
    if style == 0:
        try:
            return orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError):
            style = 1  # ints beyond 64 bits, lone surrogates: fall back
    text = json.dumps(value, allow_nan=True, ensure_ascii=style == 1)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, payloads: st.SearchStrategy[bytes]) -> bytes:
    """A payload with a few byte-level edits: flips, cuts, insertions, repeats."""
    data = bytearray(draw(payloads))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            i = min(at, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "insert":
            chunk = draw(
                st.binary(max_size=6) | st.sampled_from([b"[", b"{", b'"', b"\\", b"1e400"])
            )
            data[at:at] = chunk
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


def _bodies_as_bytes(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.builds(_encode, bodies, st.integers(0, 2))


ati_payloads = _bodies_as_bytes(ati_bodies())
hitech_payloads = _bodies_as_bytes(hitech_bodies())
random_generic_payloads = _bodies_as_bytes(_generic_bodies)
any_json_payloads = _bodies_as_bytes(_any_json)


def generic_payloads(fields: GenericFields) -> st.SearchStrategy[bytes]:
    """Payloads of a `generic` layout with a few fields broken."""
    return _bodies_as_bytes(generic_bodies(fields))


def payloads_for(structured: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Structured payloads, their mutations, arbitrary JSON and arbitrary bytes."""
    return st.one_of(
        structured,
        structured,
        mutated(structured),
        any_json_payloads,
        st.binary(max_size=300),
    )


# -- checks --------------------------------------------------------------------------


def check_result(result: object) -> None:
    """What any parser may return."""
    if isinstance(result, Rejection):
        assert result.reason in PARSER_REASONS, result
        assert isinstance(result.detail, str)
        assert result.detail, result
        assert result.vendor_id is None or isinstance(result.vendor_id, str)
        return
    if isinstance(result, Reading):
        assert isinstance(result.vendor_id, str)
        assert result.vendor_id
        assert result.vendor_id == result.vendor_id.strip()
        for value in (result.x, result.y, result.z):
            assert isinstance(value, float)
            assert math.isfinite(value)
        assert result.battery is None or 0 <= result.battery <= 100
        ts = result.timestamp_ms
        assert ts is None or (isinstance(ts, int) and 0 <= ts < _TS_LIMIT_MS), result
        return
    assert isinstance(result, StatusOnly), result
    assert isinstance(result.vendor_id, str)
    assert result.vendor_id
    assert result.battery is None or 0 <= result.battery <= 100
    assert result.status is None or isinstance(result.status, str)


GENERIC_DEFAULT = parse_generic(
    GenericFields(id="data.0.id", x="pos.x", y="pos.y", z="z", battery="bat", timestamp="ts")
)
PARSERS: dict[str, Parser] = {
    "ati": parse_ati,
    "hitech": parse_hitech,
    "generic": GENERIC_DEFAULT,
}

# -- parsers -------------------------------------------------------------------------

_FAST = settings(max_examples=600)


@_FAST
@given(topic=_topics, payload=payloads_for(ati_payloads))
def test_ati_parser_never_raises(topic: str, payload: bytes) -> None:
    check_result(parse_ati(topic, payload))


@_FAST
@given(topic=_topics, payload=payloads_for(hitech_payloads))
def test_hitech_parser_never_raises(topic: str, payload: bytes) -> None:
    check_result(parse_hitech(topic, payload))


@st.composite
def _generic_case(draw: st.DrawFn) -> tuple[GenericFields, bytes]:
    fields = draw(st.sampled_from(GENERIC_LAYOUTS))
    return fields, draw(payloads_for(generic_payloads(fields)))


@_FAST
@given(case=_generic_case(), topic=_topics)
def test_generic_parser_never_raises(case: tuple[GenericFields, bytes], topic: str) -> None:
    fields, payload = case
    check_result(parse_generic(fields)(topic, payload))


@settings(max_examples=300)
@given(fields=generic_fields(), topic=_topics, payload=payloads_for(random_generic_payloads))
def test_generic_parser_any_field_paths(fields: GenericFields, topic: str, payload: bytes) -> None:
    check_result(parse_generic(fields)(topic, payload))


@settings(max_examples=300)
@given(payload=st.binary(max_size=2000))
def test_arbitrary_bytes_every_parser(payload: bytes) -> None:
    for parse in PARSERS.values():
        check_result(parse("hitech/amr/r1/position", payload))


def test_reason_set_is_reached() -> None:
    """The fixed set is not a guess: each parser reason is produced by some payload."""
    seen: set[str] = set()
    samples = [
        b"{",
        b"[1]",
        b'{"mode": "fleet"}',
        b'{"sherpa_name": "r1", "mode": "manual"}',
        b'{"sherpa_name": "r1", "mode": "fleet", "disabled": true}',
        b'{"sherpa_name": "r1", "mode": "fleet"}',
        b'{"sherpa_name": "r1", "mode": "fleet", "pose": [1, 2]}',
        b'{"sherpa_name": "r1", "mode": "fleet", "pose": [true, 2, 3]}',
        b'{"sherpa_name": "r1", "mode": "fleet", "pose": ["nan", 2, 3]}',
        b'{"device_id": "r1", "position": {"x": 1}}',
        b'{"device_id": "r1", "x": 1, "y": 2, "timestamp": 1e300}',
    ]
    for payload in samples:
        for parse in PARSERS.values():
            result = parse("t", payload)
            check_result(result)
            if isinstance(result, Rejection):
                seen.add(result.reason)
    assert seen == PARSER_REASONS


# -- hostile shapes, explicitly --------------------------------------------------------


def _deep() -> Iterator[bytes]:
    yield b"[" * 10_000
    yield b"[" * 10_000 + b"]" * 10_000
    yield b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    yield b'{"sherpa_name":"r1","mode":"fleet","pose":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    yield b'{"device_id":"r1","position":' + b'{"x":' * 5_000 + b"1" + b"}" * 5_000 + b"}"
    # Within orjson's depth limit: valid JSON, then the parsers' own walks.
    yield b'{"data":' + b"[" * 1000 + b"]" * 1000 + b',"pos":{"x":1,"y":2}}'
    yield b'{"sherpa_name":' + b"[" * 1000 + b"]" * 1000 + b"}"


def _huge_numbers() -> Iterator[bytes]:
    for number in (b"1e400", b"-1e400", b"1" + b"0" * 400, b"-" + b"9" * 5000, b"1e-400", b"0.0"):
        yield b'{"sherpa_name":"r1","mode":"fleet","pose":[' + number + b",1,0]}"
        yield b'{"sherpa_name":"r1","mode":"fleet","pose":[1,1,0],"battery_status":' + number + b"}"
        yield b'{"device_id":"r1","x":' + number + b',"y":2,"timestamp":' + number + b"}"
        yield b'{"device_id":' + number + b',"x":1,"y":2}'
        yield b'{"data":[{"id":"r1"}],"pos":{"x":1,"y":' + number + b'},"ts":' + number + b"}"
        yield number


def _non_finite() -> Iterator[bytes]:
    for literal in (b"NaN", b"Infinity", b"-Infinity", b'"NaN"', b'"inf"', b'"-Infinity"'):
        yield b'{"sherpa_name":"r1","mode":"fleet","pose":[' + literal + b",1,0]}"
        yield b'{"device_id":"r1","position":{"x":1,"y":' + literal + b"}}"
        yield b'{"device_id":"r1","x":1,"y":2,"timestamp":' + literal + b"}"
        yield b'{"data":[{"id":"r1"}],"pos":{"x":' + literal + b',"y":1}}'


def _megabyte() -> Iterator[bytes]:
    mb = 1_000_000
    yield b'{"sherpa_name":"' + b"x" * mb + b'","mode":"fleet","pose":[1,2,3]}'
    yield b'{"device_id":"r1","position":{"x":1,"y":2},"pad":"' + b"y" * mb + b'"}'
    yield b"[" + b"1," * (mb // 2) + b"1]"
    yield b'{"sherpa_name":"r1","mode":"fleet","pose":[' + b"1," * (mb // 2) + b"1]}"
    yield b'{"device_id":"r1","x":"' + b"9" * mb + b'","y":2}'
    yield bytes(range(256)) * (mb // 256)
    yield b"\xff" * mb


HOSTILE = {
    "deep": list(_deep()),
    "huge_numbers": list(_huge_numbers()),
    "non_finite": list(_non_finite()),
    "megabyte": list(_megabyte()),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_hostile_payloads(kind: str, parser: str) -> None:
    for payload in HOSTILE[kind]:
        check_result(PARSERS[parser]("hitech/amr/r1/position", payload))


def test_deep_nesting_is_a_rejection() -> None:
    for parse in PARSERS.values():
        result = parse("t", b"[" * 10_000)
        assert isinstance(result, Rejection)
        assert result.reason == "invalid_json"


def test_timestamp_that_overflows_is_rejected() -> None:
    """Regression: a finite timestamp in seconds overflowed `int()` (OverflowError)."""
    parse = parse_generic(GenericFields(timestamp="ts", timestamp_unit="s"))
    result = parse("t", b'{"id": "r1", "x": 1, "y": 2, "ts": 1e308}')
    assert isinstance(result, Rejection)
    assert result.reason == "bad_timestamp"
    huge = parse_hitech("t", b'{"device_id": "r1", "x": 1, "y": 2, "timestamp": 1e300}')
    assert isinstance(huge, Rejection)
    assert huge.reason == "bad_timestamp"


# -- Bridge.handle -------------------------------------------------------------------


class _NeverCalled:
    """A stand-in twinzo client: `handle` does no I/O, so touching it is a failure."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Bridge.handle used the twinzo client ({name})")


def _plant(
    fmt: str,
    *,
    max_payload_bytes: int = 65_536,
    huge_affine: bool = False,
    bounds: bool = True,
    generic: GenericFields = GENERIC_LAYOUTS[1],
) -> PlantConfig:
    affine = (
        {"a": 1e300, "d": 1e300}
        if huge_affine
        else {"a": 999.74, "b": 22.88, "c": 22.88, "d": -999.74}
    )
    floor = {"x_min": -5e7, "x_max": 5e7, "y_min": -5e7, "y_max": 5e7}
    return PlantConfig.model_validate(
        {
            "name": f"Fuzz {fmt}",
            "format": fmt,
            "device_map": DEVICE_MAP,
            "twinzo": {"sector_id": 1},
            "affine": affine,
            "bounds": floor if bounds else None,
            "drop_out_of_bounds": True,
            "max_payload_bytes": max_payload_bytes,
            "generic": generic.model_dump(),
        }
    )


def make_bridge(plant: PlantConfig) -> tuple[Bridge, Subscription]:
    """A bridge whose client must never be used, and a reader of what it logs."""
    bus = Bus()
    subscription = bus.subscribe(maxsize=100_000)
    bridge = Bridge(
        plant,
        TwinzoConfig(),
        cast(TwinzoClient, _NeverCalled()),
        PlantState(plant.name),
        OpsLog(bus, 10.0),
        address=("127.0.0.1", 1),
        wall_clock=lambda: FUZZ_NOW_S,
    )
    return bridge, subscription


def log_lines(subscription: Subscription) -> list[LogLine]:
    """The log lines published so far."""
    return [event for event in subscription.drain() if isinstance(event, LogLine)]


def run_messages(
    bridge: Bridge, messages: list[tuple[str, bytes]], on_outcome: Callable[[str], None]
) -> None:
    """Hand `messages` to `bridge` as the MQTT source does, then check the accounting."""
    counters = bridge.state.counters
    for i, (topic, payload) in enumerate(messages):
        counters.received += 1  # the source's queue counts arrivals
        outcome = bridge.handle(topic, payload, now=1000.0 + i)
        assert outcome in BRIDGE_OUTCOMES, outcome
        on_outcome(outcome)
    # Each message ended in exactly one outcome or waits in the outbox (latest wins).
    assert counters.received == counters.outcomes.total() + len(bridge.outbox)
    assert counters.pending == len(bridge.outbox)
    assert "rejected:internal_error" not in counters.outcomes
    for location in bridge.outbox.take_all():
        body = location.payload(bridge.plant.twinzo.sector_id)
        # What the poster sends must pass twinzo's SDK types, as strictly as the sandbox
        # checks them (integer Battery or null, integer Timestamp near now, float32 X/Y/Z).
        parse_locations(orjson.loads(orjson.dumps([body])), now_s=FUZZ_NOW_S)
        for coordinate in (body["X"], body["Y"], body["Z"]):
            assert coordinate is not None and math.isfinite(coordinate), body
        assert body["Battery"] is None or type(body["Battery"]) is int, body


_FORMATS = ("ati_sherpa", "generic", "hitech")


@st.composite
def plant_and_messages(draw: st.DrawFn) -> tuple[PlantConfig, list[tuple[str, bytes]]]:
    """A plant of any format and a burst of messages for it (some for other formats)."""
    fmt = draw(st.sampled_from(_FORMATS))
    layout = draw(st.sampled_from(GENERIC_LAYOUTS))
    max_bytes = draw(st.sampled_from([64, 65_536, 65_536, 65_536]))
    plant = _plant(fmt, max_payload_bytes=max_bytes, generic=layout)
    own = {
        "ati_sherpa": ati_payloads,
        "hitech": hitech_payloads,
        "generic": generic_payloads(layout),
    }[fmt]
    # Mostly the plant's own (near-valid) payloads, so messages get far into the pipeline.
    kinds = {
        "own": own,
        "mutated": mutated(own),
        "other": st.one_of(ati_payloads, hitech_payloads, any_json_payloads),
        "bytes": st.binary(max_size=200),
    }
    messages = []
    for kind in draw(st.lists(st.sampled_from([*["own"] * 7, *kinds]), min_size=1, max_size=25)):
        messages.append((draw(_topics), draw(kinds[kind])))
    return plant, messages


@settings(max_examples=400)
@given(case=plant_and_messages())
def test_bridge_handle_accounts_for_every_message(
    case: tuple[PlantConfig, list[tuple[str, bytes]]],
) -> None:
    plant, messages = case
    bridge, subscription = make_bridge(plant)
    run_messages(bridge, messages, lambda _outcome: None)
    assert all(line.text for line in log_lines(subscription))


def test_bridge_handle_hostile_payloads() -> None:
    """Deep, huge, non-finite and 1 MB payloads, with the size cap on and effectively off."""
    seen: set[str] = set()
    for fmt in _FORMATS:
        for max_bytes in (65_536, 4_000_000):
            bridge, _log = make_bridge(_plant(fmt, max_payload_bytes=max_bytes))
            messages = [("hitech/amr/r1/position", p) for group in HOSTILE.values() for p in group]
            run_messages(bridge, messages, seen.add)
    assert "rejected:oversize" in seen
    assert "rejected:invalid_json" in seen


def test_affine_overflow_is_rejected_not_posted() -> None:
    """Regression: a finite vendor value × a large affine gave ±inf, which went to the outbox."""
    # No bounds: nothing else may catch it.
    bridge, _log = make_bridge(_plant("hitech", huge_affine=True, bounds=False))
    outcome = bridge.handle("t", b'{"device_id": "r1", "x": 1e300, "y": 1e300}', now=1.0)
    assert outcome == "rejected:non_finite"
    assert len(bridge.outbox) == 0


def test_every_bridge_outcome_kind_is_reachable() -> None:
    """The accounting test is not vacuous: queued, unknown, status and rejections all occur."""
    seen: set[str] = set()
    bridge, _log = make_bridge(_plant("hitech"))
    messages = [
        ("t", b'{"device_id": "r1", "x": 1, "y": 2, "timestamp": 1800000000000}'),
        ("t", b'{"device_id": "r1", "x": 1, "y": 3, "timestamp": 1800000000000}'),
        ("t", b'{"device_id": "r1", "x": 1, "y": 3, "timestamp": 1799999999999}'),
        ("t", b'{"device_id": "r1", "x": 1, "y": 3, "timestamp": 1800000001000}'),
        ("t", b'{"device_id": "r1", "x": 1, "y": 3, "timestamp": 1900000000000}'),
        ("t", b'{"device_id": "r1", "x": 1, "y": 3, "timestamp": 1700000000000}'),
        ("t", b'{"device_id": "r1", "x": 1e300, "y": 3, "timestamp": 1800000002}'),
        ("t", b'{"device_id": "zz", "x": 1, "y": 2}'),
        ("t", b'{"device_id": "r2", "status": "idle", "battery": 50}'),
        ("t", b'{"device_id": "r2", "x": 6e4, "y": 6e4}'),
        ("t", b"nope"),
    ]
    run_messages(bridge, messages, seen.add)
    assert seen == {
        "queued",
        "rejected:duplicate",
        "rejected:out_of_order",
        "rejected:clock_behind",
        "rejected:out_of_range",
        "unknown_device",
        "status_only",
        "rejected:out_of_bounds",
        "rejected:invalid_json",
    }
    # r1's three accepted reports (the third restamped: its clock ran a year ahead) share
    # one outbox slot: two were replaced before any post.
    assert bridge.state.counters.outcomes["coalesced"] == 2
    assert bridge.state.clock_restamped == {"ahead": 1}
