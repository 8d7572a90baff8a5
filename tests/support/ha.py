"""High-availability test helpers: who posted what to the sandbox, and steady MQTT load.

The sandbox cannot tell two consoles apart, but their tokens can: every console
authenticates each login itself, so within a test one token per login is one
console. `PostLog` records `(time, login, token)` for every localization request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson

from dtp_console.twinzo.sandbox import TwinzoSandbox

__all__ = ["PostLog", "ati", "load"]

TOPIC = "ati_fm/sherpa/status"


def ati(vendor_id: str, x: float, y: float) -> bytes:
    """An ATI Sherpa status with a pose (receive time is used as its timestamp)."""
    return orjson.dumps(
        {"sherpa_name": vendor_id, "mode": "fleet", "pose": [x, y, 0.0], "battery_status": 80.0}
    )


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


async def load(port: int, vendor_ids: list[str], rate: float, stop: asyncio.Event) -> int:
    """Publish positions of `vendor_ids` round-robin at `rate` msg/s until `stop`; the count."""
    sent = 0
    started = time.monotonic()
    async with aiomqtt.Client("127.0.0.1", port) as client:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            while sent < due:
                vendor_id = vendor_ids[sent % len(vendor_ids)]
                await client.publish(TOPIC, ati(vendor_id, 1000.0 + sent % 500, 2000.0), qos=0)
                sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.01)
    return sent
