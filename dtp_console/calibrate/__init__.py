"""Calibration workbench: fit a plant's vendor → twinzo transform from control points.

Load surveyed points (`load_points`), fit affine / similarity / fixed-scale
similarity models (`fit_model`), reject outliers (`robust_fit`) and report it
all side by side (`build_report`). No UI and no I/O beyond reading the CSV.
"""

from __future__ import annotations

from dtp_console.calibrate.errors import CalibrationError
from dtp_console.calibrate.fit import (
    MODELS,
    Fit,
    ModelName,
    Transform,
    check_points,
    fit_affine,
    fit_model,
    fit_similarity,
    fit_similarity_fixed_scale,
)
from dtp_console.calibrate.points import (
    ControlPoint,
    PointSet,
    RowProblem,
    format_points,
    load_points,
    parse_points,
    save_points,
)
from dtp_console.calibrate.report import (
    DEFAULT_WARN_MM,
    CalibrationReport,
    ModelSummary,
    PointRow,
    build_report,
)
from dtp_console.calibrate.robust import (
    DEFAULT_THRESHOLD_MM,
    Rejection,
    RobustFit,
    leave_one_out,
    robust_fit,
)

__all__ = [
    "DEFAULT_THRESHOLD_MM",
    "DEFAULT_WARN_MM",
    "MODELS",
    "CalibrationError",
    "CalibrationReport",
    "ControlPoint",
    "Fit",
    "ModelName",
    "ModelSummary",
    "PointRow",
    "PointSet",
    "Rejection",
    "RobustFit",
    "RowProblem",
    "Transform",
    "build_report",
    "check_points",
    "fit_affine",
    "fit_model",
    "fit_similarity",
    "fit_similarity_fixed_scale",
    "format_points",
    "leave_one_out",
    "load_points",
    "parse_points",
    "robust_fit",
    "save_points",
]
