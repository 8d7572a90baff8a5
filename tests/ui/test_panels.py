"""Pilot tests of every console panel on a seeded engine (no sockets, fixed clock)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import TabbedContent

from devtools.seeded import FAILING_LOGIN
from dtp_console.events import LogLine
from dtp_console.ui.display import fmt_countdown
from dtp_console.ui.screens.help import HelpScreen
from dtp_console.ui.screens.main import PlantPane
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.auth_panel import AuthPanel
from dtp_console.ui.widgets.badges import Badge, BadgeInfo, HealthBadges, fit_badges
from dtp_console.ui.widgets.floor_map import FloorMap
from dtp_console.ui.widgets.log_panel import LogPanel
from tests.ui.harness import make_app, settle

SIZE = (120, 40)


async def test_plant_tab_shows_every_mapped_robot_in_table_and_map(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        plant = engine.state.plants["Old Plant"]
        table = app.main.query_one("#tab-plant-0 AmrTable", AmrTable)
        assert table.row_keys == sorted(plant.devices)
        for vendor_id, device in plant.devices.items():
            assert table.cell_text(vendor_id, "login") == device.login
            assert table.cell_text(vendor_id, "x") == f"{device.x:.0f}"
            assert table.cell_text(vendor_id, "post").startswith("200 ")
        floor = app.main.query_one("#tab-plant-0 FloorMap", FloorMap)
        tracks = floor.tracks
        assert set(tracks) == set(plant.devices)
        assert tracks["ati_amr_001"][0] == "t05"
        assert any(len(trail) > 1 for _, trail, _ in tracks.values())
        assert "●" in "".join(floor.render_line(y).text for y in range(floor.size.height))


async def test_stale_robots_stand_out_and_a_quiet_tick_writes_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        table = app.main.query_one("#tab-plant-0 AmrTable", AmrTable)
        plant = engine.state.plants["Old Plant"]
        assert table.refresh_from(plant, engine.clock.monotonic()) == 0
        assert table.stale_rows == []
        engine.clock.advance(30.0)  # no messages for longer than stale_after_s
        app.refresh_now()
        assert table.stale_rows == sorted(plant.devices)
        assert table.cell_text("ati_amr_001", "age").endswith("s")
        floor = app.main.query_one("#tab-plant-0 FloorMap", FloorMap)
        assert all(stale for _, _, stale in floor.tracks.values())


async def test_hidden_tabs_are_not_redrawn(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        table = app.main.query_one("#tab-plant-0 AmrTable", AmrTable)
        before = {k: table.cell_text(k, "x") for k in table.row_keys}
        await pilot.press("right_square_bracket")  # HiTech Plant
        assert app.main.query_one(TabbedContent).active == "tab-plant-1"
        engine.advance(10, 0.5)
        app.refresh_now()
        assert {k: table.cell_text(k, "x") for k in table.row_keys} == before
        other = app.main.query_one("#tab-plant-1 AmrTable", AmrTable)
        hitech = engine.state.plants["HiTech Plant"]
        assert other.row_keys == sorted(hitech.devices)


async def test_narrow_short_terminal_stacks_table_over_map(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        assert app.main.has_class("-narrow") and app.main.has_class("-short")
        pane = app.main.query_one("#tab-plant-0 PlantPane", PlantPane)
        assert pane.styles.layout is not None and pane.styles.layout.name == "vertical"
        assert app.main.query_one(FloorMap).size.height >= 4
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, rounds=1)
        pane = app.main.query_one("#tab-plant-0 PlantPane", PlantPane)
        assert pane.styles.layout is not None and pane.styles.layout.name == "horizontal"


async def test_auth_panel_shows_token_state_countdown_and_failures(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        app.main.query_one(TabbedContent).active = "tab-twinzo"
        await pilot.pause()
        app.refresh_now()
        table = app.main.query_one(AuthPanel).table
        logins = {d.login for p in engine.state.plants.values() for d in p.devices.values()}
        assert set(table.row_keys) == logins
        assert table.cell_text(FAILING_LOGIN, "token") == "failed"
        assert table.cell_text(FAILING_LOGIN, "post") == "401"
        assert table.cell_text(FAILING_LOGIN, "error") == "Invalid login or password"
        auth = engine.state.auth["tugger-03"]
        assert auth.expires_at is not None
        left = auth.expires_at - engine.clock.wall()
        assert table.cell_text("tugger-03", "expires") == fmt_countdown(left)
        assert table.cell_text("tugger-06-old", "token") == "refreshing"
        engine.clock.advance(left + 1)
        app.refresh_now()
        assert table.cell_text("tugger-03", "expires") == "expired"


async def test_badges_show_stores_mqtt_twinzo_and_the_tls_warning(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, rounds=1)
        badges = {b.info.key: b.info for b in app.main.query(Badge)}
        assert badges["store:sqlite"].level == "ok"
        assert badges["store:influx"].level == "warn"  # failing, but it worked 25 s ago
        assert badges["mqtt:Old Plant"].level == "ok"
        assert badges["mqtt:HiTech Plant"].level == "warn"
        assert badges["tls:HiTech Plant"].label.endswith("TLS verify OFF")
        assert badges["twinzo"].level == "warn"  # one login failing, the others posting
        influx = next(b for b in app.main.query(Badge) if b.info.key == "store:influx")
        influx.focus()
        await pilot.press("enter")
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert "no answer within 10s" in messages


async def test_badges_fold_stores_when_the_terminal_is_narrow(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        app.refresh_now()
        await pilot.pause()
        keys = [b.info.key for b in app.main.query_one(HealthBadges).query(Badge)]
        assert keys[0] == "stores"
        assert "tls:HiTech Plant" in keys


async def test_badges_keep_their_width_for_shorter_figures_but_refit_when_compact(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, rounds=1)
        badge = next(b for b in app.main.query(Badge) if b.info.key == "twinzo")
        wide = BadgeInfo("twinzo", "twinzo", "ok", "194ms 0s")
        badge.show(wide, compact=False)
        badge.show(BadgeInfo("twinzo", "twinzo", "ok", "20ms 0s"), compact=False)
        # A shorter figure pads (no layout of the whole screen for a narrower badge).
        assert badge.render() == wide.text(compact=False).replace("194ms", "20ms") + " "
        # The widest terminal where badges go compact without folding the stores.
        infos = [b.info for b in app.main.query(Badge)]
        width = next(w for w in range(200, 40, -1) if fit_badges(infos, w) == (infos, True))
        await pilot.resize_terminal(width, 40)
        app.refresh_now()
        await pilot.pause()
        assert [b.info.key for b in app.main.query(Badge)] == [i.key for i in infos]
        for shown in app.main.query(Badge):
            assert shown.render() == shown.info.text(compact=True)


async def test_padding_never_pushes_badges_off_a_tight_strip(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, rounds=1)
        strip = app.main.query_one(HealthBadges)
        infos = [b.info for b in strip.query(Badge)]
        # The narrowest strip where every badge fits in full, unpadded.
        width = next(w for w in range(40, 400) if fit_badges(infos, w) == (infos, False))
        twinzo = next(b for b in strip.query(Badge) if b.info.key == "twinzo")
        twinzo.show(BadgeInfo("twinzo", "twinzo", "ok", "9999999ms 59m"), compact=False)
        strip.show(infos, width=width)
        used = sum(b.width_shown + 3 for b in strip.query(Badge))  # 3: padding and margin
        assert used <= width
        assert twinzo.render() == next(i for i in infos if i.key == "twinzo").text(compact=False)


async def test_log_panel_keeps_lines_and_filters_by_level_and_plant(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        log = app.main.query_one(LogPanel)
        levels = {line.level for line in log.lines_kept}
        assert {"OK", "WARN", "FAIL"} <= levels
        await pilot.press("l")  # FAIL only
        assert log.level_filter == "FAIL"
        assert {line.level for line in log.filtered_lines()} == {"FAIL"}
        await pilot.press("l")  # WARN+FAIL
        await pilot.press("p")  # Old Plant
        assert log.plant_filter == "Old Plant"
        shown = log.filtered_lines()
        assert shown and all(line.plant == "Old Plant" for line in shown)
        assert all(line.level in {"WARN", "FAIL"} for line in shown)
        engine.bus.publish(LogLine(level="WARN", text="late warning", plant="HiTech Plant"))
        app.refresh_now()
        assert log.lines_kept[-1].text == "late warning"
        assert "late warning" not in [line.text for line in log.filtered_lines()]


async def test_log_panel_is_bounded(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot, rounds=0)
        for n in range(1_200):
            engine.bus.publish(LogLine(level="INFO", text=f"line {n}"))
        app.refresh_now()
        log = app.main.query_one(LogPanel)
        assert len(log.lines_kept) == 500
        assert log.lines_kept[-1].text == "line 1199"


async def test_log_panel_follows_the_newest_line_and_holds_when_scrolled_back(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot, rounds=0)
        log = app.main.query_one(LogPanel)
        for n in range(150):
            engine.bus.publish(LogLine(level="INFO", text=f"line {n}"))
        app.refresh_now()
        await pilot.pause()
        await pilot.pause()
        assert log.scroll_offset.y == log.max_scroll_y
        visible = [log.render_line(y).text for y in range(log.scrollable_content_region.height)]
        assert "line 149" in visible[-1]
        # Scrolled back, new lines do not move what the operator is reading.
        log.scroll_to(y=log.max_scroll_y - 20, animate=False)
        await pilot.pause()
        top = log.render_line(0).text
        engine.bus.publish(LogLine(level="INFO", text="line 150"))
        app.refresh_now()
        await pilot.pause()
        assert log.render_line(0).text == top
        # Back at the end, it follows again.
        log.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        engine.bus.publish(LogLine(level="INFO", text="line 151"))
        app.refresh_now()
        await pilot.pause()
        bottom = log.render_line(log.scrollable_content_region.height - 1).text
        assert "line 151" in bottom
        # A shorter panel (80×24 gives the log fewer rows) still ends on the newest line.
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        bottom = log.render_line(log.scrollable_content_region.height - 1).text
        assert "line 151" in bottom


async def test_a_filling_log_does_not_relayout_the_screen_per_line(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot, rounds=0)
        log = app.main.query_one(LogPanel)
        heights = set()
        for n in range(300):
            engine.bus.publish(LogLine(level="INFO", text=f"line {n}"))
            app.refresh_now()
            heights.add(log.virtual_size.height)
        # A RichLog grows by one line per write, each a layout of the whole screen.
        assert len(heights) <= 30
        assert log.virtual_size.height == 400


async def test_the_selected_row_is_highlighted_on_the_map(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, rounds=2)
        table = app.main.query_one("#tab-plant-0 AmrTable", AmrTable)
        floor = app.main.query_one("#tab-plant-0 FloorMap", FloorMap)
        assert floor.selected is None
        await pilot.press("t")
        assert table.has_focus
        await pilot.press("down")
        app.refresh_now()
        assert floor.selected == table.row_keys[1]
        await pilot.pause()
        text = "\n".join(floor.render_line(y).text for y in range(floor.size.height))
        assert "◉" in text
        # + and - zoom the visible plant's map around that robot; 0 shows the whole floor.
        await pilot.press("plus", "plus")
        assert floor.zoom == 4
        assert floor.border_title is not None and "4× t0" in floor.border_title
        await pilot.press("minus")
        assert floor.zoom == 2
        await pilot.press("0")
        assert floor.zoom == 1


async def test_help_lists_every_binding_and_closes(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, rounds=0)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        described = {description for _, _, description in app.screen.rows()}
        for expected in ("Quit", "Help", "Log plant", "Device map", "Next tab", "Zoom in"):
            assert expected in described
        assert "Last error" in described
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_m_opens_the_device_map_editor_with_unknown_ids_as_suggestions(
    tmp_path: Path,
) -> None:
    editor_module = pytest.importorskip("dtp_console.ui.screens.device_map")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        engine = await settle(pilot)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, editor_module.DeviceMapEditor)
        assert app.screen.plant_name == "Old Plant"
        unknown = [v for v, _ in engine.state.plants["Old Plant"].unknown.most_common()]
        assert unknown and app.screen._suggestions == unknown
        await pilot.press("escape")
        await pilot.pause()
        app.main.query_one(TabbedContent).active = "tab-twinzo"
        await pilot.pause()
        await pilot.press("m")  # not a plant tab: nothing opens
        await pilot.pause()
        assert app.screen is app.main
