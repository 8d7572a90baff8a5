"""Coordinates: the plant affine (vendor → twinzo mm), its inverse, movement."""

from __future__ import annotations

import math

from dtp_console.config.model import Affine

__all__ = ["apply_affine", "invert_affine", "moved"]


def apply_affine(affine: Affine, x: float, y: float) -> tuple[float, float]:
    """Vendor (x, y) → twinzo (X, Y): `X = A·x + B·y + TX`, `Y = C·x + D·y + TY`."""
    return (
        affine.a * x + affine.b * y + affine.tx,
        affine.c * x + affine.d * y + affine.ty,
    )


def invert_affine(affine: Affine) -> Affine:
    """The transform twinzo → vendor (the config model guarantees it is invertible)."""
    det = affine.a * affine.d - affine.b * affine.c
    a, b = affine.d / det, -affine.b / det
    c, d = -affine.c / det, affine.a / det
    return Affine(
        a=a, b=b, c=c, d=d, tx=-(a * affine.tx + b * affine.ty), ty=-(c * affine.tx + d * affine.ty)
    )


def moved(
    previous: tuple[float, float] | None, current: tuple[float, float], threshold_mm: float
) -> bool:
    """Whether a device moved more than `threshold_mm` (a first position is not movement)."""
    if previous is None:
        return False
    return math.hypot(current[0] - previous[0], current[1] - previous[1]) > threshold_mm
