"""Ghost robots and implausible jumps in the AMR table and on the floor map (seeded engine)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import TabbedContent

from devtools.seeded import FAILING_LOGIN
from dtp_console.ui.palette import AMBER, PURPLE, RED
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.floor_map import FloorMap
from tests.ui.harness import make_app, settle


def _map_text(floor: FloorMap) -> str:
    return "".join(floor.render_line(y).text for y in range(floor.size.height))


async def test_ghosts_and_a_jump_are_flagged_in_table_and_map(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        engine = await settle(pilot)
        fleet = engine.fleets["Old Plant"]
        del fleet.robots["ati_amr_002"]  # its messages stop; the other robots still report
        robot = fleet.robots["ati_amr_003"]
        robot.x = robot.x + 120_000 if robot.x < 130_000 else robot.x - 120_000  # teleported
        engine.advance(64, 0.5)  # 32 s: past ghost_after_s (30 s)
        app.refresh_now()
        await pilot.pause()
        table = app.main.query_one("#tab-plant-0 AmrTable", AmrTable)
        assert table.flagged_rows == {"ati_amr_002": "ghost", "ati_amr_003": "jump"}
        assert PURPLE in table.cell_style("ati_amr_002", "flag")
        assert AMBER in table.cell_style("ati_amr_003", "flag")
        # Both ages: the ghost's last message and last acceptance are both ~32 s old.
        assert table.cell_text("ati_amr_002", "age") == "32s"
        assert table.cell_text("ati_amr_002", "accepted") == "32s"
        assert table.cell_text("ati_amr_001", "accepted") in ("0s", "1s", "2s")
        floor = app.main.query_one("#tab-plant-0 FloorMap", FloorMap)
        assert floor.flags["ati_amr_002"] == ("quiet", False)
        assert floor.flags["ati_amr_003"] == (None, True)
        drawn = _map_text(floor)
        assert "◌" in drawn  # the quiet ghost's marker
        assert "!t07" in drawn  # the jumped robot's warning label

        app.main.query_one(TabbedContent).active = "tab-plant-1"
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()
        hitech = engine.state.plants["HiTech Plant"]
        refused = next(v for v, d in hitech.devices.items() if d.login == FAILING_LOGIN)
        other = app.main.query_one("#tab-plant-1 AmrTable", AmrTable)
        assert other.flagged_rows == {refused: "refused"}
        assert RED in other.cell_style(refused, "flag")
        assert other.cell_text(refused, "accepted") == "–"  # twinzo never accepted one
        assert RED in other.cell_style(refused, "accepted")
        assert "×" in _map_text(app.main.query_one("#tab-plant-1 FloorMap", FloorMap))

        stats = engine.state.as_dict()["plants"]
        assert stats["Old Plant"]["ghost_episodes"] == {"quiet": 1}
        assert stats["Old Plant"]["implausible_jumps"] == 1
        assert stats["Old Plant"]["devices"]["tugger-06-old"]["ghost"] == "quiet"
        assert stats["HiTech Plant"]["ghosts"] == [FAILING_LOGIN]
