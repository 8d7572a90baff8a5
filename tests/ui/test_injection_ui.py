"""Outside text in the UI is shown literally: markup stays visible, control characters escaped.

The editor's suggestion list, the AMR table and the log panel render what a
vendor sent (ids, topics, twinzo's errors). What the terminal receives are the
widgets' strips: they must hold no control byte and show `[red]` as `[red]`.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.content import Content
from textual.widget import Widget
from textual.widgets import Input, OptionList, TabbedContent

from dtp_console.events import LogLine
from dtp_console.state import DeviceState
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.auth_panel import AuthPanel
from dtp_console.ui.widgets.log_panel import LogPanel
from tests.ui.harness import make_app, settle
from tests.ui.test_device_map_editor import SIZE as EDITOR_SIZE
from tests.ui.test_device_map_editor import _editor, _Host

SIZE = (120, 40)
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _raw_controls(lines: str) -> list[str]:
    return [c for line in lines.splitlines() for c in RAW_CONTROL.findall(line)]


def _shown(widget: Widget) -> list[str]:
    """The text of every line `widget` draws, as the terminal would get it."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


def _styled_spans(widget: Widget, needle: str) -> list[str]:
    """Lines drawn with a style change inside `needle` (markup applied would cause one)."""
    found = []
    for y in range(widget.size.height):
        strip = widget.render_line(y)
        if needle in strip.text and not any(needle in segment.text for segment in strip):
            found.append(strip.text)
    return found


async def test_suggestion_list_shows_markup_and_controls_as_text() -> None:
    hostile = [
        "[red]x[/red]",
        "[link=http://x]y",
        "a[/]b",
        "e\x1b[2J\x1b]0;pwned\x07",
        "c1\x9b2J",
        "bidi\u202eevil",
        "nl\n OK forged",
    ]
    editor = _editor(suggestions=hostile)
    async with _Host(editor).run_test(size=EDITOR_SIZE) as pilot:
        suggestions = editor.query_one("#dm-suggestions", OptionList)
        lines = "\n".join(_shown(suggestions))
        assert _raw_controls(lines) == []
        for literal in (
            "[red]x[/red]",
            "[link=http://x]y",
            "a[/]b",
            "e\\x1b[2J\\x1b]0;pwned\\x07",
            "c1\\x9b2J",
            "bidi\\u202eevil",
            "nl\\n OK forged",
        ):
            assert literal in lines
        assert _styled_spans(suggestions, "[red]x[/red]") == []
        # What is shown is escaped; what is mapped is the exact id the bridge looks up.
        await pilot.press("down", "down", "down", "enter")
        assert editor.query_one("#dm-vendor", Input).value == "e\x1b[2J\x1b]0;pwned\x07"


async def test_editing_a_markup_id_keeps_the_form_title_literal() -> None:
    editor = _editor(mapping={"[red]x[/red]": "robot-1"})
    async with _Host(editor).run_test(size=EDITOR_SIZE) as pilot:
        await pilot.press("e")
        title = editor.query_one("#dm-form").border_title
        # The title as drawn: its markup parsed back gives the text on screen.
        assert title is not None and Content.from_markup(title).plain == "edit [red]x[/red]"
        table_lines = "\n".join(_shown(editor.query_one("#dm-table")))
        assert "[red]x[/red]" in table_lines


async def test_amr_table_and_auth_table_show_vendor_text_literally(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        plant = engine.state.plants["Old Plant"]
        vendor_id, login = "[red]x\x1b[2J", "\u202eab[/]"
        plant.devices[vendor_id] = DeviceState(vendor_id, login, x=1.0, y=2.0)
        plant.devices[vendor_id].last_error = "twinzo: [bold]no\x1b]0;t\x07"
        app.refresh_now()
        await pilot.pause()
        table = app.main.query_one("#tab-plant-0 AmrTable", AmrTable)
        lines = "\n".join(_shown(table))
        assert _raw_controls(lines) == []
        assert "[red]x\\x1b[2J" in lines
        assert "\\u202eab[/]" in lines
        assert table.cell_text(vendor_id, "vendor") == vendor_id  # the state keeps the raw id
        app.main.query_one(TabbedContent).active = "tab-twinzo"
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()
        auth = app.main.query_one(AuthPanel).table
        lines = "\n".join(_shown(auth))
        assert _raw_controls(lines) == []
        assert "\\u202eab[/]" in lines
        assert "twinzo: [bold]no\\x1b]0;t\\x07" in lines


async def test_log_panel_shows_markup_and_controls_as_text(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        text = "Unknown ATI device: [red]x[/red]\x1b[2J\nOK forged\u202e (add to device map)"
        engine.bus.publish(LogLine(level="WARN", text=text, plant="Old Plant"))
        app.refresh_now()
        await pilot.pause()
        log = app.main.query_one(LogPanel)
        shown = log.shown_text[-1]
        assert shown.endswith(
            "WARN Unknown ATI device: [red]x[/red]\\x1b[2J\\nOK forged\\u202e (add to device map)"
        )
        lines = "\n".join(_shown(log))
        assert _raw_controls(lines) == []
        assert not any(line.lstrip().startswith("OK forged") for line in lines.splitlines())
