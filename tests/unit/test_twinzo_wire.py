"""The twinzo location body we send, against the sandbox's own reading of the SDK contract.

`twinzo.wire` builds and encodes; `twinzo.sandbox_schema` validates, written from
tdevkit's types on its own. These tests decode our bytes with the validator, so a
drift on either side fails here; one test keeps the validator from importing the
encoder (a fake that shares our code would agree with every bug in it).
"""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from dtp_console.bridge.outbox import Location, Outbox
from dtp_console.bridge.poster import Poster
from dtp_console.config.model import ConsoleConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo import wire
from dtp_console.twinzo.protocol import LocalizationClient, PostResult
from dtp_console.twinzo.sandbox_schema import parse_batch, parse_locations
from dtp_console.twinzo.wire import (
    INT32_MAX,
    LocationBody,
    battery_byte,
    encode_batch,
    encode_locations,
    location_body,
)

NOW_MS = 1_765_000_000_000
NOW_S = NOW_MS / 1000


def _body(
    *, x: float = 1234.56, interval_ms: int = 1000, battery: float | None = 79.5
) -> LocationBody:
    return location_body(NOW_MS, 2, x, -7.04, 0.0, interval_ms, battery, True)


def test_encoded_location_is_what_the_sdk_contract_reads() -> None:
    (read,) = parse_locations(orjson.loads(encode_locations([_body()])), now_s=NOW_S)
    assert (read.timestamp, read.sector_id, read.x, read.y, read.z) == (
        NOW_MS,
        2,
        1234.6,
        -7.0,
        0.0,
    )
    assert (read.interval, read.battery, read.is_moving) == (1000, 80, True)


def test_integers_go_as_json_integer_tokens() -> None:
    """A .NET deserializer refuses `80.0` for a `byte?`: the bytes must say `80`."""
    raw = encode_locations([_body()])
    assert b'"Battery":80,' in raw
    assert b'"Interval":1000,' in raw
    assert b'"Timestamp":1765000000000,' in raw


def test_interval_is_capped_to_int32() -> None:
    """A device silent for 25 days would overflow the SDK's `int? Interval`."""
    body = _body(interval_ms=2**40)
    assert body["Interval"] == INT32_MAX
    (read,) = parse_locations([body], now_s=NOW_S)
    assert read.interval == INT32_MAX


@pytest.mark.parametrize(
    ("battery", "sent"),
    [(None, None), (float("nan"), None), (float("inf"), None), (-3.0, 0), (100.4, 100)],
)
def test_battery_is_a_byte_or_null(battery: float | None, sent: int | None) -> None:
    assert battery_byte(battery) == sent
    (read,) = parse_locations([_body(battery=battery)], now_s=NOW_S)
    assert read.battery == sent


def test_batch_encoding_is_one_entry_per_login() -> None:
    devices = {"tugger-01": [_body()], "tugger-02": [_body(x=1.0), _body(x=2.0)]}
    read = parse_batch(orjson.loads(encode_batch(devices)), now_s=NOW_S)
    assert [(login, [loc.x for loc in locs]) for login, locs in read] == [
        ("tugger-01", [1234.6]),
        ("tugger-02", [1.0, 2.0]),
    ]


def test_encode_locations_takes_any_sequence() -> None:
    body = _body()
    assert encode_locations((body,)) == encode_locations([body]) == orjson.dumps([body])


def test_the_sandbox_validator_does_not_use_our_encoder() -> None:
    """The stand-in comes from the contract, never from the client it checks."""
    package = Path(wire.__file__).parent
    for module in sorted(package.glob("sandbox*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert not {"dtp_console.twinzo.wire", "dtp_console.twinzo.client"} & imported, module.name


class _Recording:
    """Any `LocalizationClient` will do for the poster; this one accepts and records."""

    def __init__(self) -> None:
        self.single: list[tuple[str, str | None, list[LocationBody]]] = []
        self.batches: list[tuple[str, dict[str, list[LocationBody]]]] = []

    async def post_device(
        self,
        login: str,
        password: str,
        locations: Sequence[LocationBody],
        *,
        branch: str | None = None,
    ) -> PostResult:
        self.single.append((login, branch, list(locations)))
        return PostResult(ok=True, status=200, latency_ms=1.0)

    async def post_batch(
        self, branch: str, devices: Mapping[str, Sequence[LocationBody]]
    ) -> dict[str, PostResult]:
        self.batches.append((branch, {k: list(v) for k, v in devices.items()}))
        return {login: PostResult(ok=True, status=200, latency_ms=1.0) for login in devices}

    async def ensure_token(self, login: str, password: str) -> None:
        return None

    def forget_tokens(self, logins: Iterable[str]) -> None:
        return None


@pytest.mark.parametrize("batch", [False, True])
async def test_poster_posts_contract_bodies_through_any_conforming_client(batch: bool) -> None:
    config = ConsoleConfig.model_validate(
        {
            "twinzo": {"password": SecretStr("pw"), "api_key": "k"},
            "plants": [
                {
                    "name": "Old Plant",
                    "format": "ati_sherpa",
                    "twinzo": {"sector_id": 2, "branch": "b", "batch": batch},
                }
            ],
        }
    )
    plant = config.plants[0]
    state = PlantState(plant.name)
    outbox = Outbox(state.counters, 0.0)
    client = _Recording()
    checked: LocalizationClient = client  # the protocol, seen by mypy
    poster = Poster(plant, config.twinzo, client, outbox, state, OpsLog(Bus()))
    assert poster.client is checked
    now_ms = int(time.time() * 1000)
    for i, login in enumerate(("tugger-01", "tugger-02")):
        state.counters.received += 1
        outbox.put(Location(login, login, now_ms, 10.0 * i, 2.0, 0.0, 55.5, True, 500, 0.0))
    assert poster.flush(time.monotonic()) == 2
    while poster.busy:
        await asyncio.sleep(0.01)
    assert state.counters.outcomes["forwarded"] == 2
    if batch:
        ((branch, sent),) = client.batches
        assert branch == "b"
    else:
        sent = {login: bodies for login, _, bodies in client.single}
        assert {branch for _, branch, _ in client.single} == {"b"}
    for bodies in sent.values():
        (read,) = parse_locations(orjson.loads(encode_locations(bodies)))
        assert (read.sector_id, read.battery, read.interval) == (2, 56, 500)
    assert set(sent) == {"tugger-01", "tugger-02"}
