"""Any exception on the twinzo path ends in a counted outcome and a settled state.

The client, the token cache and the poster each catch what the layer below
could throw (not only httpx's transport errors), and report a short type name,
never the exception's text (which may quote a header such as the API key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

import httpx
import pytest
from pydantic import SecretStr

from dtp_console.bridge.outbox import Location, Outbox
from dtp_console.bridge.poster import Poster
from dtp_console.config.model import ConsoleConfig, TwinzoConfig
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.state import EngineState, PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.protocol import PostResult
from dtp_console.twinzo.tokens import AuthError, Token, TokenCache
from dtp_console.twinzo.wire import LocationBody, location_body

SECRET = "tz-Key-Zx81PqWv4"


async def _never(_token: Token) -> Token:
    raise AssertionError("not called")


async def test_any_exception_from_authentication_leaves_the_login_failed() -> None:
    async def authenticate(_login: str, _password: str) -> Token:
        raise UnicodeEncodeError("ascii", SECRET, 3, 4, "ordinal not in range(128)")

    state = EngineState()
    cache = TokenCache(authenticate, _never, state=state)
    with pytest.raises(AuthError) as caught:
        await cache.get("tugger-01", "pw")
    assert caught.value.message == "internal error: UnicodeEncodeError"
    assert not caught.value.retryable
    assert SECRET not in str(caught.value)
    assert state.auth["tugger-01"].status == "failed"
    assert state.auth["tugger-01"].last_error == "internal error: UnicodeEncodeError"


async def test_cancelled_authentication_is_not_left_refreshing() -> None:
    started = asyncio.Event()

    async def authenticate(_login: str, _password: str) -> Token:
        started.set()
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    state = EngineState()
    cache = TokenCache(authenticate, _never, state=state)
    waiter = asyncio.create_task(cache.get("tugger-01", "pw"))
    await started.wait()
    for task in asyncio.all_tasks():
        if task.get_name() == "twinzo-auth:tugger-01":
            task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert state.auth["tugger-01"].status == "none"


class _Exploding(httpx.AsyncBaseTransport):
    """A transport that raises what no httpx caller expects, quoting a secret."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"boom {request.headers.get('Api-Key')}")


async def test_client_turns_any_request_exception_into_a_counted_result() -> None:
    config = TwinzoConfig(client="demo", api_key=SECRET)
    async with httpx.AsyncClient(transport=_Exploding()) as http:
        client = TwinzoClient(http, config, base_url="http://127.0.0.1:9")
        body = location_body(int(time.time() * 1000), 2, 1.0, 0.0, 0.0, 1000, None, False)
        result = await client.post_device("tugger-01", "pw", [body])
        assert result.auth_failed
        assert result.error == "internal error: RuntimeError"
        assert not result.retryable
        assert client.state.auth["tugger-01"].status == "failed"
        batch = await client.post_batch("branch-guid", {"tugger-01": [body]})
    assert batch["tugger-01"].error == "internal error: RuntimeError"
    assert SECRET not in repr(result) + repr(batch)


class _RaisingClient:
    """A `LocalizationClient` breaking its never-raise contract (a bug), for the poster's
    last line. Not a `TwinzoClient`: the poster depends on the protocol only."""

    async def post_device(
        self,
        login: str,
        password: str,
        locations: Sequence[LocationBody],
        *,
        branch: str | None = None,
    ) -> PostResult:
        raise KeyError(SECRET)

    async def post_batch(
        self, branch: str, devices: Mapping[str, Sequence[LocationBody]]
    ) -> dict[str, PostResult]:
        raise KeyError(SECRET)

    async def ensure_token(self, login: str, password: str) -> None:
        raise KeyError(SECRET)

    def forget_tokens(self, logins: Iterable[str]) -> None:
        return None


def _location(login: str) -> Location:
    return Location(
        login=login,
        vendor_id=login,
        timestamp_ms=int(time.time() * 1000),
        x=1.0,
        y=2.0,
        z=0.0,
        battery=None,
        moving=False,
        interval_ms=1000,
        received_at=time.monotonic(),
    )


@pytest.mark.parametrize("batch", [False, True])
async def test_poster_counts_a_raising_request_as_internal_error(batch: bool) -> None:
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
    bus = Bus()
    lines = bus.subscribe()
    outbox = Outbox(state.counters, 0.0)
    poster = Poster(plant, config.twinzo, _RaisingClient(), outbox, state, OpsLog(bus))
    for login in ("tugger-01", "tugger-02"):
        state.counters.received += 1
        outbox.put(_location(login))
    assert poster.flush(time.monotonic()) == 2
    await asyncio.sleep(0.05)
    assert not poster.busy
    assert state.counters.outcomes["failed:internal_error"] == 2
    assert state.counters.received == state.counters.outcomes.total()
    assert outbox.in_flight == 0, "the devices' slots are free again"
    text = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    assert len(text) == 1
    assert "internal error (KeyError)" in text[0]
    assert "Old Plant" in text[0]
    assert SECRET not in text[0]
