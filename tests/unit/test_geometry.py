"""Affine transform, its inverse, and movement detection."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dtp_console.bridge.geometry import apply_affine, invert_affine, moved
from dtp_console.config.model import Affine

REAL = Affine(a=999.74, b=22.88, c=22.88, d=-999.74, tx=95598.8, ty=167357.6)


def test_identity_by_default() -> None:
    assert apply_affine(Affine(), 12.5, -3.0) == (12.5, -3.0)


def test_real_affine_metres_to_millimetres() -> None:
    x, y = apply_affine(REAL, 10.0, 20.0)
    assert x == pytest.approx(999.74 * 10 + 22.88 * 20 + 95598.8)
    assert y == pytest.approx(22.88 * 10 - 999.74 * 20 + 167357.6)


def test_inverse_round_trips() -> None:
    inverse = invert_affine(REAL)
    for vx, vy in [(0.0, 0.0), (100.0, 50.0), (-12.3, 170.0)]:
        x, y = apply_affine(REAL, vx, vy)
        back = apply_affine(inverse, x, y)
        assert back == pytest.approx((vx, vy), abs=1e-9)


def test_affine_keys_are_case_insensitive_and_singular_is_refused() -> None:
    assert Affine.model_validate({"A": 2, "TX": 5}).a == 2
    with pytest.raises(ValidationError, match="singular"):
        Affine(a=1, b=2, c=2, d=4)


def test_movement_threshold() -> None:
    assert moved(None, (0.0, 0.0), 10.0) is False
    assert moved((0.0, 0.0), (6.0, 8.0), 10.0) is False  # exactly 10 mm is not more than 10
    assert moved((0.0, 0.0), (6.0, 8.1), 10.0) is True
    assert moved((0.0, 0.0), (0.0, 0.0), 0.0) is False
