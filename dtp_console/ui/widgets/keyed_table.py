"""A keyed, line-API table: `sync()` rows by key, only changed rows are re-rendered.

Why not `DataTable`: measured here, re-rendering 25 changing rows through Rich
at 10 Hz cost more than half a core (every cell goes through Rich's
`Padding`/`Text` pipeline on each update). This table builds each row's
`Strip` straight from segments and caches it until that row changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from dtp_console.textsafe import safe_text
from dtp_console.ui.palette import BACKGROUND, CURSOR, MUTED, SURFACE, ZEBRA

__all__ = ["Cell", "Column", "KeyedTable"]

Cell = tuple[str, str]
"""A cell: its text and a Rich style (hex colours only; `""` for the default)."""
Column = tuple[str, str, int]
"""A column: key, label, width in cells (fixed: nothing re-measures while data flows)."""

_HEADER = f"bold {MUTED} on {SURFACE}"
_ZEBRA = (BACKGROUND, ZEBRA)
_CURSOR = CURSOR


def _fit(text: str, width: int) -> str:
    if cell_len(text) <= width:
        return text + " " * (width - cell_len(text))
    return text[: max(0, width - 1)] + "…"


class KeyedTable(ScrollView, can_focus=True):
    """Rows keyed by id, a fixed header, a row cursor; `sync()` touches only what changed."""

    DEFAULT_CSS = """
    KeyedTable {
        height: 1fr;
        background: $dtp-background;
        color: $dtp-text;
        scrollbar-size-vertical: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor(-1000000)", "First row", show=False),
        Binding("end", "cursor(1000000)", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    COLUMNS: ClassVar[Sequence[Column]] = ()

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._cells: dict[str, list[Cell]] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._strips: dict[str, tuple[tuple[int, bool], Strip]] = {}
        self._styles: dict[str, Style] = {}
        self._rich_base: Style | None = None
        self._keys = [c[0] for c in self.COLUMNS]
        self._total_width = sum(width + 2 for _, _, width in self.COLUMNS)
        self.cursor_row = 0

    @property
    def row_keys(self) -> list[str]:
        """Keys of the rows shown, in display order."""
        return list(self._order)

    @property
    def selected_key(self) -> str | None:
        """The key of the cursor row while the table has focus (else None)."""
        if not self.has_focus or not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def cell_text(self, row: str, column: str) -> str:
        """The text of one cell (tests read the table through this)."""
        return self._cells[row][self._keys.index(column)][0]

    def cell_style(self, row: str, column: str) -> str:
        """The Rich style of one cell."""
        return self._cells[row][self._keys.index(column)][1]

    def sync(self, rows: Mapping[str, Sequence[Cell]]) -> int:
        """Make the table show `rows` (in their order); returns how many cells changed.

        When the rows keep their order only the screen lines of changed rows
        are marked dirty, so Textual repaints those lines and nothing else.
        """
        written = 0
        changed_rows: list[str] = []
        for gone in [key for key in self._cells if key not in rows]:
            del self._cells[gone]
            self._strips.pop(gone, None)
            written += len(self._keys)
        for key, cells in rows.items():
            old = self._cells.get(key)
            if old is None:
                self._cells[key] = list(cells)
                written += len(cells)
                continue
            changed = sum(a != b for a, b in zip(old, cells, strict=True))
            if changed:
                self._cells[key] = list(cells)
                self._strips.pop(key, None)
                written += changed
                changed_rows.append(key)
        order = list(rows)
        if order != self._order:
            # The cursor stays on its row's key (a robot), not on a row number.
            under = self._order[self.cursor_row] if self.cursor_row < len(self._order) else None
            self._order = order
            self._index = {key: i for i, key in enumerate(order)}
            self._strips.clear()  # zebra stripes follow positions
            self.virtual_size = Size(self._total_width, len(order) + 1)
            moved = self._index.get(under) if under is not None else None
            self.cursor_row = (
                moved if moved is not None else min(self.cursor_row, max(0, len(order) - 1))
            )
            self.refresh()
        elif changed_rows:
            self._refresh_rows(changed_rows)
        return written

    def _refresh_rows(self, keys: Sequence[str]) -> None:
        """Mark the visible screen lines of `keys` dirty (line 0 is the header)."""
        top, height, width = self.scroll_offset.y, self.size.height, self.size.width
        for key in keys:
            y = self._index[key] - top + 1
            if 1 <= y < height:
                self.refresh(Region(0, y, width, 1))

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec) if spec else Style()
        return style

    def _header(self) -> Strip:
        style = self._style(_HEADER)
        text = "".join(f" {_fit(label, width)} " for _, label, width in self.COLUMNS)
        return Strip([Segment(text, style)], self._total_width)

    def _row_strip(self, index: int, width: int) -> Strip:
        """Row `index` as shown at `width` cells and no horizontal scroll (cached)."""
        key = self._order[index]
        selected = index == self.cursor_row and self.has_focus
        cached = self._strips.get(key)
        if cached is not None and cached[0] == (width, selected):
            return cached[1]
        background = _CURSOR if selected else _ZEBRA[index % 2]
        base = self._style(f"on {background}")
        segments = []
        for (text, spec), (_, _, cells) in zip(self._cells[key], self.COLUMNS, strict=True):
            # Cells carry vendor ids, logins and twinzo's errors, and segments go to the
            # terminal as they are: escape control characters here, once per changed row.
            shown = _fit(safe_text(text, 200), cells)
            segments.append(Segment(f" {shown} ", base + self._style(spec)))
        strip = Strip(segments, self._total_width)
        if width > self._total_width:
            strip = strip.extend_cell_length(width, self._base_style())
        self._strips[key] = ((width, selected), strip)
        return strip

    def _base_style(self) -> Style:
        # `rich_style` walks the DOM on every call; it only changes with the CSS.
        if self._rich_base is None:
            self._rich_base = self.rich_style
        return self._rich_base

    def notify_style_update(self) -> None:
        """CSS changed: forget the cached base style and the rows drawn with it."""
        super().notify_style_update()
        if "_strips" in self.__dict__:  # also called while the widget is being built
            self._rich_base = None
            self._strips.clear()

    def render_line(self, y: int) -> Strip:
        """The header on line 0, then the rows from the vertical scroll position."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            strip = self._header()
        else:
            index = scroll_y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, self._base_style())
            strip = self._row_strip(index, width)
            if scroll_x == 0 and strip.cell_length == width:
                return strip  # the common case: no copy
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, self._base_style())

    def _move_cursor(self, row: int) -> None:
        if not self._order:
            return
        before = self.cursor_row
        self.cursor_row = max(0, min(len(self._order) - 1, row))
        for index in (before, self.cursor_row):
            if index < len(self._order):
                self._strips.pop(self._order[index], None)
        visible = max(1, self.size.height - 1)
        if self.cursor_row < self.scroll_offset.y:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= self.scroll_offset.y + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)
        self.refresh()

    def action_cursor(self, step: int) -> None:
        """Move the row cursor by `step` rows."""
        self._move_cursor(self.cursor_row + step)

    def action_page(self, pages: int) -> None:
        """Move the row cursor by `pages` screens."""
        self._move_cursor(self.cursor_row + pages * max(1, self.size.height - 1))

    def on_focus(self) -> None:
        """Show the cursor."""
        self._move_cursor(self.cursor_row)

    def on_blur(self) -> None:
        """Hide the cursor."""
        self._move_cursor(self.cursor_row)
