"""OAuth / POST status per twinzo device login: token, expiry, last auth, last POST, counts."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from dtp_console.state import AuthState, DeviceState, EngineState
from dtp_console.textsafe import safe_text
from dtp_console.ui.display import fmt_countdown, fmt_ms, post_status_text
from dtp_console.ui.palette import AMBER, BLUE, DIM, GREEN, MUTED, RED, TEXT
from dtp_console.ui.widgets.keyed_table import Cell, Column, KeyedTable

__all__ = ["AuthPanel", "AuthTable"]

_TOKEN_STYLES = {"valid": GREEN, "refreshing": AMBER, "failed": f"bold {RED}", "none": DIM}


class AuthTable(KeyedTable):
    """One row per device login (the columns fit in 120 cells)."""

    COLUMNS: ClassVar[list[Column]] = [
        ("login", "login", 14),
        ("token", "token", 10),
        ("expires", "expires", 8),
        ("auth", "auth", 7),
        ("auths", "auth/ref", 8),
        ("post", "POST", 4),
        ("latency", "latency", 7),
        ("ok", "ok", 5),
        ("fail", "fail", 4),
        ("error", "last error", 30),
    ]


class AuthPanel(Vertical):
    """The twinzo tab: a summary line and the per-device table."""

    DEFAULT_CSS = """
    AuthPanel {
        height: 1fr;
    }
    AuthPanel > #auth-summary {
        height: 1;
        padding: 0 1;
        color: $dtp-muted;
    }
    """

    def compose(self) -> ComposeResult:
        """Summary on top, table below."""
        yield Static(id="auth-summary")
        yield AuthTable(id="auth-table")

    @property
    def table(self) -> AuthTable:
        """The per-device table."""
        return self.query_one(AuthTable)

    def refresh_from(self, state: EngineState, wall_now: float) -> int:
        """Show every device login's token and POST facts as of epoch time `wall_now`."""
        devices: dict[str, tuple[str, DeviceState]] = {}
        for plant in state.plants.values():
            for device in plant.devices.values():
                devices[device.login] = (plant.name, device)
        logins = sorted(set(devices) | set(state.auth))
        rows = {
            login: _row(login, devices.get(login), state.auth.get(login), wall_now)
            for login in logins
        }
        tokens = Counter(a.status for a in state.auth.values())
        ok = sum(d.posts_ok for _, d in devices.values())
        failed = sum(d.posts_failed for _, d in devices.values())
        summary = (
            f"twinzo [{BLUE}]{escape(safe_text(state.twinzo_url or '–'))}[/]"
            f" · {len(logins)} logins · tokens "
            + (" ".join(f"{k} {v}" for k, v in sorted(tokens.items())) or "none yet")
            + f" · POST ok [{GREEN}]{ok}[/] failed [{RED if failed else MUTED}]{failed}[/]"
        )
        self.query_one("#auth-summary", Static).update(summary)
        return self.table.sync(rows)


def _row(
    login: str, place: tuple[str, DeviceState] | None, auth: AuthState | None, now: float
) -> list[Cell]:
    device = place[1] if place is not None else None
    if auth is None:
        token: list[Cell] = [("none", DIM), ("–", DIM), ("–", DIM), ("0/0", DIM)]
    else:
        left = None if auth.expires_at is None else auth.expires_at - now
        expiry_style = (
            RED if left is not None and left <= 0 else AMBER if (left or 0) < 60 else TEXT
        )
        result_ok = auth.last_result is not None and auth.last_result.startswith("2")
        token = [
            (auth.status, _TOKEN_STYLES.get(auth.status, TEXT)),
            (fmt_countdown(left), expiry_style if left is not None else DIM),
            (auth.last_result or "–", GREEN if result_ok else RED if auth.last_result else DIM),
            (f"{auth.authentications}/{auth.refreshes}", TEXT),
        ]
    if device is None:
        post: list[Cell] = [("–", DIM), ("–", DIM), ("0", DIM), ("0", DIM)]
        error = auth.last_error if auth is not None else None
    else:
        status = (
            post_status_text(device.last_post_status, device.last_post_ok)
            if device.last_post_status
            else None
        )
        post = [
            (status or "–", GREEN if device.last_post_ok else RED if status else DIM),
            (fmt_ms(device.last_post_latency_ms), TEXT),
            (str(device.posts_ok), GREEN if device.posts_ok else DIM),
            (str(device.posts_failed), RED if device.posts_failed else DIM),
        ]
        error = device.last_error or (auth.last_error if auth is not None else None)
    return [
        (login, f"bold {TEXT}"),
        *token,
        *post,
        (_clip(error or "", 30), RED if error else DIM),
    ]


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
