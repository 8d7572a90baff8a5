"""The palette has one home, and the stylesheets follow the theme's variables."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from textual.color import Color

import dtp_console.ui
from devtools.seeded import SeededEngine, write_config
from dtp_console.ui import palette
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.display import FixedClock
from dtp_console.ui.widgets.log_panel import LogPanel

UI = Path(dtp_console.ui.__file__).parent
HEX = re.compile(r"#[0-9a-fA-F]{6}\b")


def test_no_colour_is_spelt_outside_the_palette() -> None:
    spelt = [
        f"{path.relative_to(UI)}:{n}: {line.strip()}"
        for path in sorted([*UI.rglob("*.py"), *UI.rglob("*.tcss")])
        if path.name != "palette.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if HEX.search(line)
    ]
    assert spelt == []


def test_every_variable_the_stylesheets_use_is_the_palettes() -> None:
    used = {
        name
        for path in [*UI.rglob("*.py"), *UI.rglob("*.tcss")]
        for name in re.findall(r"\$(dtp-[a-z-]+)", path.read_text(encoding="utf-8"))
    }
    assert used and used <= set(palette.THEME_VARIABLES)


async def test_a_theme_recolours_the_stylesheets(tmp_path: Path) -> None:
    clock = FixedClock()
    engine = SeededEngine(write_config(tmp_path), clock=clock, steps=2)
    app = DtpConsoleApp(engine, clock=clock, refresh_s=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await engine.ready.wait()
        await pilot.pause()
        assert app.theme == "dtp-dark"
        assert app.screen.styles.background == Color.parse(palette.BACKGROUND)
        variables = {
            **palette.THEME_VARIABLES,
            "dtp-background": "#123456",
            "dtp-border": "#abcdef",
        }
        app.register_theme(dataclasses.replace(palette.THEME, name="test", variables=variables))
        app.theme = "test"
        await pilot.pause()
        assert app.screen.styles.background == Color.parse("#123456")
        log = app.main.query_one(LogPanel)
        assert log.styles.border_top[1] == Color.parse("#abcdef")
        # A theme without the console's variables still parses: the palette fills them in.
        app.theme = "nord"
        await pilot.pause()
        assert app.screen.styles.background == Color.parse(palette.BACKGROUND)
