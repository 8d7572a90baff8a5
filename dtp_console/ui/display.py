"""Clock and text formatting shared by the console's widgets (no Textual here; colours are
in `palette`).

Widgets never call `time` directly: they read a `UiClock`, so tests and
snapshots can pin ages and countdowns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "FixedClock",
    "UiClock",
    "fmt_age",
    "fmt_countdown",
    "fmt_ms",
    "map_labels",
    "post_status_text",
    "short_label",
]


@dataclass(slots=True)
class UiClock:
    """Monotonic time (ages of messages) and wall time (token expiry, last success)."""

    monotonic: Callable[[], float] = field(default=time.monotonic)
    wall: Callable[[], float] = field(default=time.time)
    local: Callable[[float], time.struct_time] = field(default=time.localtime)
    """Epoch seconds → the clock time shown (UTC for a `FixedClock`)."""

    def hms(self, epoch: float) -> str:
        """`HH:MM:SS` of an epoch time."""
        return time.strftime("%H:%M:%S", self.local(epoch))


class FixedClock(UiClock):
    """A clock that moves only when told to (tests, snapshots, screenshots)."""

    def __init__(self, monotonic: float = 1_000.0, wall: float = 1_767_225_600.0) -> None:
        self._mono = monotonic
        self._wall = wall
        super().__init__(monotonic=lambda: self._mono, wall=lambda: self._wall, local=time.gmtime)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._mono += seconds
        self._wall += seconds


def fmt_age(seconds: float | None) -> str:
    """`0.4s`, `12s`, `3m05s`, `2h01m`; `–` when unknown."""
    if seconds is None:
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def fmt_countdown(seconds: float | None) -> str:
    """Time left (`14m59s`) or `expired`; `–` when unknown."""
    if seconds is None:
        return "–"
    if seconds <= 0:
        return "expired"
    return fmt_age(seconds)


def fmt_ms(ms: float | None) -> str:
    """A latency: `4ms`, `1.2s`; `–` when unknown."""
    if ms is None:
        return "–"
    if ms < 10:
        return f"{ms:.1f}ms"
    return f"{ms:.0f}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


def post_status_text(status: str | None, ok: bool | None) -> str:
    """A POST result for a cell: the HTTP code or failure kind; `rej` for a 2xx twinzo refused.

    twinzo answers 200 with `Success: false` per location it did not take, so
    the code alone would read as success.
    """
    if status is None:
        return "–"
    if status.isdigit() and status.startswith("2") and ok is False:
        return "rej"
    return status


def _digit_runs(text: str) -> list[str]:
    runs, current = [], ""
    for char in text:
        if char.isdigit():
            current += char
        elif current:
            runs.append(current)
            current = ""
    return [*runs, current] if current else runs


def short_label(login: str, *, run: int = 0) -> str:
    """A map label: first letter plus a run of digits (`tugger-05-old` → `t05`).

    `run` picks the run of digits (0 the first, -1 the last); a login without
    digits gives its first four characters.
    """
    runs = _digit_runs(login)
    if not runs:
        return login[:4]
    return (login[0] if not login[0].isdigit() else "") + runs[run]


def map_labels(logins: Iterable[str]) -> dict[str, str]:
    """Short map labels that tell a plant's robots apart.

    The first digit run when that is unique (`tugger-05-old` → `t05`), else the
    last (`tugger-1-014` → `t014`), else the login's last six characters, else
    the whole login.
    """
    names = list(dict.fromkeys(logins))
    for scheme in (0, -1, None):
        if scheme is None:
            labels = {login: login[-6:] for login in names}
        else:
            labels = {login: short_label(login, run=scheme) for login in names}
        if len(set(labels.values())) == len(names):
            return labels
    return {login: login for login in names}
