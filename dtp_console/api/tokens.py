"""Bearer tokens: made here, stored as `sha256:` hashes, checked in constant time.

A token is 32 random bytes (urlsafe base64, `dtp_` prefix so a leaked one is
recognisable in a scan). Only its SHA-256 is configured; comparing digests with
`hmac.compare_digest` against every configured hash leaks neither which token
matched nor how much of it did.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from dtp_console.api.config import ALL_TENANTS, ApiToken, Role

__all__ = ["ROLE_RANK", "Principal", "TokenTable", "hash_token", "new_token"]

_PREFIX = "dtp_"
#: A presented token longer than this is refused before hashing (a header can be 8 KiB).
_MAX_TOKEN_CHARS = 256

ROLE_RANK: dict[Role, int] = {"viewer": 0, "operator": 1, "admin": 2}


def new_token() -> str:
    """A fresh random token (`dtp_` + 43 urlsafe characters)."""
    return _PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """`sha256:<hex>` of the token, as configured in `api.tokens[].hash`."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a configured token's label, role and tenants."""

    label: str
    role: Role
    tenants: frozenset[str]

    def can(self, role: Role) -> bool:
        """Whether this token's role is at least `role`."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def all_tenants(self) -> bool:
        """Granted every tenant (`"*"`)."""
        return ALL_TENANTS in self.tenants

    def sees(self, tenant: str) -> bool:
        """Whether `tenant`'s twins and services are visible (and changeable) to it."""
        return self.all_tenants or tenant in self.tenants


class TokenTable:
    """The configured tokens; `lookup` maps a presented token to its `Principal`."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._entries = [
            (
                bytes.fromhex(t.hash.removeprefix("sha256:")),
                Principal(t.label, t.role, frozenset(t.tenants)),
            )
            for t in tokens
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, presented: str) -> Principal | None:
        """The principal of `presented`, or None; every configured hash is compared."""
        if not presented or len(presented) > _MAX_TOKEN_CHARS:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest) and found is None:
                found = principal
        return found
