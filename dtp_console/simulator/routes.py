"""A plant floor as a grid of aisles: waypoints, stations, chargers and paths.

Vertical aisles cross a few horizontal cross-aisles; every crossing is a
waypoint. Robots drive only along aisles, so a path between two waypoints is
at most two straight legs, and every point on it lies inside the floor bounds.
Everything here is in twinzo millimetres and fully determined by the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_BOUNDS", "FloorBounds", "FloorPlan", "Point"]

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class FloorBounds:
    """Floor rectangle in twinzo millimetres (a plain copy of the config's `Bounds`)."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def contains(self, x: float, y: float) -> bool:
        """Whether (x, y) lies on the floor."""
        return self.x_min <= x <= self.x_max and self.y_min <= y <= self.y_max


#: Used when a plant sets no bounds: a 100 m × 60 m hall.
DEFAULT_BOUNDS = FloorBounds(0.0, 100_000.0, 0.0, 60_000.0)

_AISLE_SPACING_MM = 12_000.0
_CROSS_SPACING_MM = 15_000.0
_MARGIN = 0.06


def _lines(low: float, high: float, spacing: float, least: int, most: int) -> list[float]:
    inset = (high - low) * _MARGIN
    start, stop = low + inset, high - inset
    count = max(least, min(most, int((stop - start) / spacing) + 1))
    step = (stop - start) / (count - 1)
    return [round(start + i * step, 3) for i in range(count)]


@dataclass(frozen=True, slots=True)
class FloorPlan:
    """Aisle grid of one floor."""

    bounds: FloorBounds
    xs: tuple[float, ...]
    """X of each vertical aisle."""
    ys: tuple[float, ...]
    """Y of each cross-aisle."""
    chargers: tuple[Point, ...]
    """Charging spots (on the first aisle)."""
    stations: tuple[Point, ...]
    """Every other crossing; robot loops are made of these."""

    @classmethod
    def for_bounds(cls, bounds: FloorBounds) -> FloorPlan:
        """The aisle grid of a floor: 3–12 aisles, 2–6 cross-aisles, inset from the walls."""
        xs = tuple(_lines(bounds.x_min, bounds.x_max, _AISLE_SPACING_MM, 3, 12))
        ys = tuple(_lines(bounds.y_min, bounds.y_max, _CROSS_SPACING_MM, 2, 6))
        chargers = tuple((xs[0], y) for y in ys)
        stations = tuple((x, y) for x in xs[1:] for y in ys)
        return cls(bounds, xs, ys, chargers, stations)

    def path(self, start: Point, goal: Point) -> list[Point]:
        """Waypoints from `start` to `goal` along the aisles (excluding `start`).

        Both ends must be crossings of the grid: the robot drives along the
        cross-aisle it is on to the goal's aisle, then along that aisle.
        """
        (x0, y0), (x1, y1) = start, goal
        if (x0, y0) == (x1, y1):
            return []
        if x0 == x1 or y0 == y1:
            return [goal]
        return [(x1, y0), goal]

    def nearest_charger(self, point: Point) -> Point:
        """The charger with the shortest aisle distance from `point`."""
        x, y = point
        return min(self.chargers, key=lambda c: abs(c[0] - x) + abs(c[1] - y))
