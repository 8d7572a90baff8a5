"""The keyed table on its own: the cursor follows its row's key, changed rows repaint alone."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult

from dtp_console.ui.palette import PaletteApp
from dtp_console.ui.widgets.keyed_table import Cell, Column, KeyedTable


class Table(KeyedTable):
    COLUMNS: ClassVar[list[Column]] = [("id", "id", 6), ("x", "x", 6)]


class TableApp(PaletteApp[None]):
    def compose(self) -> ComposeResult:
        yield Table()


def rows(*keys: str, x: str = "1") -> dict[str, list[Cell]]:
    return {key: [(key, ""), (x, "")] for key in keys}


async def test_the_cursor_stays_on_its_robot_when_rows_are_inserted_above() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        table.sync(rows("amr-2", "amr-3"))
        table.focus()
        await pilot.press("down")
        assert table.selected_key == "amr-3"
        table.sync(rows("amr-1", "amr-2", "amr-3"))
        assert table.selected_key == "amr-3"
        assert table.cursor_row == 2
        table.sync(rows("amr-1", "amr-2"))  # its robot left: the nearest row
        assert table.selected_key == "amr-2"


async def test_a_changed_row_marks_only_its_own_line_dirty() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        table.sync(rows("a", "b", "c"))
        await pilot.pause()
        table._dirty_regions.clear()
        changed = rows("a", "b", "c")
        changed["b"] = [("b", ""), ("2", "")]
        assert table.sync(changed) == 1
        assert {(r.y, r.height) for r in table._dirty_regions} == {(2, 1)}  # header is line 0
