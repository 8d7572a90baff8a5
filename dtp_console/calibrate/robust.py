"""Outlier-resistant fitting (RANSAC) and leave-one-out residuals.

RANSAC: fit the model to every 3-point subset (a seeded random sample of them
when there are more than `max_subsets`), count the points each fit puts within
`threshold_mm` of where twinzo shows them, keep the largest consensus (ties:
the smaller weighted squared error), then refit on the consensus until it stops
changing. A point is rejected when the fit over the others misses it by more
than the threshold; the reason names that distance.

Leave-one-out: each point's residual under the fit made without it. A bad
survey point pulls an ordinary fit towards itself and hides; left out, it
stands out, even when it is under the rejection threshold.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dtp_console.calibrate.errors import CalibrationError
from dtp_console.calibrate.fit import (
    MIN_POINTS,
    Fit,
    ModelName,
    check_points,
    fit_model,
    is_degenerate,
)
from dtp_console.calibrate.points import ControlPoint

__all__ = [
    "DEFAULT_THRESHOLD_MM",
    "Rejection",
    "RobustFit",
    "leave_one_out",
    "robust_fit",
]

#: Default rejection threshold: a point the others' fit misses by more than this is an outlier.
DEFAULT_THRESHOLD_MM = 1000.0
_MAX_REFITS = 10

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Rejection:
    """A point the robust fit left out, and why."""

    name: str
    residual_mm: float
    reason: str


@dataclass(frozen=True)
class RobustFit:
    """The fit over the consensus points plus what happened to every input point."""

    fit: Fit
    """The model fitted to the inliers only."""
    threshold_mm: float
    names: tuple[str, ...]
    """Every input point, in input order."""
    inlier: tuple[bool, ...]
    residuals_mm: tuple[float, ...]
    """Every input point's distance from `fit` (out of sample for rejected points)."""
    loo_mm: tuple[float | None, ...]
    """Leave-one-out residual per input point (None where the rest is degenerate)."""
    rejected: tuple[Rejection, ...]
    method: str
    """How the consensus was found, in words."""


def robust_fit(
    points: Sequence[ControlPoint],
    model: ModelName,
    *,
    scale: float = 1000.0,
    threshold_mm: float = DEFAULT_THRESHOLD_MM,
    allow_reflection: bool = True,
    max_subsets: int = 2000,
    seed: int = 0,
) -> RobustFit:
    """RANSAC fit of `model`; rejects points farther than `threshold_mm` from the others' fit.

    Deterministic: all 3-point subsets when there are at most `max_subsets`,
    otherwise that many drawn with a generator seeded by `seed`.
    """
    if not (math.isfinite(threshold_mm) and threshold_mm > 0):
        msg = f"the rejection threshold must be a positive number of mm, got {threshold_mm:g}"
        raise CalibrationError(msg)
    vendor, twinzo, weights = check_points(points)
    total = math.comb(len(points), MIN_POINTS)
    best: tuple[int, float] | None = None
    best_mask: BoolArray | None = None
    for subset in _subsets(len(points), max_subsets, seed):
        if is_degenerate(vendor[list(subset)]) or is_degenerate(twinzo[list(subset)]):
            continue
        try:
            trial = fit_model(
                [points[i] for i in subset], model, scale=scale, allow_reflection=allow_reflection
            )
        except CalibrationError:
            continue
        residuals = np.linalg.norm(trial.transform.apply(vendor) - twinzo, axis=1)
        mask = residuals <= threshold_mm
        score = (int(mask.sum()), -float(np.sum(weights[mask] * residuals[mask] ** 2)))
        if best is None or score > best:
            best, best_mask = score, mask
    if best is None or best_mask is None or best[0] < MIN_POINTS:
        msg = (
            f"no {MIN_POINTS} points agree within {threshold_mm:g} mm under the {model} model; "
            "check the survey, or raise the threshold"
        )
        raise CalibrationError(msg)
    fit, mask = _refine(points, best_mask, model, scale, threshold_mm, allow_reflection)
    residuals = np.linalg.norm(fit.transform.apply(vendor) - twinzo, axis=1)
    kept = int(mask.sum())
    rejected = tuple(
        Rejection(
            name=points[i].name,
            residual_mm=float(residuals[i]),
            reason=(
                f"{residuals[i]:,.0f} mm from the fit over the other {kept} points "
                f"(threshold {threshold_mm:g} mm)"
            ),
        )
        for i in range(len(points))
        if not mask[i]
    )
    loo_inliers = leave_one_out(
        [p for p, keep in zip(points, mask, strict=True) if keep],
        model,
        scale=scale,
        allow_reflection=allow_reflection,
    )
    loo_iter = iter(loo_inliers)
    loo = tuple(next(loo_iter) if keep else float(residuals[i]) for i, keep in enumerate(mask))
    sampled = "all" if total <= max_subsets else f"{max_subsets} random (seed {seed}) of the"
    return RobustFit(
        fit=fit,
        threshold_mm=threshold_mm,
        names=tuple(p.name for p in points),
        inlier=tuple(bool(k) for k in mask),
        residuals_mm=tuple(float(r) for r in residuals),
        loo_mm=loo,
        rejected=rejected,
        method=f"RANSAC over {sampled} {total} 3-point subsets, refit on the consensus",
    )


def leave_one_out(
    points: Sequence[ControlPoint],
    model: ModelName,
    *,
    scale: float = 1000.0,
    allow_reflection: bool = True,
) -> tuple[float | None, ...]:
    """Each point's residual (mm) under the model fitted to all the other points.

    None for a point whose removal leaves a degenerate set (too few, or on a line).
    """
    vendor, twinzo, _ = check_points(points)
    result: list[float | None] = []
    for index in range(len(points)):
        others = [p for i, p in enumerate(points) if i != index]
        try:
            fit = fit_model(others, model, scale=scale, allow_reflection=allow_reflection)
        except CalibrationError:
            result.append(None)
            continue
        predicted = fit.transform.apply(vendor[index : index + 1])[0]
        result.append(float(np.linalg.norm(predicted - twinzo[index])))
    return tuple(result)


def _subsets(count: int, max_subsets: int, seed: int) -> Iterator[tuple[int, ...]]:
    if math.comb(count, MIN_POINTS) <= max_subsets:
        yield from itertools.combinations(range(count), MIN_POINTS)
        return
    rng = np.random.default_rng(seed)
    for _ in range(max_subsets):
        yield tuple(int(i) for i in rng.choice(count, size=MIN_POINTS, replace=False))


def _refine(
    points: Sequence[ControlPoint],
    mask: BoolArray,
    model: ModelName,
    scale: float,
    threshold_mm: float,
    allow_reflection: bool,
) -> tuple[Fit, BoolArray]:
    """Refit on the consensus until the inlier set stops changing (or stops being usable)."""
    vendor, twinzo, _ = check_points(points)
    fit = _fit_subset(points, mask, model, scale, allow_reflection)
    for _ in range(_MAX_REFITS):
        residuals = np.linalg.norm(fit.transform.apply(vendor) - twinzo, axis=1)
        new_mask = residuals <= threshold_mm
        if np.array_equal(new_mask, mask) or new_mask.sum() < MIN_POINTS:
            break
        try:
            candidate = _fit_subset(points, new_mask, model, scale, allow_reflection)
        except CalibrationError:
            break
        fit, mask = candidate, new_mask
    return fit, mask


def _fit_subset(
    points: Sequence[ControlPoint],
    mask: BoolArray,
    model: ModelName,
    scale: float,
    allow_reflection: bool,
) -> Fit:
    chosen = [p for p, keep in zip(points, mask, strict=True) if keep]
    return fit_model(chosen, model, scale=scale, allow_reflection=allow_reflection)
