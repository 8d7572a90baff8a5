"""Braille sparklines with an alert threshold line (pure: no Textual here).

A cell of Unicode braille is 2 dots wide and 4 high, so a sparkline `width`
cells wide and `rows` cells high draws `2·width` samples at `4·rows` levels,
filled from the bottom. The threshold, when given, is a dotted line at its
level; cells holding a sample at or above it are drawn in the alert colour.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from dtp_console.ui.palette import AMBER, DIM, GREEN, RED

__all__ = ["braille_spark"]

_BASE = 0x2800
#: Dot bits of a braille cell by (column, row from the top).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def _resample(values: Sequence[float], n: int) -> list[float]:
    """`n` samples: the newest `n` values, or each value stretched when there are fewer."""
    if len(values) >= n:
        return list(values[-n:])
    return [values[i * len(values) // n] for i in range(n)]


def braille_spark(
    values: Sequence[float],
    width: int,
    rows: int = 2,
    *,
    threshold: float | None = None,
    colour: str = GREEN,
) -> list[Text]:
    """`rows` lines of `width` braille cells: the values (newest right) and the threshold."""
    width, rows = max(1, width), max(1, rows)
    if not values:
        return [Text(" " * width) for _ in range(rows)]
    levels = rows * 4
    samples = _resample(values, width * 2)
    lo, hi = min(samples), max(samples)
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold * 1.05)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0

    def level(value: float) -> int:  # 0 (bottom) .. levels - 1 (top)
        return min(levels - 1, max(0, round((value - lo) / (hi - lo) * (levels - 1))))

    limit = level(threshold) if threshold is not None else None
    grid = [[0] * width for _ in range(rows)]
    alert = [[False] * width for _ in range(rows)]
    for x, value in enumerate(samples):
        top = level(value)
        cell, column = divmod(x, 2)
        over = threshold is not None and value >= threshold
        for y in range(top + 1):
            row, dot = divmod(levels - 1 - y, 4)
            grid[row][cell] |= _DOTS[column][dot]
            alert[row][cell] |= over
    lines = []
    for row in range(rows):
        line = Text()
        for cell in range(width):
            bits = grid[row][cell]
            line_here = False
            if limit is not None and (levels - 1 - limit) // 4 == row and cell % 2 == 0:
                dot = (levels - 1 - limit) % 4
                if not bits & (_DOTS[0][dot] | _DOTS[1][dot]):
                    bits |= _DOTS[0][dot] | _DOTS[1][dot]
                    line_here = True
            style = RED if alert[row][cell] else (AMBER if line_here else colour)
            line.append(chr(_BASE + bits) if bits else " ", style=style if bits else DIM)
        lines.append(line)
    return lines
