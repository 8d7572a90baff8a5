"""Token cache: expiry, refresh-ahead, single flight for concurrent waiters, invalidation."""

from __future__ import annotations

import asyncio

import pytest

from dtp_console.state import EngineState
from dtp_console.twinzo.tokens import AuthError, Token, TokenCache


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class _Server:
    """Counts calls; each issued token lives `lifetime` seconds from the clock's now."""

    def __init__(self, clock: _Clock, lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.auth_calls: dict[str, int] = {}
        self.refresh_calls = 0
        self.delay = 0.0
        self.fail_with: AuthError | None = None
        self.refresh_fails = False
        self._n = 0

    def _token(self, login: str) -> Token:
        self._n += 1
        return Token(
            value=f"{login}-{self._n}",
            client="c",
            branch="b",
            expires_at=self.clock.now + self.lifetime,
            obtained_at=self.clock.now,
        )

    async def authenticate(self, login: str, _password: str) -> Token:
        self.auth_calls[login] = self.auth_calls.get(login, 0) + 1
        await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return self._token(login)

    async def refresh(self, token: Token) -> Token:
        self.refresh_calls += 1
        if self.refresh_fails:
            raise AuthError(401, "refresh refused", retryable=False)
        return self._token(token.value.split("-")[0])


def _cache(server: _Server, clock: _Clock, state: EngineState | None = None) -> TokenCache:
    return TokenCache(
        server.authenticate, server.refresh, refresh_ahead_s=60.0, state=state, clock=clock
    )


async def test_cached_until_expiry_then_reauthenticates() -> None:
    clock = _Clock()
    server = _Server(clock)
    cache = _cache(server, clock)
    first = await cache.get("a", "pw")
    assert await cache.get("a", "pw") is first
    clock.now += 3601  # expired: dropped, fresh authentication
    second = await cache.get("a", "pw")
    assert second is not first
    assert server.auth_calls == {"a": 2}


async def test_tokens_are_per_login() -> None:
    clock = _Clock()
    server = _Server(clock)
    cache = _cache(server, clock)
    a, b = await cache.get("a", "pw"), await cache.get("b", "pw")
    assert a.value != b.value
    assert server.auth_calls == {"a": 1, "b": 1}


async def test_concurrent_waiters_share_one_authentication() -> None:
    clock = _Clock()
    server = _Server(clock)
    server.delay = 0.05
    cache = _cache(server, clock)
    tokens = await asyncio.gather(*(cache.get("a", "pw") for _ in range(50)))
    assert server.auth_calls == {"a": 1}
    assert len({t.value for t in tokens}) == 1


async def test_refresh_ahead_uses_current_token_while_refreshing() -> None:
    clock = _Clock()
    server = _Server(clock)
    state = EngineState()
    cache = _cache(server, clock, state)
    first = await cache.get("a", "pw")
    clock.now += 3600 - 30  # inside the 60 s refresh window, still valid
    assert await cache.get("a", "pw") is first  # no waiting on the refresh
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert server.refresh_calls == 1
    fresh = await cache.get("a", "pw")
    assert fresh is not first
    assert state.auth["a"].status == "valid"
    assert state.auth["a"].refreshes == 1


async def test_refresh_window_never_exceeds_half_the_lifetime() -> None:
    clock = _Clock()
    server = _Server(clock, lifetime=20.0)  # shorter than refresh_ahead_s
    cache = _cache(server, clock)
    first = await cache.get("a", "pw")
    clock.now += 5
    assert await cache.get("a", "pw") is first
    await asyncio.sleep(0)
    assert server.refresh_calls == 0  # not refreshing on every use


async def test_failed_refresh_falls_back_to_authentication() -> None:
    clock = _Clock()
    server = _Server(clock)
    server.refresh_fails = True
    cache = _cache(server, clock)
    await cache.get("a", "pw")
    clock.now += 3590
    await cache.get("a", "pw")
    for _ in range(5):
        await asyncio.sleep(0)
    assert server.refresh_calls == 1
    assert server.auth_calls == {"a": 2}


async def test_auth_failure_raises_for_every_waiter_and_records_state() -> None:
    clock = _Clock()
    server = _Server(clock)
    server.delay = 0.01
    server.fail_with = AuthError(401, "invalid client, login or password", retryable=False)
    state = EngineState()
    cache = _cache(server, clock, state)
    results = await asyncio.gather(
        *(cache.get("a", "pw") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, AuthError) and r.status == 401 for r in results)
    assert server.auth_calls == {"a": 1}
    assert state.auth["a"].status == "failed"
    assert state.auth["a"].last_result == "401"


async def test_invalidate_keeps_a_newer_token() -> None:
    clock = _Clock()
    server = _Server(clock)
    cache = _cache(server, clock)
    old = await cache.get("a", "pw")
    cache.invalidate("a", old)
    new = await cache.get("a", "pw")
    assert new is not old
    cache.invalidate("a", old)  # a late 401 for the old token must not drop the new one
    assert cache.peek("a") is new


def test_token_repr_hides_the_value() -> None:
    token = Token("secret-token-value", "c", "b", 2.0, 1.0)
    assert "secret-token-value" not in repr(token)
    with pytest.raises(AttributeError):
        token.value = "x"  # type: ignore[misc]
