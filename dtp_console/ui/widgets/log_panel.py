"""Recent operator log lines (OK / FAIL / WARN / INFO), bounded, filterable by plant and level.

A line-API widget rather than `RichLog`: `RichLog` grows its virtual size by
one line per write, and every virtual-size change asks Textual for a layout
of the whole screen — measured in a 200×60 tmux, several full reflows a
second while the log was filling. Here the scrollable height grows in steps
of `_CHUNK` lines once past `_FEW` (so a few dozen layouts while the panel
first fills, then none) and the lines sit at the bottom of it, as in a
terminal's scrollback.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from dtp_console.events import LogLine
from dtp_console.ui.display import UiClock
from dtp_console.ui.palette import LEVEL_COLOURS, MUTED, TEXT

__all__ = ["LEVEL_FILTERS", "LogPanel"]

#: Level filters in the order `l` cycles through them: label → levels shown.
LEVEL_FILTERS: dict[str, frozenset[str]] = {
    "all": frozenset({"OK", "FAIL", "WARN", "INFO"}),
    "FAIL": frozenset({"FAIL"}),
    "WARN+FAIL": frozenset({"WARN", "FAIL"}),
    "OK": frozenset({"OK"}),
    "INFO": frozenset({"INFO"}),
}

#: The scrollable height grows by this many lines at a time…
_CHUNK = 100
#: …once there are more lines than this (a log panel is rarely taller).
_FEW = 24


class LogPanel(ScrollView, can_focus=False):
    """The log strip at the bottom; keeps the last `keep` lines and re-filters from them."""

    DEFAULT_CSS = """
    LogPanel {
        height: 9;
        border: round $dtp-border;
        border-title-color: $dtp-muted;
        background: $dtp-background;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 0;
        overflow-x: hidden;
    }
    """

    def __init__(
        self,
        plants: Sequence[str],
        *,
        clock: UiClock | None = None,
        keep: int = 500,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.burst = 50
        """Most lines drawn per `add()`."""
        self._clock = clock or UiClock()
        self._keep: deque[LogLine] = deque(maxlen=keep)
        self._shown: deque[Strip] = deque(maxlen=keep)
        self._styles: dict[str, Style] = {}
        self._plants: list[str | None] = [None, *plants]
        self.plant_filter: str | None = None
        """Show only this plant's lines (and lines of no plant are hidden); None shows all."""
        self.level_filter = "all"
        self._follow = True
        """The view sticks to the newest line (until the operator scrolls back)."""
        self._title()

    def on_resize(self) -> None:
        """A shorter panel still shows the newest line while following."""
        if self._follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Scrolling back stops following the newest line; scrolling to the end resumes."""
        super().watch_scroll_y(old_value, new_value)
        self._follow = round(new_value) >= self.max_scroll_y

    @property
    def lines_kept(self) -> list[LogLine]:
        """Every kept line, oldest first (unfiltered)."""
        return list(self._keep)

    def filtered_lines(self) -> list[LogLine]:
        """The kept lines that pass the filters, oldest first."""
        return [line for line in self._keep if self._passes(line)]

    @property
    def shown_text(self) -> list[str]:
        """The text of the lines on offer, oldest first (tests read the panel through this)."""
        return [strip.text for strip in self._shown]

    def _passes(self, line: LogLine) -> bool:
        if line.level not in LEVEL_FILTERS[self.level_filter]:
            return False
        return self.plant_filter is None or line.plant == self.plant_filter

    def add(self, lines: Iterable[LogLine]) -> None:
        """Keep `lines` and show the ones passing the filters (one batch per refresh tick).

        At most `burst` lines are drawn per batch (all are kept, and a filter
        change redraws from what is kept): a flood must not stall the UI.
        """
        fresh = list(lines)
        self._keep.extend(fresh)
        shown = [line for line in fresh if self._passes(line)][-self.burst :]
        if shown:
            self._append([self._strip(line) for line in shown])

    def cycle_level(self) -> str:
        """Next level filter; returns its label."""
        names = list(LEVEL_FILTERS)
        self.level_filter = names[(names.index(self.level_filter) + 1) % len(names)]
        self._rewrite()
        return self.level_filter

    def cycle_plant(self) -> str:
        """Next plant filter; returns its label."""
        index = self._plants.index(self.plant_filter)
        self.plant_filter = self._plants[(index + 1) % len(self._plants)]
        self._rewrite()
        return self.plant_filter or "all plants"

    def _rewrite(self) -> None:
        self._shown.clear()
        self._append([self._strip(line) for line in self.filtered_lines()], follow=True)
        self._title()

    def _append(self, strips: list[Strip], *, follow: bool = False) -> None:
        """Add lines at the bottom; the view follows the end unless scrolled back."""
        if follow:
            self._follow = True
        at_end = self._follow
        before = self.virtual_size.height
        self._shown.extend(strips)
        height = self._virtual_height()
        resized = height != before
        if resized:
            self.virtual_size = Size(self.virtual_size.width, height)
        if at_end:
            # After a resize the new end is known only once the layout ran.
            self.scroll_end(animate=False, immediate=not resized, x_axis=False)
        else:
            # Keep the lines under the operator's eyes where they are.
            shift = (height - before) - len(strips)
            y = max(0, self.scroll_offset.y + shift)
            if resized:
                self.call_after_refresh(self.scroll_to, y=y, animate=False)
            else:
                self.scroll_to(y=y, animate=False)
        self.refresh()

    def _virtual_height(self) -> int:
        """The lines shown while few, then `_CHUNK`-rounded up to the lines kept."""
        count = len(self._shown)
        if count <= _FEW:
            return count
        return min(self._keep.maxlen or count, -(-count // _CHUNK) * _CHUNK)

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec)
        return style

    def _strip(self, line: LogLine) -> Strip:
        colour = LEVEL_COLOURS.get(line.level, TEXT)
        text = " ".join(line.text.split())  # one screen line per log line
        return Strip(
            [
                Segment(self._clock.hms(line.ts) + " ", self._style(MUTED)),
                Segment(f"{line.level:<4} ", self._style(f"bold {colour}")),
                Segment(text, self._style(TEXT)),
            ]
        )

    def render_line(self, y: int) -> Strip:
        """Lines sit at the bottom of the scrollable height, as in a terminal's scrollback."""
        width = self.scrollable_content_region.width
        count = len(self._shown)
        index = self.scroll_offset.y + y - (self.virtual_size.height - count)
        if not 0 <= index < count:
            return Strip.blank(width, self.rich_style)
        strip = self._shown[index].crop(0, width)
        return strip.apply_style(self.rich_style).extend_cell_length(width, self.rich_style)

    def _title(self) -> None:
        plant = self.plant_filter or "all plants"
        # Text, not a str: a str title is parsed as markup.
        self.border_title = Text(f"log · {self.level_filter} · {plant}  (l level, p plant)")
