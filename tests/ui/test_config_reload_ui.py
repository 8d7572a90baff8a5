"""A config reload reaches the plant tab: its staleness, clock tolerance and floor bounds."""

from __future__ import annotations

from pathlib import Path

from devtools.seeded import CONFIG
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.screens.main import PlantPane
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.floor_map import FloorMap
from tests.ui.harness import make_app, settle

SIZE = (120, 40)


async def test_a_reload_reaches_the_plant_tab(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        assert isinstance(app, DtpConsoleApp)
        assert engine.config_path is not None
        engine.config_path.write_text(
            CONFIG.replace(
                "stale_after_s: 10", "stale_after_s: 4\n    clock_tolerance_s: 20"
            ).replace("x_max: 265000", "x_max: 300000"),
            encoding="utf-8",
        )
        engine.reload()
        app.refresh_now()
        await pilot.pause()
        pane = app.main.query_one("#plant-pane-0", PlantPane)
        table = pane.query_one(AmrTable)
        assert (table.stale_after_s, table.clock_tolerance_s) == (4.0, 20.0)
        bounds = pane.query_one(FloorMap).bounds
        assert bounds is not None
        assert bounds.x_max == 300_000
        assert "300 × 172 m" in str(pane.query_one(FloorMap).border_title)
        active = app.main.active_plant
        assert active is not None
        assert active.stale_after_s == 4.0
