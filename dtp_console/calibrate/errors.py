"""The one error the calibration workbench raises for unusable input."""

from __future__ import annotations

__all__ = ["CalibrationError"]


class CalibrationError(ValueError):
    """Control points that cannot give a meaningful transform (too few, collinear, NaN, …).

    The message says what is wrong and, where it can, which point or CSV line.
    """
