"""What a poster needs from a twinzo client, as a `Protocol`, and what a post returns.

`TwinzoClient` is the one implementation that talks HTTP; the bridge's poster
depends only on this, so a test can hand it any conforming client (one that
records, refuses or raises) without subclassing the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dtp_console.twinzo.wire import LocationBody

__all__ = ["LocalizationClient", "PostResult"]


@dataclass(frozen=True, slots=True)
class PostResult:
    """The outcome of posting one device's locations."""

    ok: bool
    """Every location was accepted."""
    status: int | None
    """HTTP status; None when no response arrived."""
    latency_ms: float
    error: str | None = None
    """Short reason for logs (`503`, `timeout`, twinzo's ErrorMessage, …)."""
    retryable: bool = False
    """Timeouts, connection errors, 5xx and 429: worth another attempt later."""
    retry_after_s: float | None = None
    auth_failed: bool = False
    """Authentication of the device failed (the location was not sent)."""
    failed_locations: int = 0

    @property
    def code(self) -> str:
        """Status for display: the HTTP code or the failure kind."""
        return str(self.status) if self.status is not None else (self.error or "error")


class LocalizationClient(Protocol):
    """twinzo's localization calls for device logins.

    By contract neither post raises for an HTTP or network failure: each returns
    a `PostResult` saying what happened and whether trying again makes sense.
    """

    async def post_device(
        self,
        login: str,
        password: str,
        locations: Sequence[LocationBody],
        *,
        branch: str | None = None,
    ) -> PostResult:
        """`POST /v3/localization` for one device (authenticating it as needed)."""
        ...

    async def post_batch(
        self, branch: str, devices: Mapping[str, Sequence[LocationBody]]
    ) -> dict[str, PostResult]:
        """`POST /v3/localization/batch` for many devices; one result per login."""
        ...

    async def ensure_token(self, login: str, password: str) -> None:
        """Hold a valid token for `login` (fetch or refresh it); raises when that fails."""
        ...

    def forget_tokens(self, logins: Iterable[str]) -> None:
        """Drop the cached tokens of `logins` (a changed password): the next call authenticates."""
        ...
