"""The calibration workbench: open it from a plant tab, add points, fit, write the affine."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select

from dtp_console.bridge.geometry import apply_affine, invert_affine
from dtp_console.calibrate import ControlPoint, load_points
from dtp_console.config.loader import load_config
from dtp_console.config.model import Affine
from dtp_console.runtime import Engine
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.screens.calibration import CalibrationScreen
from dtp_console.ui.screens.help import HelpScreen
from dtp_console.ui.widgets.residual_map import (
    MAX_EXAGGERATION,
    ResidualMap,
    ResidualPoint,
    exaggeration_for,
)
from dtp_console.view import AffineSaved
from tests.ui.harness import make_app, settle

SIZE = (130, 48)
PLANT = "Old Plant"
#: The survey's truth: the seeded config's affine, but 1.5 m / 0.8 m off in translation.
TRUTH = Affine(a=999.74, b=22.88, c=22.88, d=-999.74, tx=95598.8 + 1500, ty=167357.6 - 800)
VENDOR = [(-50.0, 50.0), (100.0, 80.0), (120.0, -30.0), (0.0, 0.0), (60.0, -40.0)]


def _synthetic(names: str = "abcde") -> list[ControlPoint]:
    points = []
    for name, (x, y) in zip(names, VENDOR, strict=False):
        tx, ty = apply_affine(TRUTH, x, y)
        points.append(ControlPoint(f"p-{name}", x, y, tx, ty))
    return points


def _engine(app: DtpConsoleApp) -> Engine:
    """The real engine behind the App's `ConsoleEngine` door (tests look inside)."""
    assert isinstance(app.engine, Engine)
    return app.engine


async def _open(app: DtpConsoleApp, pilot: Pilot[int]) -> CalibrationScreen:
    await settle(pilot)
    await pilot.press("c")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, CalibrationScreen)
    assert screen.plant.name == PLANT
    return screen


async def test_c_opens_the_workbench_and_a_fit_needs_three_points(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        assert "no points yet" in screen.summary
        for point in _synthetic("ab"):
            screen.add_point(point)
        assert screen.report is None
        assert "no fit" in screen.summary
        await pilot.press("w")
        assert screen.status.startswith("not written:")
        assert _engine(app).bridges[PLANT].affine == app.engine.plants[0].affine
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CalibrationScreen)


async def test_c_does_nothing_off_a_plant_tab(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("right_square_bracket", "right_square_bracket")  # the twinzo tab
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, CalibrationScreen)


async def test_capture_fit_and_write_update_the_file_and_the_bridge(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        engine = _engine(app)
        for point in _synthetic("abc"):
            screen.add_point(point)
        # Capture one robot through the form, typing where "twinzo shows it" (the truth).
        device = engine.state.plants[PLANT].devices["ati_amr_001"]
        assert device.x is not None and device.y is not None
        bridge = engine.bridges[PLANT]
        vx, vy = apply_affine(invert_affine(bridge.affine), device.x, device.y)
        seen_x, seen_y = apply_affine(TRUTH, vx, vy)
        screen.query_one("#cal-robot", Select).value = "ati_amr_001"
        screen.query_one("#cal-x", Input).value = f"{seen_x:.1f}"
        screen.query_one("#cal-y", Input).value = f"{seen_y:.1f}"
        screen.query_one("#cal-name", Input).value = "dock-1"
        screen.query_one("#cal-name", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert screen.status.startswith("captured dock-1"), screen.status
        assert [p.name for p in screen.points] == ["p-a", "p-b", "p-c", "dock-1"]
        captured = screen.points[-1]
        assert abs(captured.vendor_x - vx) < 1e-6 and abs(captured.vendor_y - vy) < 1e-6
        report = screen.report
        assert report is not None
        assert report.chosen.max_mm < 1.0
        assert "4/4 points kept" in screen.summary
        table = screen.query_one("#cal-points", DataTable)
        assert table.row_count == 4
        assert screen.focused is table  # so l, m, w work at once
        residual_map = screen.query_one(ResidualMap)
        assert len(residual_map.points) == 4
        assert "p-a" in "".join(
            residual_map.render_line(y).text for y in range(residual_map.size.height)
        )
        await pilot.press("m")  # similarity → affine
        assert screen.model == "affine"
        assert screen.summary.startswith("model: affine")
        await pilot.press("w")
        await pilot.pause()
        assert screen.status.startswith(f"wrote {engine.config_path}"), screen.status
        assert abs(bridge.affine.tx - TRUTH.tx) < 1.0
        assert abs(bridge.affine.ty - TRUTH.ty) < 1.0
        assert abs(bridge.affine.a - TRUTH.a) < 0.01
        assert engine.config_path is not None
        stored = load_config(engine.config_path).plant(PLANT).affine
        assert stored == bridge.affine
        text = engine.config_path.read_text(encoding="utf-8")
        assert "TX: 97098.8" in text  # the file's upper-case spelling is kept
        # The affine just changed and this robot has sent nothing since: a capture
        # still pairs the vendor position it sent, not its old twinzo position
        # run back through the new affine.
        again = screen.capture("ati_amr_001", seen_x, seen_y, "dock-1 again")
        assert abs(again.vendor_x - vx) < 1e-6 and abs(again.vendor_y - vy) < 1e-6


async def test_the_screen_changes_the_plant_only_through_the_engine_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        engine = _engine(app)
        assert engine.config_path is not None
        file_before = engine.config_path.read_text(encoding="utf-8")
        affine_before = engine.bridges[PLANT].affine
        saves: list[tuple[str, dict[str, float], str]] = []
        captures: list[tuple[str, str, float, float, str]] = []

        async def save_affine(
            plant: str, values: Mapping[str, float], *, reason: str
        ) -> AffineSaved:
            saves.append((plant, dict(values), reason))
            return AffineSaved(plant, {"a": 1.0, "d": 2.0}, None, applied=False)

        def capture_point(plant: str, vid: str, x: float, y: float, name: str) -> ControlPoint:
            captures.append((plant, vid, x, y, name))
            return ControlPoint("from-engine", 1.0, 2.0, x, y)

        monkeypatch.setattr(engine, "save_affine", save_affine)
        monkeypatch.setattr(engine, "capture_point", capture_point)
        point = screen.capture("ati_amr_001", 10.0, 20.0, "dock")
        assert captures == [(PLANT, "ati_amr_001", 10.0, 20.0, "dock")]
        assert point.name == "from-engine" and screen.points == [point]
        for synthetic in _synthetic("abc"):
            screen.add_point(synthetic)
        screen.query_one("#cal-points", DataTable).focus()
        await pilot.press("W")
        await pilot.pause()
        report = screen.report
        assert report is not None
        assert saves == [
            (PLANT, report.chosen.transform.as_dict(), f"calibration ({report.chosen.label})")
        ]
        # What the engine says it did, not what the screen would have done itself.
        assert screen.status == (
            "not stored (the console runs without a config file); no bridge running: A=1 D=2"
        )
        assert engine.config_path.read_text(encoding="utf-8") == file_before
        assert engine.bridges[PLANT].affine == affine_before


async def test_an_outlier_is_rejected_and_shown(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        for point in _synthetic():
            screen.add_point(point)
        vx, vy = 30.0, 20.0
        tx, ty = apply_affine(TRUTH, vx, vy)
        screen.add_point(ControlPoint("battery", vx, vy, tx + 12_000, ty - 4_000))
        report = screen.report
        assert report is not None
        assert [r.name for r in report.rejected] == ["battery"]
        assert "rejected battery" in screen.summary
        drawn = {p.name: p.used for p in screen.query_one(ResidualMap).points}
        assert drawn["battery"] is False


async def test_load_reads_a_csv_and_names_a_bad_row(tmp_path: Path) -> None:
    csv = tmp_path / "points.csv"
    lines = ["name,vendor_x,vendor_y,twinzo_x,twinzo_y"]
    lines += [f"{p.name},{p.vendor_x},{p.vendor_y},{p.twinzo_x},{p.twinzo_y}" for p in _synthetic()]
    lines.append("broken,1,2,three,4")
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        field = screen.query_one("#cal-csv", Input)
        field.value = str(tmp_path / "missing.csv")
        screen.query_one("#cal-points", DataTable).focus()
        await pilot.press("l")
        assert "file not found" in screen.status
        field.value = str(csv)
        await pilot.press("l")
        assert screen.status.startswith("loaded 5 point(s)"), screen.status
        assert "line 7" in screen.status
        assert screen.report is not None


async def test_help_lists_the_calibration_keys(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        rows = help_screen.rows()
        assert ("main screen", "c", "Calibrate") in rows
        assert any(section == "calibration" and does == "Write affine" for section, _, does in rows)


def test_exaggeration_is_a_round_factor_that_makes_residuals_visible() -> None:
    points = [ResidualPoint("a", 0.0, 0.0, 100.0, 0.0)]
    assert exaggeration_for(points, 265_000.0) == 200.0
    assert exaggeration_for(points, 500.0) == 1.0
    assert exaggeration_for([ResidualPoint("b", 0.0, 0.0)], 265_000.0) == 1.0
    exact = [ResidualPoint("c", 0.0, 0.0, 1e-9, 0.0)]  # a perfect fit's rounding noise
    assert exaggeration_for(exact, 265_000.0) == MAX_EXAGGERATION


async def test_export_writes_the_points_back_as_a_loadable_csv(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.export_dir = tmp_path / "exports"
        screen.query_one("#cal-points", DataTable).focus()
        await pilot.press("e")
        assert screen.status == "no points to export yet"
        points = _synthetic()
        for point in points:
            screen.add_point(point)
        await pilot.press("e")
        [written] = sorted((tmp_path / "exports").glob("Old-Plant-*.csv"))
        assert screen.status == f"exported 5 point(s) to {written}"
        assert screen.query_one("#cal-csv", Input).value == str(written)
        loaded = load_points(written).points
        assert [dataclasses.replace(p, line=None) for p in loaded] == points
        # A folder that cannot be written says why and keeps the points.
        blocker = tmp_path / "file"
        blocker.write_text("x")
        screen.export_dir = blocker / "sub"
        await pilot.press("e")
        assert screen.status.startswith("not exported: ") and "cannot write" in screen.status
        assert len(screen.points) == 5
