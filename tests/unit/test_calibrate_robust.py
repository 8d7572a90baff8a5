"""RANSAC rejects exactly the planted outliers; leave-one-out exposes a bad survey point."""

from __future__ import annotations

import numpy as np
import pytest

from dtp_console.calibrate import (
    MODELS,
    CalibrationError,
    ControlPoint,
    ModelName,
    Transform,
    fit_model,
    leave_one_out,
    robust_fit,
)
from tests.unit.test_calibrate_fit import TRUE, clean_points, max_position_error, synthetic_points


def _inlier_rms(points: list[ControlPoint], planted: set[str], transform: Transform) -> float:
    good = [p for p in points if p.name not in planted]
    vendor = np.array([(p.vendor_x, p.vendor_y) for p in good])
    twinzo = np.array([(p.twinzo_x, p.twinzo_y) for p in good])
    predicted = transform.apply(vendor)
    return float(np.sqrt(np.mean(np.sum((predicted - twinzo) ** 2, axis=1))))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("model", MODELS)
def test_robust_fit_names_exactly_the_planted_outliers(model: ModelName, seed: int) -> None:
    points, planted = synthetic_points(seed=seed)
    result = robust_fit(points, model)
    assert {r.name for r in result.rejected} == planted
    assert sum(result.inlier) == len(points) - len(planted)
    for rejection in result.rejected:
        assert rejection.residual_mm > 9_000
        assert "threshold 1000 mm" in rejection.reason
        assert f"{rejection.residual_mm:,.0f} mm from the fit over the other 8" in rejection.reason
    # Recovers the ground truth: every floor position within 150 mm (the 6-parameter
    # affine, fitted to 8 points with 50 mm noise, extrapolates a little worse).
    assert max_position_error(result.fit.transform) < (300 if model == "affine" else 150)


@pytest.mark.parametrize("seed", range(5))
def test_robust_similarity_recovers_the_parameters(seed: int) -> None:
    points, _ = synthetic_points(seed=seed)
    t = robust_fit(points, "similarity").fit.transform
    assert t.flips
    assert t.rotation_deg == pytest.approx(TRUE.rotation_deg, abs=0.05)
    assert t.scale_x == pytest.approx(TRUE.scale_x, rel=1e-3)
    for key in ("a", "b", "c", "d"):
        assert getattr(t, key) == pytest.approx(getattr(TRUE, key), abs=1.0)
    assert t.tx == pytest.approx(TRUE.tx, abs=150)
    assert t.ty == pytest.approx(TRUE.ty, abs=150)


@pytest.mark.parametrize("model", MODELS)
def test_plain_least_squares_is_visibly_worse(model: ModelName) -> None:
    points, planted = synthetic_points()
    plain = fit_model(points, model)
    robust = robust_fit(points, model).fit
    plain_rms = _inlier_rms(points, planted, plain.transform)
    robust_rms = _inlier_rms(points, planted, robust.transform)
    # On the good points: metres off against a few centimetres.
    assert plain_rms > 1_000
    assert robust_rms < 100
    assert plain_rms > 20 * robust_rms
    assert max_position_error(plain.transform) > 10 * max_position_error(robust.transform)


def test_clean_data_rejects_nothing() -> None:
    result = robust_fit(clean_points(), "affine")
    assert result.rejected == ()
    assert all(result.inlier)
    assert "all 220 3-point subsets" in result.method


def test_threshold_is_respected() -> None:
    points, planted = synthetic_points()
    # A threshold above the outliers' distance keeps them all.
    assert robust_fit(points, "similarity", threshold_mm=50_000).rejected == ()
    # A 1 mm threshold under 50 mm noise: no three points agree, and it says so.
    with pytest.raises(CalibrationError, match="no 3 points agree within 1 mm"):
        robust_fit(points, "similarity", threshold_mm=1)
    # A 100 mm one rejects the outliers and perhaps a noisy marker, never fewer.
    assert planted <= {r.name for r in robust_fit(points, "similarity", threshold_mm=100).rejected}


@pytest.mark.parametrize("threshold", [0.0, -5.0, float("nan")])
def test_bad_threshold(threshold: float) -> None:
    with pytest.raises(CalibrationError, match="threshold"):
        robust_fit(clean_points(), "affine", threshold_mm=threshold)


def test_sampling_is_used_for_many_points_and_is_deterministic() -> None:
    points, planted = synthetic_points(count=40, outliers=(3, 11, 19, 27, 35))
    first = robust_fit(points, "similarity", max_subsets=300)
    second = robust_fit(points, "similarity", max_subsets=300)
    assert "300 random (seed 0) of the 9880" in first.method
    assert {r.name for r in first.rejected} == planted
    assert first.fit.transform == second.fit.transform


def test_leave_one_out_exposes_a_bad_survey_point_under_the_threshold() -> None:
    points = clean_points()
    bad = points[5]
    points[5] = ControlPoint(bad.name, bad.vendor_x, bad.vendor_y, bad.twinzo_x + 800, bad.twinzo_y)
    loo = leave_one_out(points, "similarity")
    in_sample = fit_model(points, "similarity").residuals_mm
    assert len(loo) == len(points)
    assert all(value is not None for value in loo)
    # Left out, the bad point misses by more than in the fit that it pulled towards itself...
    assert loo[5] is not None
    assert loo[5] > in_sample[5]
    assert loo[5] > 700
    # ...and stands out from every other point.
    others = [v for i, v in enumerate(loo) if i != 5 and v is not None]
    assert loo[5] > 2 * max(others)
    assert loo[5] > 5 * float(np.median(others))
    # 800 mm is under the 1000 mm threshold: not rejected, but visible.
    result = robust_fit(points, "similarity")
    assert result.rejected == ()
    assert result.loo_mm[5] == pytest.approx(loo[5])


def test_leave_one_out_is_none_where_the_rest_is_degenerate() -> None:
    points = clean_points()[:3]
    assert leave_one_out(points, "affine") == (None, None, None)
