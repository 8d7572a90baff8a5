"""Recent operator log lines (OK / FAIL / WARN / INFO), bounded, filterable by plant and level."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.widgets import RichLog

from dtp_console.events import LogLine
from dtp_console.ui.display import LEVEL_COLOURS, MUTED, TEXT, UiClock

__all__ = ["LEVEL_FILTERS", "LogPanel"]

#: Level filters in the order `l` cycles through them: label → levels shown.
LEVEL_FILTERS: dict[str, frozenset[str]] = {
    "all": frozenset({"OK", "FAIL", "WARN", "INFO"}),
    "FAIL": frozenset({"FAIL"}),
    "WARN+FAIL": frozenset({"WARN", "FAIL"}),
    "OK": frozenset({"OK"}),
    "INFO": frozenset({"INFO"}),
}


class LogPanel(RichLog):
    """The log strip at the bottom; keeps the last `keep` lines and re-filters from them."""

    DEFAULT_CSS = """
    LogPanel {
        height: 9;
        border: round #30363d;
        border-title-color: #8b949e;
        background: #0d1117;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 0;
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
        super().__init__(
            id=id, max_lines=keep, wrap=False, markup=False, highlight=False, auto_scroll=True
        )
        self.can_focus = False
        self.burst = 50
        """Most lines drawn per `add()`."""
        self._clock = clock or UiClock()
        self._keep: deque[LogLine] = deque(maxlen=keep)
        self._plants: list[str | None] = [None, *plants]
        self.plant_filter: str | None = None
        """Show only this plant's lines (and lines of no plant are hidden); None shows all."""
        self.level_filter = "all"
        self._title()

    @property
    def lines_kept(self) -> list[LogLine]:
        """Every kept line, oldest first (unfiltered)."""
        return list(self._keep)

    def filtered_lines(self) -> list[LogLine]:
        """The kept lines that pass the filters, oldest first."""
        return [line for line in self._keep if self._passes(line)]

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
            self.write(Text("\n").join(self._line_text(line) for line in shown))

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
        self.clear()
        for line in self.filtered_lines():
            self.write(self._line_text(line))
        self._title()

    def _title(self) -> None:
        plant = self.plant_filter or "all plants"
        self.border_title = f"log · {self.level_filter} · {plant}  (l level, p plant)"

    def _line_text(self, line: LogLine) -> Text:
        colour = LEVEL_COLOURS.get(line.level, TEXT)
        return Text.assemble(
            (self._clock.hms(line.ts) + " ", MUTED),
            (f"{line.level:<4} ", f"bold {colour}"),
            (line.text, TEXT),
        )
