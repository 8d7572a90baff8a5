"""The console attached to a service: link badge, the greyed last picture, read-only keys.

The engine is a `FrozenRemote` (tests/ui/attached.py): a `RemoteEngine` whose stream
is a seeded service's snapshot, so the attached picture is deterministic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import TabbedContent

from dtp_console.registry.model import TwinRecord
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.screens.twin import TwinScreen, TwinStreams
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.badges import Badge
from dtp_console.ui.widgets.registry_panel import RegistryPanel
from tests.ui.attached import URL, FrozenRemote, make_attached_app

SnapCompare = Callable[..., bool]


async def _attached(pilot: Pilot[int]) -> FrozenRemote:
    app = pilot.app
    assert isinstance(app, DtpConsoleApp)
    engine = app.engine
    assert isinstance(engine, FrozenRemote)
    await engine.ready.wait()
    app.refresh_now()
    await pilot.pause()
    return engine


def _badges(app: DtpConsoleApp) -> dict[str, Badge]:
    return {b.info.key: b for b in app.main.query(Badge)}


def _notes(app: DtpConsoleApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_the_link_badge_goes_down_greys_the_picture_and_comes_back(tmp_path: Path) -> None:
    app = make_attached_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        engine = await _attached(pilot)
        link = _badges(app)["link"]
        assert link.info.label == "attach up"
        assert link.info.detail == URL
        assert link.has_class("-ok")
        assert not app.main.has_class("-link-down")
        rows = app.main.query_one(AmrTable).row_keys
        assert rows
        engine.drop("the service closed the connection")
        app.refresh_now()
        await pilot.pause()
        link = _badges(app)["link"]
        assert link.info.label == "attach down"
        assert link.has_class("-fail")
        assert "closed the connection" in (link.info.error or "")
        assert app.main.has_class("-link-down")
        assert app.main.query_one(AmrTable).row_keys == rows  # the last picture stays
        engine.push("snapshot", {"mono": engine.clock.monotonic(), "plants": {}})
        app.refresh_now()
        await pilot.pause()
        assert _badges(app)["link"].info.label == "attach up"
        assert not app.main.has_class("-link-down")


async def test_a_viewer_token_disables_the_editing_keys_and_says_why(tmp_path: Path) -> None:
    app = make_attached_app(tmp_path, viewer=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await _attached(pilot)
        await pilot.press("m")
        await pilot.pause()
        assert len(app.screen_stack) == 2  # no editor opened
        assert any("viewer token: read-only" in n for n in _notes(app))
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("w")
        await pilot.pause()
        assert any("calibration write is disabled" in n for n in _notes(app))
        await pilot.press("escape")
        await pilot.pause()
        app.main.query_one(TabbedContent).active = "tab-registry"
        await pilot.pause()
        app.main.query_one(RegistryPanel).action_deprecate()
        await pilot.pause()
        assert any("deprecate is disabled: viewer token" in n for n in _notes(app))


async def test_q_detaches_and_says_so(tmp_path: Path) -> None:
    app = make_attached_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await _attached(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert any("detaching" in n for n in _notes(app))
    assert app.return_code == 0


@pytest.mark.parametrize("down", [False, True], ids=["up", "down"])
def test_attached_plant_tab(snap_compare: SnapCompare, tmp_path: Path, *, down: bool) -> None:
    async def prepare(pilot: Pilot[int]) -> None:
        engine = await _attached(pilot)
        app = pilot.app
        assert isinstance(app, DtpConsoleApp)
        app.main.query_one(TabbedContent).active = "tab-plant-0"
        await pilot.pause()
        if down:
            engine.drop("the service closed the connection")
        app.refresh_now()
        await pilot.pause()

    app = make_attached_app(tmp_path)
    assert snap_compare(app, terminal_size=(120, 40), run_before=prepare)


async def test_the_twin_view_says_live_streams_stay_in_the_service(tmp_path: Path) -> None:
    app = make_attached_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        engine = await _attached(pilot)
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        twin = TwinRecord(
            id="dt:Lift_001", name="Lift", tenant="plant-a", status="active",
            created_at=now, updated_at=now,
        )  # fmt: skip
        await app.push_screen(TwinScreen(engine, twin, engine.clock))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TwinScreen)
        screen.refresh_live()
        streams = screen.query_one(TwinStreams)
        await pilot.pause()
        assert "not available attached" in str(streams.render())
