"""Weighted least-squares fits of a vendor → twinzo transform.

Three models, all `X = A·x + B·y + TX`, `Y = C·x + D·y + TY` in the end:

- `affine`: all six parameters free (rotation, two scales, shear, translation).
- `similarity`: rotation, one uniform scale and translation; a reflection (an
  axis flip) is tried too and kept when it fits better.
- `similarity-fixed-scale`: rotation and translation with the scale given
  (1000 for metres → millimetres); reflection as above.

Every fit first checks its input and raises `CalibrationError` rather than
return a number that means nothing: fewer than three points, NaN, duplicated
points, or points on a line (which leave the transform across the line, and
whether it flips, undetermined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from dtp_console.calibrate.errors import CalibrationError
from dtp_console.calibrate.points import ControlPoint

__all__ = [
    "COLLINEAR_RATIO",
    "MIN_POINTS",
    "MODELS",
    "MODEL_LABELS",
    "Fit",
    "ModelName",
    "Transform",
    "check_points",
    "fit_affine",
    "fit_model",
    "fit_similarity",
    "fit_similarity_fixed_scale",
    "is_degenerate",
]

FloatArray = npt.NDArray[np.float64]
ModelName = Literal["affine", "similarity", "similarity-fixed-scale"]
MODELS: tuple[ModelName, ...] = get_args(ModelName)
MODEL_LABELS: dict[ModelName, str] = {
    "affine": "affine",
    "similarity": "similarity",
    "similarity-fixed-scale": "fixed scale",
}

#: Smallest ratio of the point cloud's thinner to its longer extent before it counts as a line.
COLLINEAR_RATIO = 1e-3
#: Minimum number of control points for any model.
MIN_POINTS = 3
_FLIP_Y = np.diag([1.0, -1.0])


@dataclass(frozen=True)
class Transform:
    """An affine vendor → twinzo transform and its geometric reading."""

    a: float
    b: float
    c: float
    d: float
    tx: float
    ty: float

    @classmethod
    def from_arrays(cls, matrix: FloatArray, offset: FloatArray) -> Transform:
        """Build from the 2×2 linear part and the translation."""
        return cls(
            a=float(matrix[0, 0]),
            b=float(matrix[0, 1]),
            c=float(matrix[1, 0]),
            d=float(matrix[1, 1]),
            tx=float(offset[0]),
            ty=float(offset[1]),
        )

    @property
    def matrix(self) -> FloatArray:
        """The linear part as a 2×2 array."""
        return np.array([[self.a, self.b], [self.c, self.d]], dtype=np.float64)

    def apply(self, xy: FloatArray) -> FloatArray:
        """Transform an (n, 2) array of vendor positions to twinzo millimetres."""
        offset = np.array([self.tx, self.ty], dtype=np.float64)
        result: FloatArray = xy @ self.matrix.T + offset
        return result

    @property
    def determinant(self) -> float:
        """A·D − B·C; negative when the transform flips an axis."""
        return self.a * self.d - self.b * self.c

    @property
    def flips(self) -> bool:
        """Whether the transform mirrors (read as a vendor Y flip before the rotation)."""
        return self.determinant < 0

    @property
    def rotation_deg(self) -> float:
        """Angle of the vendor x axis in twinzo, in degrees (counter-clockwise)."""
        return math.degrees(math.atan2(self.c, self.a))

    @property
    def scale_x(self) -> float:
        """Length in twinzo mm of one vendor unit along x."""
        return math.hypot(self.a, self.c)

    @property
    def scale_y(self) -> float:
        """Length in twinzo mm of one vendor unit along y."""
        return math.hypot(self.b, self.d)

    @property
    def shear_deg(self) -> float:
        """How far the images of the vendor axes are from perpendicular, in degrees."""
        cosine = (self.a * self.b + self.c * self.d) / (self.scale_x * self.scale_y)
        return math.degrees(math.asin(max(-1.0, min(1.0, cosine))))

    def as_dict(self) -> dict[str, float]:
        """`{"a": …, "b": …, "c": …, "d": …, "tx": …, "ty": …}`."""
        return {
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "d": self.d,
            "tx": self.tx,
            "ty": self.ty,
        }


@dataclass(frozen=True)
class Fit:
    """A fitted model with its residuals (twinzo millimetres) per point."""

    model: ModelName
    transform: Transform
    names: tuple[str, ...]
    residuals_mm: tuple[float, ...]
    condition: float
    """Condition number of the normalised design matrix: ~1.4 is ideal, large is near a line."""

    @property
    def mean_mm(self) -> float:
        """Mean residual."""
        return float(np.mean(self.residuals_mm))

    @property
    def max_mm(self) -> float:
        """Largest residual."""
        return float(np.max(self.residuals_mm))

    @property
    def rms_mm(self) -> float:
        """Root mean square residual."""
        return float(np.sqrt(np.mean(np.square(self.residuals_mm))))

    @property
    def exact(self) -> bool:
        """Whether the model has no spare points, so its residuals are zero by construction."""
        return self.model == "affine" and len(self.names) <= MIN_POINTS


def fit_model(
    points: Sequence[ControlPoint],
    model: ModelName,
    *,
    scale: float = 1000.0,
    allow_reflection: bool = True,
) -> Fit:
    """Fit `model` to the points (`scale` is used by `similarity-fixed-scale` only)."""
    vendor, twinzo, weights = check_points(points)
    matrix, offset = _solve(model, vendor, twinzo, weights, scale, allow_reflection)
    transform = Transform.from_arrays(matrix, offset)
    if abs(transform.determinant) < 1e-9 * max(transform.scale_x, transform.scale_y) ** 2:
        msg = "the fitted transform collapses the floor onto a line; check the twinzo positions"
        raise CalibrationError(msg)
    residuals = np.linalg.norm(transform.apply(vendor) - twinzo, axis=1)
    return Fit(
        model=model,
        transform=transform,
        names=tuple(p.name for p in points),
        residuals_mm=tuple(float(r) for r in residuals),
        condition=_condition(vendor, weights),
    )


def fit_affine(points: Sequence[ControlPoint]) -> Fit:
    """Six-parameter weighted least-squares affine."""
    return fit_model(points, "affine")


def fit_similarity(points: Sequence[ControlPoint], *, allow_reflection: bool = True) -> Fit:
    """Rotation + uniform scale + translation, flipped if that fits better and is allowed."""
    return fit_model(points, "similarity", allow_reflection=allow_reflection)


def fit_similarity_fixed_scale(
    points: Sequence[ControlPoint], scale: float, *, allow_reflection: bool = True
) -> Fit:
    """Rotation + translation at a given scale, flipped if that fits better and is allowed."""
    return fit_model(
        points, "similarity-fixed-scale", scale=scale, allow_reflection=allow_reflection
    )


def check_points(points: Sequence[ControlPoint]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate the points and return (vendor n×2, twinzo n×2, weights n) arrays.

    Raises `CalibrationError` naming the offending points for: fewer than three
    points, non-finite values, non-positive weights, a name used twice, two
    points at the same vendor or twinzo position, all points on one line.
    """
    if len(points) < MIN_POINTS:
        got = "no control points" if not points else f"only {len(points)} control point(s)"
        msg = f"{got}: a transform needs at least {MIN_POINTS} points not on one line"
        raise CalibrationError(msg)
    for point in points:
        values = (point.vendor_x, point.vendor_y, point.twinzo_x, point.twinzo_y, point.weight)
        if not all(math.isfinite(v) for v in values):
            msg = f"point {point.label} has a value that is not a finite number (NaN or inf)"
            raise CalibrationError(msg)
        if point.weight <= 0:
            msg = f"point {point.label} has a non-positive weight ({point.weight:g})"
            raise CalibrationError(msg)
    seen: dict[str, ControlPoint] = {}
    for point in points:
        if point.name in seen:
            msg = f"point name {point.name!r} is used twice ({_lines(seen[point.name], point)})"
            raise CalibrationError(msg)
        seen[point.name] = point
    vendor = np.array([(p.vendor_x, p.vendor_y) for p in points], dtype=np.float64)
    twinzo = np.array([(p.twinzo_x, p.twinzo_y) for p in points], dtype=np.float64)
    weights = np.array([p.weight for p in points], dtype=np.float64)
    _check_distinct(points, vendor, "vendor")
    _check_distinct(points, twinzo, "twinzo")
    if is_degenerate(vendor):
        msg = "the vendor positions lie on (or very near) one line; survey points across the floor"
        raise CalibrationError(msg)
    if is_degenerate(twinzo):
        msg = "the twinzo positions lie on (or very near) one line; check the twinzo columns"
        raise CalibrationError(msg)
    return vendor, twinzo, weights


def is_degenerate(xy: FloatArray) -> bool:
    """Whether the positions are fewer than three distinct ones or lie on one line."""
    if len(xy) < MIN_POINTS:
        return True
    singular = np.linalg.svd(xy - xy.mean(axis=0), compute_uv=False)
    return bool(singular[0] == 0 or singular[1] / singular[0] < COLLINEAR_RATIO)


def _check_distinct(points: Sequence[ControlPoint], xy: FloatArray, side: str) -> None:
    extent = float(np.ptp(xy, axis=0).max())
    tolerance = 1e-9 * max(extent, 1.0)
    gaps = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2)
    first, second = np.nonzero(np.triu(gaps <= tolerance, k=1))
    if len(first):
        one, two = points[int(first[0])], points[int(second[0])]
        msg = f"points {one.label} and {two.label} have the same {side} position (duplicate?)"
        raise CalibrationError(msg)


def _lines(one: ControlPoint, two: ControlPoint) -> str:
    if one.line and two.line:
        return f"lines {one.line} and {two.line}"
    return "twice in the input"


def _normalise(xy: FloatArray, weights: FloatArray) -> tuple[FloatArray, FloatArray, float]:
    """Centre on the weighted centroid and scale to unit RMS radius (for conditioning)."""
    centre: FloatArray = np.average(xy, axis=0, weights=weights)
    centred = xy - centre
    radius = float(np.sqrt(np.average(np.sum(centred**2, axis=1), weights=weights)))
    return centred / radius, centre, radius


def _condition(vendor: FloatArray, weights: FloatArray) -> float:
    unit, _, _ = _normalise(vendor, weights)
    design = np.column_stack([unit, np.ones(len(unit))]) * np.sqrt(weights)[:, None]
    return float(np.linalg.cond(design))


def _solve(
    model: ModelName,
    vendor: FloatArray,
    twinzo: FloatArray,
    weights: FloatArray,
    scale: float,
    allow_reflection: bool,
) -> tuple[FloatArray, FloatArray]:
    """The linear part and translation of the best fit (no input checks)."""
    p, p_centre, p_radius = _normalise(vendor, weights)
    q, q_centre, q_radius = _normalise(twinzo, weights)
    root_w = np.sqrt(weights)[:, None]
    if model == "affine":
        solution = np.linalg.lstsq(p * root_w, q * root_w, rcond=None)[0]
        unit_matrix: FloatArray = np.asarray(solution.T, dtype=np.float64)
        matrix = unit_matrix * (q_radius / p_radius)
    elif model == "similarity":
        candidates = [_similarity(p, q, root_w, flip) for flip in _flips(allow_reflection)]
        unit_matrix = min(candidates, key=lambda m: _sse(m, p, q, weights))
        matrix = unit_matrix * (q_radius / p_radius)
    else:
        if not (math.isfinite(scale) and scale > 0):
            msg = f"the fixed scale must be a positive number, got {scale:g}"
            raise CalibrationError(msg)
        # Rotation from normalised data is the same rotation; the scale is imposed, not fitted.
        candidates = [_rotation(p, q, weights, flip) for flip in _flips(allow_reflection)]
        unit = scale * p_radius / q_radius
        unit_matrix = min(candidates, key=lambda m: _sse(m * unit, p, q, weights))
        matrix = unit_matrix * scale
    # The centred fit has no offset of its own: centroids map onto centroids.
    offset: FloatArray = q_centre - matrix @ p_centre
    return matrix, offset


def _flips(allow_reflection: bool) -> tuple[bool, ...]:
    return (False, True) if allow_reflection else (False,)


def _similarity(p: FloatArray, q: FloatArray, root_w: FloatArray, flip: bool) -> FloatArray:
    """Least squares for `[[s, ∓t], [t, ±s]]` (rotation·scale, optionally with a Y flip)."""
    x, y = p[:, 0], p[:, 1]
    sign = -1.0 if flip else 1.0
    # Unknowns (s, t): X = s·x ∓ t·y, Y = t·x ± s·y (lower signs with the flip).
    rows_x = np.column_stack([x, -sign * y])
    rows_y = np.column_stack([sign * y, x])
    design = np.vstack([rows_x * root_w, rows_y * root_w])
    target = np.concatenate([q[:, 0] * root_w[:, 0], q[:, 1] * root_w[:, 0]])
    s, t = np.linalg.lstsq(design, target, rcond=None)[0]
    return np.array([[s, -sign * t], [t, sign * s]], dtype=np.float64)


def _rotation(p: FloatArray, q: FloatArray, weights: FloatArray, flip: bool) -> FloatArray:
    """Best rotation (Kabsch, via SVD) taking p — Y-flipped if asked — onto q's directions."""
    source = p @ _FLIP_Y if flip else p
    cross = (source * weights[:, None]).T @ q
    u, _, vt = np.linalg.svd(cross)
    proper = np.diag([1.0, float(np.sign(np.linalg.det(vt.T @ u.T))) or 1.0])
    rotation: FloatArray = vt.T @ proper @ u.T
    return rotation @ _FLIP_Y if flip else rotation


def _sse(matrix: FloatArray, p: FloatArray, q: FloatArray, weights: FloatArray) -> float:
    return float(np.sum(weights * np.sum((p @ matrix.T - q) ** 2, axis=1)))
