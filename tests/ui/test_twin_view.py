"""The twin view: select the lift in the registry tab, see its RMS sparkline and alerts."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, TabbedContent

from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.screens.twin import TwinScreen, TwinStreams
from dtp_console.ui.widgets.registry_panel import RegistryPanel
from tests.ui.harness import TWIN_SCREENS, make_app, prepare, settle

SnapCompare = Callable[..., bool]


async def _open_lift(pilot: Pilot[int]) -> TwinScreen:
    await settle(pilot, rounds=2)
    app = pilot.app
    assert isinstance(app, DtpConsoleApp)
    app.main.query_one(TabbedContent).active = "tab-registry"
    await pilot.pause()
    panel = app.main.query_one(RegistryPanel)
    for _ in range(50):
        if panel.shown_ids:
            break
        await pilot.pause(0.02)
    assert panel.shown_ids == ["dt:EnergyHvac_001", "dt:Lift_001", "dt:Room1_001"]
    table = panel.query_one(DataTable)
    table.focus()
    await pilot.press("down", "enter")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, TwinScreen)
    return screen


async def test_selecting_the_lift_shows_its_rms_sparkline_and_an_alert(tmp_path: Path) -> None:
    app = make_app(tmp_path, twins=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_lift(pilot)
        assert screen.twin.id == "dt:Lift_001"
        names = [s.name for s in screen.streams]
        assert names == ["Lift_001 vibration RMS"]
        (rms,) = screen.streams
        assert rms.unit == "mm/s"
        assert rms.threshold == 4.5
        drawn = screen.query_one(TwinStreams).render().plain
        assert "Lift_001 vibration RMS" in drawn
        assert "mm/s" in drawn
        assert "alert ≥ 4.50" in drawn
        assert any("\u2801" <= c <= "\u28ff" for c in drawn), "a braille sparkline"
        assert "vibration_alert" in screen.section("events")
        assert "rms=" in screen.section("events")
        deps = screen.section("deps")
        assert "dt:EnergyHvac_001" in deps
        assert "dt:LiftCtrl_9 (unknown)" in deps
        assert "maintenance" in screen.section("lifecycle")
        await pilot.pause(0.2)
        assert "healthy" in screen.section("services")
        await pilot.press("escape")
        assert not isinstance(app.screen, TwinScreen)


async def test_deprecate_and_activate_from_the_twin_view(tmp_path: Path) -> None:
    app = make_app(tmp_path, twins=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_lift(pilot)
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, TwinScreen), "asks first"
        await pilot.press("y")
        await pilot.pause(0.2)
        assert screen.twin.status == "deprecated"
        await pilot.press("a")
        await pilot.pause(0.2)
        assert str(screen.twin.status) == "active"


async def test_stale_streams_stand_out(tmp_path: Path) -> None:
    app = make_app(tmp_path, twins=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_lift(pilot)
        engine = pilot.app.engine  # type: ignore[attr-defined]
        engine.clock.advance(120.0)
        screen.refresh_live()
        widget = screen.query_one(TwinStreams)
        assert widget.is_stale(screen.streams[0])
        assert "stale 2m" in widget.render().plain


async def test_hostile_stream_names_are_shown_as_text(tmp_path: Path) -> None:
    app = make_app(tmp_path, twins=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_lift(pilot)
        worker = pilot.app.engine.platform  # type: ignore[attr-defined]
        worker.handle(
            "dtp/lift/Lift_001/vibration",
            b'{"value": 1.0, "unit": "[b]mm\\u001b[2J", "name": "x"}',
        )
        screen.refresh_live()
        drawn = screen.query_one(TwinStreams).render().plain
        assert "\x1b" not in drawn
        assert "[b]mm\\x1b" in drawn


@pytest.mark.parametrize("name", list(TWIN_SCREENS))
def test_twin_view_snapshot(snap_compare: SnapCompare, tmp_path: Path, name: str) -> None:
    shot = TWIN_SCREENS[name]
    app = make_app(tmp_path, twins=True)
    assert snap_compare(app, terminal_size=shot.size, run_before=partial(prepare, shot=shot))
