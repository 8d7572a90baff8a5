"""In-memory state of the twinzo sandbox: accepted locations, counters and tokens."""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AcceptedLocation", "SandboxStats", "TokenError", "TokenStore", "now_ms"]


def now_ms() -> int:
    """The current unix time in milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class AcceptedLocation:
    """A location the sandbox accepted (answered with ``Success: true``)."""

    login: str
    sector_id: int | None
    x: float | None
    y: float | None
    z: float | None
    timestamp: int
    """Unix milliseconds, as sent."""
    battery: int | None
    """As sent: an integer 0–100, or None (the device reported none)."""
    is_moving: bool
    interval: int | None
    received_at: float
    """`time.time()` when the request carrying it was handled."""
    batch: bool
    """Whether it came through ``/v3/localization/batch``."""


@dataclass(slots=True)
class SandboxStats:
    """Counters of the twinzo API endpoints (admin endpoints are not counted)."""

    requests: int = 0
    auth_calls: Counter[str] = field(default_factory=Counter)
    """Well-formed authenticate calls per login, successful or not."""
    refresh_calls: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    accepted: int = 0
    """Locations answered ``Success: true``."""
    rejected_locations: int = 0
    """Locations answered ``Success: false`` inside an HTTP 200."""
    faults_injected: Counter[str] = field(default_factory=Counter)
    """By kind: latency, error_503, rate_429, reject_token, location_failure."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (status codes become string keys)."""
        return {
            "requests": self.requests,
            "auth_calls": dict(self.auth_calls),
            "refresh_calls": self.refresh_calls,
            "status_counts": {str(code): n for code, n in sorted(self.status_counts.items())},
            "accepted": self.accepted,
            "rejected_locations": self.rejected_locations,
            "faults_injected": dict(self.faults_injected),
        }


class TokenError(ValueError):
    """A token that is unknown or expired; the message says which."""


@dataclass(slots=True)
class _Token:
    login: str
    expires_ms: int


class TokenStore:
    """Opaque per-login tokens with an expiry.

    A login's older tokens stay valid until they expire, but only the newest
    `per_login` are kept, so memory stays bounded however often a client
    re-authenticates.
    """

    def __init__(self, lifetime_s: float, per_login: int = 8) -> None:
        """Issue tokens valid for `lifetime_s` seconds."""
        self._lifetime_ms = int(lifetime_s * 1000)
        self._per_login = per_login
        self._tokens: dict[str, _Token] = {}
        self._by_login: dict[str, deque[str]] = {}

    def __len__(self) -> int:
        """The number of tokens held (valid or expired)."""
        return len(self._tokens)

    def issue(self, login: str) -> tuple[str, int, int]:
        """A new token for `login`: ``(token, created_ms, expires_ms)``."""
        created = now_ms()
        expires = created + self._lifetime_ms
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(login, expires)
        issued = self._by_login.setdefault(login, deque())
        if len(issued) >= self._per_login:
            self._tokens.pop(issued.popleft(), None)
        issued.append(token)
        return token, created, expires

    def login_for(self, token: str) -> str:
        """The login `token` was issued to; TokenError if unknown or expired."""
        record = self._tokens.get(token)
        if record is None:
            msg = "unknown token"
            raise TokenError(msg)
        if now_ms() >= record.expires_ms:
            msg = "token expired"
            raise TokenError(msg)
        return record.login

    def expire_all(self) -> None:
        """Make every token issued so far expired now."""
        now = now_ms()
        for record in self._tokens.values():
            record.expires_ms = min(record.expires_ms, now)
