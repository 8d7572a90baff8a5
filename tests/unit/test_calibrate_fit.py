"""Least-squares fits: affine, similarity (with reflection), fixed-scale; degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dtp_console.calibrate import (
    CalibrationError,
    ControlPoint,
    Transform,
    fit_affine,
    fit_model,
    fit_similarity,
    fit_similarity_fixed_scale,
)

#: The real-looking transform of MISSION.md: metres → mm, 1.3° rotation, Y flip.
TRUE = Transform(a=999.74, b=22.88, c=22.88, d=-999.74, tx=95598.8, ty=167357.6)
#: Where the planted outliers sit among 12 points (interleaved, not at the end).
OUTLIER_INDEXES = (1, 4, 7, 10)


def synthetic_points(
    *,
    seed: int = 7,
    count: int = 12,
    outliers: tuple[int, ...] = OUTLIER_INDEXES,
    noise_mm: float = 50.0,
    truth: Transform = TRUE,
) -> tuple[list[ControlPoint], set[str]]:
    """Points on the floor (X 0–265 000, Y 46 000–218 000 mm) seen through `truth`.

    twinzo positions get Gaussian noise; the `outliers` are moved 10–14 m in a
    random direction (like the battery stations of the replaced deployment).
    Returns the points and the names of the planted outliers.
    """
    rng = np.random.default_rng(seed)
    inverse = np.linalg.inv(truth.matrix)
    points: list[ControlPoint] = []
    planted: set[str] = set()
    for index in range(count):
        twinzo = np.array([rng.uniform(5_000, 260_000), rng.uniform(50_000, 214_000)])
        vendor = inverse @ (twinzo - [truth.tx, truth.ty])
        name = f"marker-{index:02d}"
        if index in outliers:
            angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(10_000, 14_000)
            offset = distance * np.array([math.cos(angle), math.sin(angle)])
            name = f"battery-{index:02d}"
            planted.add(name)
        else:
            offset = rng.normal(0, noise_mm, 2)
        seen = twinzo + offset
        points.append(
            ControlPoint(name, float(vendor[0]), float(vendor[1]), float(seen[0]), float(seen[1]))
        )
    return points, planted


def max_position_error(fitted: Transform, truth: Transform = TRUE) -> float:
    """Largest distance (mm) between the two transforms over a grid covering the floor."""
    xs, ys = np.meshgrid(np.linspace(0, 265_000, 12), np.linspace(46_000, 218_000, 12))
    floor = np.column_stack([xs.ravel(), ys.ravel()])
    vendor = (floor - [truth.tx, truth.ty]) @ np.linalg.inv(truth.matrix).T
    return float(np.max(np.linalg.norm(fitted.apply(vendor) - truth.apply(vendor), axis=1)))


def clean_points(noise_mm: float = 50.0) -> list[ControlPoint]:
    points, _ = synthetic_points(outliers=(), noise_mm=noise_mm)
    return points


def test_exact_points_recover_the_transform_with_every_model() -> None:
    points = clean_points(noise_mm=0.0)
    exact_scale = math.hypot(TRUE.a, TRUE.c)
    fits = [fit_affine(points), fit_similarity(points)]
    fits.append(fit_similarity_fixed_scale(points, exact_scale))
    for fit in fits:
        got = fit.transform.as_dict()
        for key, expected in TRUE.as_dict().items():
            assert got[key] == pytest.approx(expected, abs=1e-6 * max(1.0, abs(expected)))
        assert fit.max_mm < 1e-6


def test_geometry_of_the_real_transform() -> None:
    assert TRUE.flips
    assert TRUE.rotation_deg == pytest.approx(1.3107, abs=1e-3)
    assert TRUE.scale_x == pytest.approx(1000.0, abs=0.01)
    assert TRUE.scale_y == pytest.approx(TRUE.scale_x)
    assert TRUE.shear_deg == pytest.approx(0.0, abs=1e-9)


def test_affine_and_similarity_agree_within_two_percent_on_clean_data() -> None:
    points = clean_points()
    affine, similarity = fit_affine(points).transform, fit_similarity(points).transform
    scale = (affine.scale_x + affine.scale_y) / 2
    assert np.max(np.abs(affine.matrix - similarity.matrix)) / scale < 0.02
    assert similarity.rotation_deg == pytest.approx(affine.rotation_deg, abs=0.05)
    assert similarity.flips
    assert affine.flips
    assert max_position_error(similarity) < 200
    assert max_position_error(affine) < 300


def test_similarity_picks_the_reflection_and_says_so() -> None:
    points = clean_points()
    fit = fit_similarity(points)
    assert fit.transform.flips
    assert fit.rms_mm < 100
    unflipped = fit_similarity(points, allow_reflection=False)
    assert not unflipped.transform.flips
    assert unflipped.rms_mm > 100 * fit.rms_mm


def test_similarity_without_reflection_when_none_is_needed() -> None:
    truth = Transform(a=0.8, b=-0.6, c=0.6, d=0.8, tx=10.0, ty=-5.0)  # 36.87°, scale 1
    points, _ = synthetic_points(outliers=(), noise_mm=0.0, truth=truth)
    fit = fit_similarity(points)
    assert not fit.transform.flips
    assert fit.transform.rotation_deg == pytest.approx(36.8699, abs=1e-3)
    assert fit.transform.scale_x == pytest.approx(1.0)


def test_fixed_scale_recovers_rotation_and_translation() -> None:
    points = clean_points()
    fit = fit_similarity_fixed_scale(points, 1000.0)
    t = fit.transform
    assert t.scale_x == pytest.approx(1000.0)
    assert t.scale_y == pytest.approx(1000.0)
    assert t.flips
    assert t.rotation_deg == pytest.approx(TRUE.rotation_deg, abs=0.02)
    assert t.tx == pytest.approx(TRUE.tx, abs=200)
    assert t.ty == pytest.approx(TRUE.ty, abs=200)
    # The true scale is 1000.0018: exactly 1000 costs almost nothing.
    assert fit.rms_mm < 100


def test_weights_pull_the_fit() -> None:
    points = clean_points(noise_mm=0.0)
    moved = points[0]
    shifted = ControlPoint(
        moved.name, moved.vendor_x, moved.vendor_y, moved.twinzo_x + 2000, moved.twinzo_y
    )
    light = [
        ControlPoint(
            shifted.name,
            shifted.vendor_x,
            shifted.vendor_y,
            shifted.twinzo_x,
            shifted.twinzo_y,
            weight=0.01,
        ),
        *points[1:],
    ]
    heavy = [
        ControlPoint(
            shifted.name,
            shifted.vendor_x,
            shifted.vendor_y,
            shifted.twinzo_x,
            shifted.twinzo_y,
            weight=100.0,
        ),
        *points[1:],
    ]
    assert fit_affine(light).residuals_mm[0] > fit_affine(heavy).residuals_mm[0] * 10


def test_fit_reports_condition_and_statistics() -> None:
    fit = fit_similarity(clean_points())
    assert 1.0 <= fit.condition < 5.0
    assert fit.max_mm >= fit.rms_mm >= fit.mean_mm > 0
    assert len(fit.residuals_mm) == len(fit.names) == 12


def _point(
    name: str, vx: float, vy: float, tx: float | None = None, ty: float | None = None
) -> ControlPoint:
    seen_x, seen_y = TRUE.apply(np.array([[vx, vy]]))[0]
    return ControlPoint(
        name, vx, vy, float(seen_x if tx is None else tx), float(seen_y if ty is None else ty)
    )


@pytest.mark.parametrize("count", [0, 1, 2])
def test_too_few_points(count: int) -> None:
    points = [_point(f"p{i}", 10.0 * i, 5.0 * i * i) for i in range(count)]
    for model in ("affine", "similarity", "similarity-fixed-scale"):
        with pytest.raises(CalibrationError, match="at least 3 points"):
            fit_model(points, model)


def test_collinear_points() -> None:
    points = [_point(f"p{i}", 10.0 * i, 20.0 * i + 3) for i in range(6)]
    with pytest.raises(CalibrationError, match="one line"):
        fit_affine(points)
    with pytest.raises(CalibrationError, match="one line"):
        fit_similarity(points)


def test_nearly_collinear_points() -> None:
    points = [_point(f"p{i}", 10.0 * i, 20.0 * i + (1e-5 if i == 3 else 0)) for i in range(6)]
    with pytest.raises(CalibrationError, match="one line"):
        fit_affine(points)


def test_collinear_twinzo_positions() -> None:
    points = [_point(f"p{i}", float(i), float(i * i), 1000.0 * i, 5.0) for i in range(5)]
    with pytest.raises(CalibrationError, match="twinzo positions lie on"):
        fit_affine(points)


def test_duplicate_vendor_position() -> None:
    points = [
        _point("a", 0, 0),
        _point("b", 100, 0),
        _point("c", 0, 100),
        _point("d", 100, 0, 5.0, 5.0),
    ]
    with pytest.raises(CalibrationError, match=r"'b'.*'d'.*same vendor position"):
        fit_affine(points)


def test_duplicate_name() -> None:
    points = [_point("a", 0, 0), _point("b", 100, 0), _point("c", 0, 100), _point("a", 50, 50)]
    with pytest.raises(CalibrationError, match="'a' is used twice"):
        fit_similarity(points)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_and_inf(bad: float) -> None:
    points = [_point("a", 0, 0), _point("b", 100, 0), _point("c", 0, 100), _point("d", 50, bad)]
    with pytest.raises(CalibrationError, match=r"'d'.*not a finite number"):
        fit_affine(points)


def test_non_positive_weight() -> None:
    p = _point("d", 50, 50)
    points = [
        _point("a", 0, 0),
        _point("b", 100, 0),
        _point("c", 0, 100),
        ControlPoint(p.name, p.vendor_x, p.vendor_y, p.twinzo_x, p.twinzo_y, weight=0.0),
    ]
    with pytest.raises(CalibrationError, match="non-positive weight"):
        fit_affine(points)


@pytest.mark.parametrize("scale", [0.0, -1000.0, math.nan])
def test_bad_fixed_scale(scale: float) -> None:
    with pytest.raises(CalibrationError, match="fixed scale"):
        fit_similarity_fixed_scale(clean_points(), scale)


def test_three_points_are_enough_but_the_affine_is_exact() -> None:
    points = [_point("a", 0, 0), _point("b", 100, 0), _point("c", 0, 100, 5000.0, 5000.0)]
    fit = fit_affine(points)
    assert fit.exact
    assert fit.max_mm < 1e-6
    assert not fit_similarity(points).exact
