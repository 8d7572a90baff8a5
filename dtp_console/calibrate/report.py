"""The calibration report: every model side by side, the robust fit, per-point detail.

`build_report` runs the fits; `dtp_console.calibrate.render.render_text` makes the
table the CLI prints and `to_json()` the same content as plain data (the
renderer imports this module, never the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dtp_console.calibrate.errors import CalibrationError
from dtp_console.calibrate.fit import (
    MODEL_LABELS,
    MODELS,
    Fit,
    ModelName,
    Transform,
    check_points,
    fit_model,
)
from dtp_console.calibrate.points import ControlPoint, PointSet, RowProblem
from dtp_console.calibrate.robust import DEFAULT_THRESHOLD_MM, Rejection, robust_fit
from dtp_console.config.model import Bounds

__all__ = [
    "DEFAULT_WARN_MM",
    "CalibrationReport",
    "ModelSummary",
    "PointRow",
    "build_report",
]

#: Residuals above this (mm) under the chosen fit get a warning and block `--write`.
DEFAULT_WARN_MM = 500.0
#: The normalised condition number above which the point layout is called poor.
POOR_CONDITION = 30.0


@dataclass(frozen=True)
class ModelSummary:
    """One fitted model reduced to the figures an operator compares."""

    model: ModelName
    label: str
    points: int
    mean_mm: float
    max_mm: float
    rms_mm: float
    rotation_deg: float
    scale_x: float
    scale_y: float
    flip: bool
    shear_deg: float
    condition: float
    transform: Transform

    @classmethod
    def of(cls, fit: Fit, label: str | None = None) -> ModelSummary:
        """Summarise a fit."""
        t = fit.transform
        return cls(
            model=fit.model,
            label=label or MODEL_LABELS[fit.model],
            points=len(fit.names),
            mean_mm=fit.mean_mm,
            max_mm=fit.max_mm,
            rms_mm=fit.rms_mm,
            rotation_deg=t.rotation_deg,
            scale_x=t.scale_x,
            scale_y=t.scale_y,
            flip=t.flips,
            shear_deg=t.shear_deg,
            condition=fit.condition,
            transform=t,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "model": self.model,
            "label": self.label,
            "points": self.points,
            "mean_mm": self.mean_mm,
            "max_mm": self.max_mm,
            "rms_mm": self.rms_mm,
            "rotation_deg": self.rotation_deg,
            "scale_x": self.scale_x,
            "scale_y": self.scale_y,
            "flip": self.flip,
            "shear_deg": self.shear_deg,
            "condition": self.condition,
            "affine": self.transform.as_dict(),
        }


@dataclass(frozen=True)
class PointRow:
    """One control point under the chosen fit."""

    name: str
    line: int | None
    weight: float
    predicted_x: float
    predicted_y: float
    residual_mm: float
    loo_mm: float | None
    used: bool
    reason: str | None
    in_bounds: bool | None
    """None when the plant has no floor bounds."""


@dataclass(frozen=True)
class CalibrationReport:
    """Everything the workbench found, ready to print or serialise."""

    plant: str | None
    source: str
    model: ModelName
    scale: float
    threshold_mm: float
    warn_mm: float
    models: tuple[ModelSummary, ...]
    """Each model fitted to every point by plain weighted least squares."""
    robust: ModelSummary
    """The chosen model fitted to the robust consensus."""
    robust_method: str
    rejected: tuple[Rejection, ...]
    chosen: ModelSummary
    """What `--write` stores: `robust`, or the plain fit with `keep_all`."""
    points: tuple[PointRow, ...]
    skipped: tuple[RowProblem, ...]
    kept_points: int
    """How many points the robust fit kept."""
    similarity_vs_affine_pct: float
    """Largest difference of the two linear parts fitted to the kept points, in % of scale."""
    similarity_vs_affine_all_pct: float
    """The same for the fits to every point."""
    bounds: Bounds | None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def residuals_too_large(self) -> bool:
        """Whether the chosen fit leaves a used point farther off than `warn_mm`."""
        return any(row.used and row.residual_mm > self.warn_mm for row in self.points)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (JSON-serialisable)."""
        return {
            "plant": self.plant,
            "source": self.source,
            "model": self.model,
            "scale": self.scale,
            "threshold_mm": self.threshold_mm,
            "warn_mm": self.warn_mm,
            "models": {s.model: s.to_json() for s in self.models},
            "robust": {
                **self.robust.to_json(),
                "method": self.robust_method,
                "rejected": [
                    {"name": r.name, "residual_mm": r.residual_mm, "reason": r.reason}
                    for r in self.rejected
                ],
            },
            "chosen": self.chosen.to_json(),
            "kept_points": self.kept_points,
            "similarity_vs_affine_pct": self.similarity_vs_affine_pct,
            "similarity_vs_affine_all_pct": self.similarity_vs_affine_all_pct,
            "points": [
                {
                    "name": row.name,
                    "line": row.line,
                    "weight": row.weight,
                    "predicted_x": row.predicted_x,
                    "predicted_y": row.predicted_y,
                    "residual_mm": row.residual_mm,
                    "loo_mm": row.loo_mm,
                    "used": row.used,
                    "reason": row.reason,
                    "in_bounds": row.in_bounds,
                }
                for row in self.points
            ],
            "skipped_rows": [{"line": p.line, "message": p.message} for p in self.skipped],
            "bounds": self.bounds.model_dump() if self.bounds else None,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def build_report(
    points: PointSet | Sequence[ControlPoint],
    *,
    model: ModelName = "similarity",
    scale: float = 1000.0,
    threshold_mm: float = DEFAULT_THRESHOLD_MM,
    warn_mm: float = DEFAULT_WARN_MM,
    bounds: Bounds | None = None,
    plant: str | None = None,
    keep_all: bool = False,
) -> CalibrationReport:
    """Fit all three models, the robust `model`, and check the result's plausibility.

    Raises `CalibrationError` when the points cannot give a meaningful fit.
    `keep_all` makes the chosen fit the plain one over every point.
    """
    if isinstance(points, PointSet):
        source, skipped, listed = points.source, points.problems, points.points
    else:
        source, skipped, listed = "<points>", (), tuple(points)
    try:
        check_points(listed)
    except CalibrationError as exc:
        if not skipped:
            raise
        # The reason may well be the rows that were left out: say which.
        lines = "; ".join(map(str, skipped))
        msg = f"{exc} ({len(skipped)} row(s) of {source} skipped: {lines})"
        raise CalibrationError(msg) from None
    fits = {name: fit_model(listed, name, scale=scale) for name in MODELS}
    robust = robust_fit(listed, model, scale=scale, threshold_mm=threshold_mm)
    robust_summary = ModelSummary.of(robust.fit, f"robust {_label(model, scale)}")
    chosen_fit = fits[model] if keep_all else robust.fit
    chosen = ModelSummary.of(chosen_fit, _label(model, scale)) if keep_all else robust_summary
    vendor = np.array([(p.vendor_x, p.vendor_y) for p in listed], dtype=np.float64)
    twinzo = np.array([(p.twinzo_x, p.twinzo_y) for p in listed], dtype=np.float64)
    predicted = chosen_fit.transform.apply(vendor)
    residuals = np.linalg.norm(predicted - twinzo, axis=1)
    reasons = {r.name: r.reason for r in robust.rejected}
    rows = tuple(
        PointRow(
            name=p.name,
            line=p.line,
            weight=p.weight,
            predicted_x=float(predicted[i, 0]),
            predicted_y=float(predicted[i, 1]),
            residual_mm=float(residuals[i]),
            loo_mm=robust.loo_mm[i],
            used=keep_all or robust.inlier[i],
            reason=None if keep_all else reasons.get(p.name),
            in_bounds=None if bounds is None else bounds.contains(*map(float, predicted[i])),
        )
        for i, p in enumerate(listed)
    )
    kept = [p for p, keep in zip(listed, robust.inlier, strict=True) if keep]
    kept_fits = {name: fit_model(kept, name) for name in ("affine", "similarity")}
    kept_scale = kept_fits["similarity"].transform.scale_x
    warnings, notes = _checks(rows, skipped, chosen_fit, bounds, warn_mm, keep_all)
    off_pct = 100.0 * abs(kept_scale - scale) / scale
    if off_pct > 2.0:
        notes.append(
            f"the similarity fit's scale {kept_scale:.4g} is {off_pct:.1f}% from the fixed "
            f"scale {scale:g}: check the vendor units (or --scale)"
        )
    return CalibrationReport(
        plant=plant,
        source=source,
        model=model,
        scale=scale,
        threshold_mm=threshold_mm,
        warn_mm=warn_mm,
        models=tuple(ModelSummary.of(fits[name], _label(name, scale)) for name in MODELS),
        robust=robust_summary,
        robust_method=robust.method,
        rejected=robust.rejected,
        chosen=chosen,
        points=rows,
        skipped=tuple(skipped),
        kept_points=len(kept),
        similarity_vs_affine_pct=_gap_pct(kept_fits["affine"], kept_fits["similarity"]),
        similarity_vs_affine_all_pct=_gap_pct(fits["affine"], fits["similarity"]),
        bounds=bounds,
        warnings=tuple(warnings),
        notes=tuple(notes),
    )


def _gap_pct(affine: Fit, similarity: Fit) -> float:
    """Largest difference of the linear parts, as a percentage of the affine's scale."""
    one, two = affine.transform, similarity.transform
    gap = float(np.max(np.abs(two.matrix - one.matrix)))
    return 100.0 * gap / ((one.scale_x + one.scale_y) / 2)


def _label(model: ModelName, scale: float) -> str:
    return f"fixed {scale:g}" if model == "similarity-fixed-scale" else MODEL_LABELS[model]


def _checks(
    rows: Sequence[PointRow],
    skipped: Sequence[RowProblem],
    chosen: Fit,
    bounds: Bounds | None,
    warn_mm: float,
    keep_all: bool,
) -> tuple[list[str], list[str]]:
    """Plausibility warnings (something is likely wrong) and notes (worth knowing)."""
    warnings: list[str] = []
    notes: list[str] = []
    if skipped:
        warnings.append(f"{len(skipped)} CSV row(s) skipped: " + "; ".join(map(str, skipped)))
    large = [row for row in rows if row.used and row.residual_mm > warn_mm]
    if large:
        names = ", ".join(f"{row.name} ({row.residual_mm:.0f} mm)" for row in large)
        warnings.append(f"the chosen fit leaves residuals above {warn_mm:g} mm: {names}")
    suspects = [
        row
        for row in rows
        if row.used
        and row.loo_mm is not None
        and row.loo_mm > warn_mm
        and row.residual_mm <= warn_mm
    ]
    if suspects:
        names = ", ".join(f"{row.name} ({row.loo_mm or 0:.0f} mm)" for row in suspects)
        warnings.append(
            f"left out of the fit, these points miss by more than {warn_mm:g} mm "
            f"(a bad survey point?): {names}"
        )
    if bounds is None:
        notes.append("the plant has no floor bounds configured; bounds check skipped")
    else:
        outside = [row for row in rows if row.in_bounds is False]
        if outside:
            names = ", ".join(
                f"{row.name} ({row.predicted_x:.0f}, {row.predicted_y:.0f})" for row in outside
            )
            warnings.append(
                f"transformed position outside the floor bounds X {bounds.x_min:g}–"
                f"{bounds.x_max:g}, Y {bounds.y_min:g}–{bounds.y_max:g} mm: {names}"
            )
    if chosen.exact:
        warnings.append(
            "the affine has no spare points (3 points, 6 parameters): its residuals are zero by "
            "construction and say nothing; survey more points"
        )
    if chosen.condition > POOR_CONDITION:
        warnings.append(
            f"the points are nearly on a line (condition {chosen.condition:.0f}); the fit is "
            "poorly constrained across it — add points away from that line"
        )
    if keep_all:
        notes.append("--keep-all: the chosen fit uses every point; rejections are advisory")
    return warnings, notes
