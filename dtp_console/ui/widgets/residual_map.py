"""Control points on a plant's floor, each with its fit residual drawn as an exaggerated vector.

A `FloorMap` subclass: the same braille canvas, frame cache and border, but
instead of robots it draws each point where twinzo shows it (a dot) and a line
to where the fit puts it, scaled up so millimetres show on a 200 m floor. The
exaggeration is chosen so the longest vector spans about a tenth of the map,
rounded to 1-2-5, and named in the border title.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from textual.strip import Strip

from dtp_console.config.model import Bounds
from dtp_console.ui.palette import GREEN, MUTED, OUTLINE, RED
from dtp_console.ui.widgets.floor_map import BrailleCanvas, FloorMap

__all__ = ["MAX_EXAGGERATION", "ResidualMap", "ResidualPoint", "exaggeration_for"]


@dataclass(frozen=True, slots=True)
class ResidualPoint:
    """One control point as the map draws it (twinzo millimetres)."""

    name: str
    x: float
    """Where twinzo shows it."""
    y: float
    fitted_x: float | None = None
    """Where the fit puts it; None when there is no fit yet."""
    fitted_y: float | None = None
    used: bool = True
    """False when the robust fit rejected it (drawn red)."""


#: The largest exaggeration: beyond it a perfect fit's rounding noise would be drawn.
MAX_EXAGGERATION = 1000.0


def exaggeration_for(points: list[ResidualPoint], span_mm: float) -> float:
    """The 1-2-5 factor that makes the longest residual about a tenth of `span_mm`.

    At least 1 and at most `MAX_EXAGGERATION`.
    """
    longest = max(
        (
            math.hypot(p.fitted_x - p.x, p.fitted_y - p.y)
            for p in points
            if p.fitted_x is not None and p.fitted_y is not None
        ),
        default=0.0,
    )
    if longest <= 0 or span_mm <= 0:
        return 1.0
    wanted = min(0.1 * span_mm / longest, MAX_EXAGGERATION)
    if wanted <= 1:
        return 1.0
    decade = 10 ** math.floor(math.log10(wanted))
    for step in (5, 2, 1):
        if step * decade <= wanted:
            return float(step * decade)
    return float(decade)  # pragma: no cover - the loop always returns


class ResidualMap(FloorMap):
    """The plant's bounds, its control points and their residual vectors; `show()` feeds it."""

    DEFAULT_CSS = """
    ResidualMap {
        height: 1fr;
        min-height: 6;
        border: round $dtp-border;
        border-title-color: $dtp-muted;
        background: $dtp-background;
    }
    """

    def __init__(self, bounds: Bounds | None, *, id: str | None = None) -> None:
        super().__init__(bounds, id=id)
        self.points: list[ResidualPoint] = []
        self.exaggeration = 1.0
        self.border_title = "residuals"

    def show(self, points: list[ResidualPoint]) -> None:
        """Draw these points (replacing the previous ones)."""
        self.points = list(points)
        x0, x1, y0, y1 = self._extent()
        self.exaggeration = exaggeration_for(self.points, max(x1 - x0, y1 - y0))
        fitted = any(p.fitted_x is not None for p in self.points)
        self.border_title = f"residuals ×{self.exaggeration:g}" if fitted else "control points"
        self._frame = None
        self.refresh()

    def _extent(self) -> tuple[float, float, float, float]:
        xs = [p.x for p in self.points]
        ys = [p.y for p in self.points]
        if self.bounds is not None:
            b = self.bounds
            xs += [b.x_min, b.x_max]
            ys += [b.y_min, b.y_max]
        if not xs:
            return -1000.0, 1000.0, -1000.0, 1000.0
        pad = 0.0 if self.bounds is not None else max(max(xs) - min(xs), max(ys) - min(ys), 1000.0)
        pad *= 0.1
        return min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad

    def _build(self, width: int, height: int) -> list[Strip]:
        canvas = BrailleCanvas(width, height)
        x0, x1, y0, y1 = self._extent()
        pw, ph = width * 2, height * 4
        scale = min((pw - 1) / max(x1 - x0, 1e-9), (ph - 1) / max(y1 - y0, 1e-9))
        ox = (pw - 1 - (x1 - x0) * scale) / 2
        oy = (ph - 1 - (y1 - y0) * scale) / 2

        def px(x: float, y: float) -> tuple[int, int]:
            # Plant Y grows upwards; the screen's grows downwards.
            return round(ox + (x - x0) * scale), round(ph - 1 - oy - (y - y0) * scale)

        if self.bounds is not None:
            b = self.bounds
            corners = [
                px(b.x_min, b.y_min),
                px(b.x_max, b.y_min),
                px(b.x_max, b.y_max),
                px(b.x_min, b.y_max),
            ]
            for a, c in zip(corners, corners[1:] + corners[:1], strict=True):
                canvas.line(a, c, OUTLINE, 0)
        k = self.exaggeration
        for point in self.points:
            if point.fitted_x is None or point.fitted_y is None:
                continue
            colour = GREEN if point.used else RED
            dx, dy = point.fitted_x - point.x, point.fitted_y - point.y
            end = (point.x + k * dx, point.y + k * dy)
            canvas.line(px(point.x, point.y), px(*end), colour, 1)
        for point in self.points:
            mx, my = px(point.x, point.y)
            cx, cy = max(0, min(width - 1, mx // 2)), max(0, min(height - 1, my // 4))
            colour = GREEN if point.used else RED
            canvas.write(cx, cy, "●", f"bold {colour}")
            label = point.name[:10]
            lx = cx + 1 if cx + 1 + len(label) <= width else max(0, cx - len(label))
            canvas.write(lx, cy, label, MUTED if point.used else RED)
        return self._strips(canvas)
