"""A plant's floor drawn in braille: the bounds, each robot a labelled marker with a fading trail.

Ghost robots have markers of their own (`◌` in purple: its messages stopped
while the plant reports; `×` in red: twinzo keeps refusing it), and a recent
implausible jump is drawn as an amber segment with a `!` before the label. A
VDA 5050 robot that said OFFLINE (or whose last will said CONNECTIONBROKEN) is a
dim `⊘`: it left on purpose; it is neither stale nor a ghost.

A line-API widget (`render_line` → `Strip`): the frame is rebuilt only when a
robot moved or the size changed, and each line is then served from the cache.
Braille gives 2×4 dots per cell but one colour per cell, so trails take the
colour of the newest point in a cell and markers/labels overwrite dots.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections import deque
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from dtp_console.bridge.plausibility import recent_jump
from dtp_console.config.model import Bounds
from dtp_console.state import GhostKind, PlantState
from dtp_console.textsafe import safe_text
from dtp_console.ui.display import map_labels
from dtp_console.ui.palette import (
    AMBER,
    BACKGROUND,
    BRIGHT,
    MUTED,
    OUTLINE,
    PURPLE,
    RED,
    ROBOT_COLOURS,
    SURFACE,
)

__all__ = ["BrailleCanvas", "FloorMap"]

_FADE_TO = SURFACE
_STALE = MUTED
_SELECTED = BRIGHT
_SELECTED_TEXT = BACKGROUND
_ZOOMS = (1, 2, 4, 8)
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
#: Millimetres from the origin beyond which a position is on no floor (1,000 km): not drawn.
#: A service or vendor sending 1e308 would otherwise make the floor's extent infinite.
_FAR_MM = 1e9


def _far(a: tuple[float, float], b: tuple[float, float], step: float) -> bool:
    """Whether `b` is at least `step` away from `a` (any change when `step` is 0)."""
    if step <= 0:
        return a != b
    return abs(a[0] - b[0]) >= step or abs(a[1] - b[1]) >= step


@functools.lru_cache(maxsize=4096)
def _blend(colour: str, target: str, amount: float) -> str:
    """`colour` moved `amount` (0–1) of the way towards `target` (both `#rrggbb`)."""
    a = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(target[i : i + 2], 16) for i in (1, 3, 5)]
    mixed = (round(x + (y - x) * amount) for x, y in zip(a, b, strict=True))
    return "#" + "".join(f"{v:02x}" for v in mixed)


@dataclass(slots=True)
class _Track:
    label: str
    colour: str
    trail: deque[tuple[float, float]]
    stale: bool = False
    ghost: GhostKind | None = None
    offline: bool = False
    """A VDA 5050 robot that said it is gone (OFFLINE / CONNECTIONBROKEN)."""
    jump: tuple[tuple[float, float], tuple[float, float]] | None = None
    """A recent implausible jump (from, to), drawn as a warning."""


def _clip(
    a: tuple[int, int], b: tuple[int, int], x_max: int, y_max: int
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The part of segment a-b inside [0, x_max] × [0, y_max] (Liang–Barsky), or None."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0), (dx, x_max - x0), (-dy, y0), (dy, y_max - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            if t > t1:
                return None
            t0 = max(t0, t)
        else:
            if t < t0:
                return None
            t1 = min(t1, t)
    return (
        (round(x0 + t0 * dx), round(y0 + t0 * dy)),
        (round(x0 + t1 * dx), round(y0 + t1 * dy)),
    )


@dataclass(slots=True)
class BrailleCanvas:
    width: int
    height: int
    dots: dict[tuple[int, int], list[int | str]] = field(default_factory=dict)
    text: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)

    def dot(self, px: int, py: int, colour: str, priority: int) -> None:
        cx, cy = px // 2, py // 4
        if not (0 <= cx < self.width and 0 <= cy < self.height):
            return
        cell = self.dots.setdefault((cx, cy), [0, colour, -1])
        cell[0] = int(cell[0]) | _DOTS[px % 2][py % 4]
        if priority >= int(cell[2]):
            cell[1], cell[2] = colour, priority

    def line(self, a: tuple[int, int], b: tuple[int, int], colour: str, priority: int) -> None:
        pw, ph = self.width * 2, self.height * 4
        if not (0 <= a[0] < pw and 0 <= a[1] < ph and 0 <= b[0] < pw and 0 <= b[1] < ph):
            # Walk only the part in view: a far point would be millions of steps away.
            clipped = _clip(a, b, pw - 1, ph - 1)
            if clipped is None:
                return
            a, b = clipped
        (x0, y0), (x1, y1) = a, b
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        for _ in range(dx - dy + 1):
            self.dot(x0, y0, colour, priority)
            if (x0, y0) == (x1, y1):
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def free(self, cx: int, cy: int, length: int) -> bool:
        """Whether `length` cells from (cx, cy) hold no text yet."""
        return all((x, cy) not in self.text for x in range(cx, cx + length))

    def write(self, cx: int, cy: int, text: str, style: str) -> None:
        for i, char in enumerate(text):
            if 0 <= cx + i < self.width and 0 <= cy < self.height:
                self.text[(cx + i, cy)] = (char, style)


def _place_label(canvas: BrailleCanvas, cx: int, cy: int, label: str, style: str) -> None:
    """Write `label` right of the marker at (cx, cy), else left of it, where nothing is written."""
    n = len(label)
    for lx in (cx + 1, cx - n):
        if lx >= 0 and lx + n <= canvas.width and canvas.free(lx, cy, n):
            canvas.write(lx, cy, label, style)
            return


class FloorMap(Widget):
    """The plant's bounds and its robots; `refresh_from()` feeds it, it redraws only on change."""

    DEFAULT_CSS = """
    FloorMap {
        height: 1fr;
        min-height: 6;
        border: round $dtp-border;
        border-title-color: $dtp-muted;
        background: $dtp-background;
    }
    """

    def __init__(self, bounds: Bounds | None, *, trail: int = 24, id: str | None = None) -> None:
        super().__init__(id=id)
        self.bounds = bounds
        self.trail_length = trail
        self._tracks: dict[str, _Track] = {}
        self._frame: list[Strip] | None = None
        self._frame_size: tuple[int, int] = (0, 0)
        self._logins: tuple[str, ...] = ()
        self._labels: dict[str, str] = {}
        self.selected: str | None = None
        """Vendor id drawn highlighted (the AMR table's cursor row)."""
        self.zoom = 1
        """Magnification: the view is 1/zoom of the floor, centred on the selected robot."""
        self._title_text = ""
        self._zoom_on: str | None = None
        """The robot a zoomed view follows: the last one selected."""
        self._title()

    def _title(self) -> None:
        bounds = self.bounds
        if bounds is None:
            title = "floor (no bounds configured)"
        else:
            w, h = (bounds.x_max - bounds.x_min) / 1000, (bounds.y_max - bounds.y_min) / 1000
            title = f"floor {w:.0f} × {h:.0f} m"
        if self.zoom > 1:
            track = self._tracks.get(self._zoom_on) if self._zoom_on is not None else None
            title += f" · {self.zoom}× " + (track.label if track else "centre")
        # Setting a border title repaints the whole widget: only when it changed.
        if title != self._title_text:
            self._title_text = title
            self.border_title = Text(title)  # a str would be parsed as markup

    def set_bounds(self, bounds: Bounds | None) -> None:
        """Draw the floor within `bounds` from now on (a config reload changed them)."""
        if bounds == self.bounds:
            return
        self.bounds = bounds
        self._title()
        self._frame = None
        self.refresh()

    def set_zoom(self, step: int) -> int:
        """Zoom in (`step` > 0), out (< 0) or back to the whole floor (0); the new zoom."""
        index = _ZOOMS.index(self.zoom)
        index = 0 if step == 0 else max(0, min(len(_ZOOMS) - 1, index + step))
        if _ZOOMS[index] != self.zoom:
            self.zoom = _ZOOMS[index]
            self._title()
            self._frame = None
            self.refresh()
        return self.zoom

    @property
    def tracks(self) -> dict[str, tuple[str, list[tuple[float, float]], bool]]:
        """Per vendor id: label, trail (oldest first), stale (tests read the map through this)."""
        return {k: (t.label, list(t.trail), t.stale) for k, t in self._tracks.items()}

    @property
    def flags(self) -> dict[str, tuple[GhostKind | None, bool]]:
        """Per vendor id: ghost kind and whether a recent jump is drawn (for tests)."""
        return {k: (t.ghost, t.jump is not None) for k, t in self._tracks.items()}

    @property
    def offline(self) -> list[str]:
        """Vendor ids drawn as offline (for tests)."""
        return [k for k, t in self._tracks.items() if t.offline]

    def refresh_from(
        self, plant: PlantState, now: float, stale_after_s: float, *, selected: str | None = None
    ) -> bool:
        """Take the robots' latest positions; True when the picture changed.

        `selected` (a vendor id) is drawn highlighted with its label always shown.
        """
        changed = selected != self.selected
        self.selected = selected
        if selected is not None and selected != self._zoom_on:
            self._zoom_on = selected
        # Movement smaller than one braille dot would redraw an identical picture.
        min_step = self._dot_mm()
        for gone in [k for k in self._tracks if k not in plant.devices]:
            del self._tracks[gone]
            changed = True
        logins = tuple(d.login for d in plant.devices.values())
        if logins != self._logins:
            self._logins, self._labels = logins, map_labels(logins)
        for vendor_id, device in plant.devices.items():
            if device.x is None or device.y is None or not _on_a_floor(device.x, device.y):
                continue
            label = safe_text(self._labels.get(device.login, device.login), 80)
            track = self._tracks.get(vendor_id)
            if track is None:
                colour = ROBOT_COLOURS[zlib.crc32(vendor_id.encode()) % len(ROBOT_COLOURS)]
                track = self._tracks[vendor_id] = _Track(
                    label, colour, deque(maxlen=self.trail_length)
                )
                changed = True
            point = (device.x, device.y)
            if not track.trail or _far(track.trail[-1], point, min_step):
                track.trail.append(point)
                changed = True
            age = None if device.last_message_at is None else now - device.last_message_at
            stale = age is None or age > stale_after_s
            if stale != track.stale or label != track.label:
                track.stale, track.label = stale, label
                changed = True
            offline = device.robot is not None and device.robot.offline
            if offline != track.offline:
                track.offline = offline
                changed = True
            jump = recent_jump(device, now)
            segment = None
            if jump is not None and _on_a_floor(*jump.start) and _on_a_floor(*jump.end):
                segment = (jump.start, jump.end)
            if device.ghost != track.ghost or segment != track.jump:
                track.ghost, track.jump = device.ghost, segment
                changed = True
        if changed:
            self._redraw()
        return changed

    def _redraw(self) -> None:
        """Rebuild the frame now and mark dirty only the lines that differ from the last one."""
        self._title()
        width, height = self.size.width, self.size.height
        old = self._frame
        if old is None or self._frame_size != (width, height) or width <= 0 or height <= 0:
            self._frame = None
            self.refresh()
            return
        self._frame = self._build(width, height)
        for y, (before, after) in enumerate(zip(old, self._frame, strict=True)):
            if before != after:
                self.refresh(Region(0, y, width, 1))

    def _dot_mm(self) -> float:
        """Millimetres per braille dot of the whole floor at the current size (0 before layout).

        The whole floor's, not a zoomed view's: trails keep their length across
        zooms, and robots moving off a zoomed view do not rebuild it.
        """
        width, height = self.size.width, self.size.height
        if width <= 0 or height <= 0 or self.bounds is None:
            return 0.0
        x0, x1, y0, y1 = self._floor()
        return min((x1 - x0) / (width * 2), (y1 - y0) / (height * 4))

    def _extent(self) -> tuple[float, float, float, float]:
        """The plant area in view: the whole floor, or 1/zoom of it around the selection."""
        x0, x1, y0, y1 = self._floor()
        if self.zoom == 1:
            return x0, x1, y0, y1
        track = self._tracks.get(self._zoom_on) if self._zoom_on is not None else None
        cx, cy = track.trail[-1] if track else ((x0 + x1) / 2, (y0 + y1) / 2)
        hw, hh = (x1 - x0) / (2 * self.zoom), (y1 - y0) / (2 * self.zoom)
        cx, cy = min(max(cx, x0 + hw), x1 - hw), min(max(cy, y0 + hh), y1 - hh)
        return cx - hw, cx + hw, cy - hh, cy + hh

    def _floor(self) -> tuple[float, float, float, float]:
        if self.bounds is not None:
            b = self.bounds
            return b.x_min, b.x_max, b.y_min, b.y_max
        points = [p for t in self._tracks.values() for p in t.trail] or [(0.0, 0.0)]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        pad = max(max(xs) - min(xs), max(ys) - min(ys), 1000.0) * 0.1
        return min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad

    def _build(self, width: int, height: int) -> list[Strip]:
        canvas = BrailleCanvas(width, height)
        x0, x1, y0, y1 = self._extent()
        pw, ph = width * 2, height * 4
        scale = min((pw - 1) / (x1 - x0), (ph - 1) / (y1 - y0))
        ox = (pw - 1 - (x1 - x0) * scale) / 2
        oy = (ph - 1 - (y1 - y0) * scale) / 2

        def px(x: float, y: float) -> tuple[int, int]:
            # Plant Y grows upwards; the screen's grows downwards.
            return round(ox + (x - x0) * scale), round(ph - 1 - oy - (y - y0) * scale)

        # The floor's outline (a zoomed view shows only the part of it in view).
        fx0, fx1, fy0, fy1 = self._floor()
        corners = [px(fx0, fy0), px(fx1, fy0), px(fx1, fy1), px(fx0, fy1)]
        for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
            canvas.line(a, b, OUTLINE, 0)
        for track in self._tracks.values():
            points = [px(x, y) for x, y in track.trail]
            n = len(points)
            for i in range(1, n):
                # Trails are at most `trail` long, so the blend cache sees few fades.
                fade = 0.85 * (1 - i / max(1, n - 1))
                colour = _blend(_STALE if track.stale else track.colour, _FADE_TO, fade)
                canvas.line(points[i - 1], points[i], colour, i)
        for track in self._tracks.values():
            if track.jump is not None:
                canvas.line(px(*track.jump[0]), px(*track.jump[1]), AMBER, 1_000_000)
        # Markers first, then labels where they overlap nothing already written:
        # on a crowded floor a label gives way rather than garble its neighbours.
        chosen = self._tracks.get(self.selected) if self.selected is not None else None
        placed: list[tuple[_Track, int, int]] = []
        for track in self._tracks.values():
            mx, my = px(*track.trail[-1])
            if self.zoom > 1 and not (0 <= mx < pw and 0 <= my < ph):
                continue  # out of the zoomed view
            # A position just off the floor (counted as out of bounds) sits on its edge.
            cx, cy = min(max(mx // 2, 0), width - 1), min(max(my // 4, 0), height - 1)
            if track is chosen:
                canvas.write(cx, cy, "◉", f"bold {_SELECTED}")
            elif track.offline:
                canvas.write(cx, cy, "⊘", _STALE)
            elif track.ghost == "quiet":
                canvas.write(cx, cy, "◌", f"bold {PURPLE}")
            elif track.ghost == "refused":
                canvas.write(cx, cy, "×", f"bold {RED}")
            else:
                colour = _STALE if track.stale else track.colour
                canvas.write(cx, cy, "○" if track.stale else "●", f"bold {colour}")
            placed.append((track, cx, cy))
        # The selected robot's label goes first, so the others give way to it.
        placed.sort(key=lambda item: item[0] is not chosen)
        for track, cx, cy in placed:
            if track is chosen:
                label, style = f" {track.label} ", f"bold {_SELECTED_TEXT} on {_SELECTED}"
            elif track.offline:
                label, style = track.label, _STALE
            elif track.ghost is not None:
                label = track.label
                style = f"italic {PURPLE}" if track.ghost == "quiet" else f"bold {RED}"
            else:
                label, style = track.label, MUTED if track.stale else track.colour
            if track.jump is not None and track is not chosen:
                label, style = f"!{label}", f"bold {AMBER}"
            _place_label(canvas, cx, cy, label, style)
        return self._strips(canvas)

    def _strips(self, canvas: BrailleCanvas) -> list[Strip]:
        base = self.rich_style
        styles: dict[str, Style] = {}

        def style_of(spec: str) -> Style:
            style = styles.get(spec)
            if style is None:
                style = styles[spec] = base + Style.parse(spec)
            return style

        strips = []
        for cy in range(canvas.height):
            segments: list[Segment] = []
            run, run_style = "", ""
            for cx in range(canvas.width):
                text = canvas.text.get((cx, cy))
                if text is not None:
                    char, spec = text
                else:
                    cell = canvas.dots.get((cx, cy))
                    char, spec = (
                        (" ", "") if cell is None else (chr(0x2800 + int(cell[0])), str(cell[1]))
                    )
                if spec != run_style and run:
                    segments.append(Segment(run, style_of(run_style) if run_style else base))
                    run = ""
                run += char
                run_style = spec
            if run:
                segments.append(Segment(run, style_of(run_style) if run_style else base))
            strips.append(Strip(segments, canvas.width))
        return strips

    def render_line(self, y: int) -> Strip:
        """One line of the cached frame (rebuilt when stale or resized)."""
        width, height = self.size.width, self.size.height
        if width <= 0 or height <= 0:
            return Strip.blank(max(0, width))
        if self._frame is None or self._frame_size != (width, height):
            self._frame = self._build(width, height)
            self._frame_size = (width, height)
        return self._frame[y] if y < len(self._frame) else Strip.blank(width, self.rich_style)


def _on_a_floor(x: float, y: float) -> bool:
    return math.isfinite(x) and math.isfinite(y) and abs(x) <= _FAR_MM and abs(y) <= _FAR_MM
