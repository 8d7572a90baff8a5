"""Live AMR table of one plant: one row per mapped robot, stale robots stand out.

Ghost robots carry a flag (`ghost`: its messages stopped while its plant
reports; `refused`: twinzo keeps refusing it while its messages arrive), and a
robot that jumped implausibly lately shows `jump`. Two ages per robot: `age`
since its last vendor message, `acc` since twinzo last accepted a position.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from dtp_console.bridge.plausibility import recent_jump
from dtp_console.state import DeviceState, PlantState
from dtp_console.ui.display import fmt_age, fmt_ms, post_status_text
from dtp_console.ui.palette import AMBER, DIM, GREEN, MUTED, PURPLE, RED, TEXT
from dtp_console.ui.widgets.keyed_table import Cell, Column, KeyedTable

__all__ = ["AmrTable", "fmt_offset"]

#: Seconds of message counts the msgs/s column averages over.
_RATE_WINDOW_S = 5.0
_STALE = f"{AMBER} italic"


class AmrTable(KeyedTable):
    """Login, flag, vendor id, X/Y (mm), moving, battery, message age, accepted age,
    vendor clock offset, last POST, msgs/s."""

    DEFAULT_CSS = """
    AmrTable {
        height: 1fr;
        min-height: 5;
    }
    """

    COLUMNS: ClassVar[list[Column]] = [
        ("login", "login", 13),
        ("flag", "!", 1),
        ("vendor", "vendor id", 14),
        ("x", "X mm", 7),
        ("y", "Y mm", 7),
        ("moving", "mov", 3),
        ("battery", "bat", 4),
        ("age", "age", 5),
        ("accepted", "acc", 5),
        ("clock", "clk", 5),
        ("post", "POST", 10),
        ("rate", "msg/s", 5),
    ]

    def __init__(
        self, stale_after_s: float, *, clock_tolerance_s: float = 300.0, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.stale_after_s = stale_after_s
        self.clock_tolerance_s = clock_tolerance_s
        """Offsets beyond this show red (the bridge restamps or rejects such reports)."""
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    @property
    def stale_rows(self) -> list[str]:
        """Vendor ids shown as stale."""
        return [
            key for key in self.row_keys if self.cell_style(key, "age").startswith("bold " + AMBER)
        ]

    @property
    def flagged_rows(self) -> dict[str, str]:
        """Vendor id → flag shown (`ghost`, `refused`, `jump`) of the rows with one."""
        return {
            k: FLAG_NAMES[self.cell_text(k, "flag")]
            for k in self.row_keys
            if self.cell_text(k, "flag") in FLAG_NAMES
        }

    def refresh_from(self, plant: PlantState, now: float) -> int:
        """Show `plant`'s devices as of monotonic time `now`; returns cells written."""
        rows = {vid: self._row(d, now) for vid, d in sorted(plant.devices.items())}
        for gone in [k for k in self._samples if k not in rows]:
            del self._samples[gone]
        return self.sync(rows)

    def _rate(self, device: DeviceState, now: float) -> float | None:
        samples = self._samples.setdefault(device.vendor_id, deque())
        if samples and samples[-1][0] == now:
            samples[-1] = (now, device.messages)
        else:
            samples.append((now, device.messages))
        while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW_S:
            samples.popleft()
        first_t, first_n = samples[0]
        if now <= first_t:
            return None
        return (device.messages - first_n) / (now - first_t)

    def _row(self, d: DeviceState, now: float) -> list[Cell]:
        age = None if d.last_message_at is None else now - d.last_message_at
        stale = age is None or age > self.stale_after_s
        base = _STALE if stale else TEXT
        rate = self._rate(d, now)
        flag = _flag(d, now)
        login_style = (
            f"bold {RED}" if d.ghost == "refused" else f"bold {AMBER}" if stale else f"bold {TEXT}"
        )
        return [
            (d.login, login_style),
            flag,
            (d.vendor_id, MUTED if not stale else _STALE),
            (_mm(d.x), base),
            (_mm(d.y), base),
            ("yes" if d.moving else "–", GREEN if d.moving and not stale else base),
            (_battery(d.battery), _battery_style(d.battery)),
            (_age(age), f"bold {AMBER}" if stale else base),
            self._accepted(d, now, base),
            self._clock(d.clock_offset_ms, base),
            _post(d),
            ("–" if rate is None else f"{rate:.1f}", base),
        ]

    def _accepted(self, d: DeviceState, now: float, base: str) -> Cell:
        """Age of twinzo's last accepted position: red while twinzo refuses the robot,
        amber once older than the stale bound."""
        age = d.accepted_age_s(now)
        if d.ghost == "refused" or (d.refusing_since is not None and age is None):
            style = f"bold {RED}"
        elif age is None:
            style = DIM
        else:
            style = AMBER if age > self.stale_after_s else base
        return (_age(age), style)

    def _clock(self, offset_ms: int | None, base: str) -> Cell:
        """The vendor clock's offset from our receive time: red past the tolerance,
        amber past a tenth of it (drift worth fixing before it costs positions)."""
        if offset_ms is None:
            return ("–", DIM)
        seconds = offset_ms / 1000
        if abs(seconds) > self.clock_tolerance_s:
            style = f"bold {RED}"
        elif abs(seconds) > self.clock_tolerance_s / 10:
            style = AMBER
        else:
            style = base
        return (fmt_offset(seconds), style)


def fmt_offset(seconds: float) -> str:
    """A clock offset in at most 5 cells: `+0.3s`, `-42s`, `+12m`, `+5.0h`, `+23h`, `+3d`, `+5y`."""
    sign = "-" if seconds < 0 else "+"
    size = abs(seconds)
    steps = (
        (9.95, 1, "s", 1),
        (99.5, 1, "s", 0),
        (3_570, 60, "m", 0),
        (35_640, 3_600, "h", 1),
        (86_400, 3_600, "h", 0),
        (364.5 * 86_400, 86_400, "d", 0),
    )
    for below, unit, suffix, decimals in steps:
        if size < below:
            return f"{sign}{size / unit:.{decimals}f}{suffix}"
    return f"{sign}{min(999, max(1, round(size / (365 * 86_400))))}y"


#: The one-cell flags (the same glyphs as on the floor map) and what each means.
FLAG_NAMES = {"◌": "ghost", "×": "refused", "!": "jump"}


def _flag(d: DeviceState, now: float) -> Cell:
    """The robot's flag in one cell: a ghost kind first, else a recent implausible jump.

    One cell, not a word: the table has to stay beside the map at 120 columns; the
    log line of the episode and the help say what the glyph means.
    """
    if d.ghost == "quiet":
        return ("◌", f"bold {PURPLE}")
    if d.ghost == "refused":
        return ("×", f"bold reverse {RED}")
    if recent_jump(d, now) is not None:
        return ("!", f"bold {AMBER}")
    return ("", TEXT)


def _age(seconds: float | None) -> str:
    # Whole seconds: a tenth-second age would rewrite every row on every tick.
    if seconds is None:
        return "–"
    return f"{seconds:.0f}s" if seconds < 60 else fmt_age(seconds)


def _mm(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _battery(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


def _battery_style(value: float | None) -> str:
    if value is None:
        return DIM
    return RED if value < 15 else AMBER if value < 30 else TEXT


def _post(d: DeviceState) -> Cell:
    if d.last_post_status is None:
        return ("–", DIM)
    return (
        f"{post_status_text(d.last_post_status, d.last_post_ok)} {fmt_ms(d.last_post_latency_ms)}",
        GREEN if d.last_post_ok else RED,
    )
