"""Per-device twinzo token cache: single-flight authentication, refresh ahead of expiry.

Tokens belong to one device login and are never shared. However many posts
wait on a login, one authentication is in flight for it. A token close to
its expiry keeps being used while one background refresh replaces it; an
expired token is dropped and the login authenticates again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dtp_console.state import EngineState

__all__ = ["AuthError", "Token", "TokenCache"]


@dataclass(frozen=True, slots=True)
class Token:
    """A device token and what came with it."""

    value: str
    client: str
    """Client GUID returned by authentication (the `Client` header)."""
    branch: str
    """Branch GUID returned by authentication (the `Branch` header)."""
    expires_at: float
    """Epoch seconds."""
    obtained_at: float
    """Epoch seconds."""

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at:.0f}, value=***)"


class AuthError(Exception):
    """Authentication or refresh failed."""

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        """twinzo's `Retry-After` (429/503 on authentication), in seconds."""

    @property
    def code(self) -> str:
        """The HTTP status, or the failure kind when there was no response."""
        return str(self.status) if self.status is not None else self.message


Authenticate = Callable[[str, str], Awaitable[Token]]
Refresh = Callable[[Token], Awaitable[Token]]


class TokenCache:
    """Tokens by login with single-flight authentication and refresh-ahead."""

    def __init__(
        self,
        authenticate: Authenticate,
        refresh: Refresh,
        *,
        refresh_ahead_s: float = 60.0,
        state: EngineState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authenticate = authenticate
        self._refresh = refresh
        self._refresh_ahead = refresh_ahead_s
        self._state = state or EngineState()
        self._clock = clock
        self._tokens: dict[str, Token] = {}
        self._inflight: dict[str, asyncio.Task[Token]] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    def peek(self, login: str) -> Token | None:
        """The cached token of `login`, without any I/O."""
        return self._tokens.get(login)

    def _refresh_due(self, token: Token, now: float) -> bool:
        # Never refresh more often than half a lifetime, whatever refresh_ahead says.
        window = min(self._refresh_ahead, (token.expires_at - token.obtained_at) / 2)
        return now >= token.expires_at - window

    async def get(self, login: str, password: str) -> Token:
        """A valid token for `login`; raises `AuthError` when authentication fails."""
        now = self._clock()
        token = self._tokens.get(login)
        if token is not None and now >= token.expires_at:
            del self._tokens[login]
            token = None
        if token is not None:
            if self._refresh_due(token, now) and login not in self._inflight:
                self._start(login, self._renew(login, password, token))
            return token
        task = self._inflight.get(login) or self._start(login, self._login(login, password))
        return await asyncio.shield(task)

    def invalidate(self, login: str, token: Token) -> None:
        """Forget `token` after twinzo refused it (a newer token for the login is kept)."""
        if self._tokens.get(login) is token:
            del self._tokens[login]
            self._state.auth_for(login).status = "none"

    def clear(self) -> None:
        """Forget every token."""
        self._tokens.clear()

    def _start(self, login: str, work: Awaitable[Token]) -> asyncio.Task[Token]:
        async def _run() -> Token:
            return await work

        task = asyncio.get_running_loop().create_task(_run(), name=f"twinzo-auth:{login}")
        self._inflight[login] = task
        task.add_done_callback(lambda t: self._done(login, t))
        return task

    def _done(self, login: str, task: asyncio.Task[Token]) -> None:
        if self._inflight.get(login) is task:
            del self._inflight[login]
        if not task.cancelled():
            task.exception()  # retrieved here so a failure nobody awaited is not reported

    async def _login(self, login: str, password: str) -> Token:
        auth = self._state.auth_for(login)
        auth.status = "refreshing"
        try:
            token = await self._authenticate(login, password)
        except AuthError as exc:
            auth.status, auth.last_result, auth.last_error = "failed", exc.code, exc.message
            raise
        except asyncio.CancelledError:
            # Shut down mid-flight: not a failure, but never left `refreshing`.
            auth.status = "none"
            raise
        except Exception as exc:
            # Whatever went wrong, the login is `failed` and callers get an AuthError;
            # the type name only, as an exception's text may quote a header (a secret).
            kind = f"internal error: {type(exc).__name__}"
            auth.status, auth.last_result, auth.last_error = "failed", "error", kind
            raise AuthError(None, kind, retryable=False) from None
        auth.authentications += 1
        return self._store(login, token)

    async def _renew(self, login: str, password: str, old: Token) -> Token:
        auth = self._state.auth_for(login)
        auth.status = "refreshing"
        try:
            token = await self._refresh(old)
            auth.refreshes += 1
        except asyncio.CancelledError:
            auth.status = "valid" if self._tokens.get(login) is old else "none"
            raise
        except Exception:
            # The refresh endpoint refused (or failed); a fresh authentication may still work.
            return await self._login(login, password)
        return self._store(login, token)

    def _store(self, login: str, token: Token) -> Token:
        self._tokens[login] = token
        auth = self._state.auth_for(login)
        auth.status, auth.expires_at, auth.last_result, auth.last_error = (
            "valid",
            token.expires_at,
            "200",
            None,
        )
        return token
