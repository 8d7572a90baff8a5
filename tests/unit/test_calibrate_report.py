"""The report: models side by side, robust fit, per-point rows, plausibility checks."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dtp_console.calibrate import (
    CalibrationError,
    ControlPoint,
    PointSet,
    RowProblem,
    build_report,
)
from dtp_console.calibrate.render import render_text
from dtp_console.config.model import Bounds
from tests.unit.test_calibrate_fit import TRUE, clean_points, synthetic_points

FLOOR = Bounds(x_min=0, x_max=265_000, y_min=46_000, y_max=218_000)


def _numbered(points: list[ControlPoint]) -> tuple[ControlPoint, ...]:
    return tuple(dataclasses.replace(p, line=i + 2) for i, p in enumerate(points))


def test_report_with_outliers() -> None:
    points, planted = synthetic_points()
    skipped = (RowProblem(9, "vendor_y is not a number ('oops'); row skipped"),)
    report = build_report(
        PointSet(_numbered(points), skipped, "points.csv"), bounds=FLOOR, plant="Old Plant"
    )
    assert [s.model for s in report.models] == ["affine", "similarity", "similarity-fixed-scale"]
    assert {r.name for r in report.rejected} == planted
    assert report.kept_points == 8
    assert report.chosen == report.robust
    assert report.chosen.label == "robust similarity"
    assert report.robust.rms_mm < 100
    assert all(s.rms_mm > 1_000 for s in report.models)
    # On the kept points similarity and affine agree within 2% (the replaced deployment's
    # finding); with the outliers in, they do not even agree with each other as well.
    assert report.similarity_vs_affine_pct < 2.0
    assert report.similarity_vs_affine_all_pct > report.similarity_vs_affine_pct
    assert not report.residuals_too_large
    rows = {row.name: row for row in report.points}
    assert all(not rows[name].used for name in planted)
    assert all(rows[name].reason for name in planted)
    assert all(row.used and row.reason is None for row in rows.values() if row.name not in planted)
    assert all(row.in_bounds for row in rows.values())
    assert any("line 9" in w for w in report.warnings)


def test_text_report() -> None:
    points, planted = synthetic_points()
    text = render_text(
        build_report(PointSet(_numbered(points), (), "points.csv"), bounds=FLOOR, plant="Old Plant")
    )
    assert text.startswith("Calibration of plant 'Old Plant': 12 points from points.csv\n")
    header = text.splitlines()[2].split()
    assert header == ["affine", "similarity", "fixed", "1000", "robust", "similarity"]
    for label in ("RMS residual mm", "rotation °", "axis flip", "condition", "TX", "TY"):
        assert label in text
    assert "rejected 4 of 12 points" in text
    for name in planted:
        assert f"{name}  " in text
    assert "-0.0000" not in text
    assert "Chosen (robust similarity, stored by --write):" in text
    assert "kept points" in text


def test_json_report_is_serialisable_and_complete() -> None:
    points, planted = synthetic_points()
    data = build_report(points, bounds=FLOOR, model="affine").to_json()
    data = json.loads(json.dumps(data))
    assert data["model"] == "affine"
    assert set(data["models"]) == {"affine", "similarity", "similarity-fixed-scale"}
    assert {r["name"] for r in data["robust"]["rejected"]} == planted
    assert data["chosen"]["label"] == "robust affine"
    assert set(data["chosen"]["affine"]) == {"a", "b", "c", "d", "tx", "ty"}
    assert data["chosen"]["flip"] is True
    assert len(data["points"]) == 12
    assert data["bounds"] == FLOOR.model_dump()


def test_keep_all_chooses_the_plain_fit() -> None:
    points, _ = synthetic_points()
    report = build_report(points, keep_all=True, warn_mm=500)
    assert report.chosen == report.models[1]
    assert all(row.used for row in report.points)
    assert report.residuals_too_large
    assert any("residuals above 500 mm" in w for w in report.warnings)


def test_points_outside_the_floor_are_named() -> None:
    points = clean_points()
    small_floor = Bounds(x_min=0, x_max=265_000, y_min=46_000, y_max=120_000)
    report = build_report(points, bounds=small_floor)
    outside = [row.name for row in report.points if row.in_bounds is False]
    assert outside
    warning = next(w for w in report.warnings if "outside the floor bounds" in w)
    assert all(name in warning for name in outside)
    assert "Y 46000–120000" in warning


def test_no_bounds_is_a_note_not_a_warning() -> None:
    report = build_report(clean_points())
    assert all(row.in_bounds is None for row in report.points)
    assert any("no floor bounds" in n for n in report.notes)
    assert report.warnings == ()


def test_bad_survey_point_under_the_threshold_is_flagged() -> None:
    points = clean_points()
    points[5] = dataclasses.replace(points[5], twinzo_x=points[5].twinzo_x + 800)
    # In the fit it pulled towards itself it misses by ~630 mm; left out, by ~760 mm.
    report = build_report(points, warn_mm=700)
    assert report.rejected == ()
    assert not report.residuals_too_large
    (warning,) = report.warnings
    assert "left out of the fit" in warning
    assert points[5].name in warning


def test_wrong_units_are_noted() -> None:
    # Vendor positions in millimetres while the fixed scale says metres.
    points = [
        dataclasses.replace(p, vendor_x=p.vendor_x * 1000, vendor_y=p.vendor_y * 1000)
        for p in clean_points()
    ]
    report = build_report(points, model="similarity")
    assert any("check the vendor units" in n for n in report.notes)


def test_three_points_warn_that_the_affine_proves_nothing() -> None:
    points = clean_points()[:3]
    report = build_report(points, model="affine")
    assert any("zero by construction" in w for w in report.warnings)


def test_degenerate_input_raises() -> None:
    with pytest.raises(CalibrationError, match="at least 3 points"):
        build_report(PointSet((), (), "empty.csv"))


def test_true_transform_is_what_gets_chosen_on_clean_data() -> None:
    chosen = build_report(clean_points(noise_mm=0.0), model="affine").chosen.transform
    for key, value in TRUE.as_dict().items():
        assert getattr(chosen, key) == pytest.approx(value, abs=1e-6 * max(1.0, abs(value)))


def test_degenerate_input_names_the_skipped_rows() -> None:
    points = clean_points()[:2]
    skipped = (RowProblem(4, "twinzo_x is not a number ('x'); row skipped"),)
    with pytest.raises(CalibrationError, match=r"only 2 control point.*line 4: twinzo_x"):
        build_report(PointSet(tuple(points), skipped, "p.csv"))
