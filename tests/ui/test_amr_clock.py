"""The AMR table's `clk` column: each robot's vendor clock offset, coloured by the tolerance."""

from __future__ import annotations

import pytest

from dtp_console.state import DeviceState
from dtp_console.ui.palette import AMBER, DIM, RED
from dtp_console.ui.widgets.amr_table import AmrTable, fmt_offset


def _clock_cell(offsets_ms: list[int], tolerance_s: float = 300.0) -> tuple[str, str]:
    table = AmrTable(10.0, clock_tolerance_s=tolerance_s)
    device = DeviceState("amr-1", "tugger-03", last_message_at=99.0)
    for offset in offsets_ms:
        device.clock.add(offset)
    keys = [key for key, _, _ in AmrTable.COLUMNS]
    return table._row(device, 100.0)[keys.index("clock")]


def test_no_vendor_stamp_shows_a_dash() -> None:
    assert _clock_cell([]) == ("–", DIM)


def test_a_healthy_clock_is_plain_and_drift_turns_amber_then_red() -> None:
    text, style = _clock_cell([-120] * 5)
    assert text == "-0.1s"
    assert AMBER not in style and RED not in style
    assert _clock_cell([3_200] * 5, tolerance_s=30) == ("+3.2s", AMBER)
    text, style = _clock_cell([3_600_000] * 5)
    assert (text, style) == ("+1.0h", f"bold {RED}")


def test_one_wild_report_does_not_paint_the_robot_red() -> None:
    text, style = _clock_cell([150] * 8 + [10**12])
    assert text == "+0.1s"
    assert RED not in style


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "+0.0s"),
        (-3.25, "-3.2s"),
        (42, "+42s"),
        (-600, "-10m"),
        (7_200, "+2.0h"),
        (50_000, "+14h"),
        (100 * 86_400, "+100d"),
        (5 * 365 * 86_400, "+5y"),
        (1e15, "+999y"),
    ],
)
def test_offsets_fit_the_column(seconds: float, shown: str) -> None:
    assert fmt_offset(seconds) == shown
    width = next(w for key, _, w in AmrTable.COLUMNS if key == "clock")
    assert len(shown) <= width
