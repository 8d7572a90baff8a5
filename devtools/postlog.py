"""Who posted what to the twinzo sandbox: a record of every localization request.

The sandbox cannot tell two consoles apart, but their tokens can: every console
authenticates each login itself, so within a run one token per login is one
console. `PostLog` records `(time, login, token)` for every localization request
(the high-availability tests and the failover benchmark read it).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dtp_console.twinzo.sandbox import TwinzoSandbox

__all__ = ["PostLog"]


@dataclass
class PostLog:
    """Every localization request the sandbox handled: `(time.time(), login, token)`."""

    posts: list[tuple[float, str, str]] = field(default_factory=list)

    @classmethod
    def attach(cls, sandbox: TwinzoSandbox) -> PostLog:
        """Record the posts `sandbox` receives from now on (its token check is wrapped)."""
        log = cls()
        original = sandbox._token_login  # the one place a token is read

        def _recording(request: Any) -> str:
            login = original(request)
            if request.path.startswith("/v3/localization"):
                log.posts.append((time.time(), login, request.headers.get("Token", "")))
            return login

        sandbox._token_login = _recording  # type: ignore[method-assign]
        return log

    def since(self, t: float) -> list[tuple[float, str, str]]:
        """The posts handled at or after `t` (epoch seconds)."""
        return [p for p in self.posts if p[0] >= t]

    def sources(self, since: float = 0.0) -> dict[str, list[str]]:
        """Per login, the tokens in the order they posted (repeats folded)."""
        out: dict[str, list[str]] = defaultdict(list)
        for _, login, token in self.since(since):
            if not out[login] or out[login][-1] != token:
                out[login].append(token)
        return dict(out)

    def overlaps(self, since: float, window_s: float) -> list[str]:
        """Logins posted by two consoles within `window_s` of each other after `since`.

        A switch A → B is clean when A's last post is no later than `window_s` after
        B's first (a request A had in flight may land just after B's first).
        """
        bad = []
        by_login: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for t, login, token in self.since(since):
            by_login[login].append((t, token))
        for login, posts in by_login.items():
            tokens: list[str] = []
            for _, token in posts:
                if token not in tokens:
                    tokens.append(token)
            if len(tokens) > 2:
                bad.append(f"{login}: {len(tokens)} sources")
                continue
            if len(tokens) == 2:
                first_new = min(t for t, tok in posts if tok == tokens[1])
                last_old = max(t for t, tok in posts if tok == tokens[0])
                if last_old > first_new + window_s:
                    bad.append(f"{login}: old source posted {last_old - first_new:.3f}s after")
        return bad
