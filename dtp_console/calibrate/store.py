"""Storing a fitted transform as a plant's `affine:` (shared by the CLI and the UI)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dtp_console.calibrate.fit import Transform
from dtp_console.config.model import Affine
from dtp_console.config.writer import ConfigWriteError, read_plant_field, update_plant_field

__all__ = ["DECIMALS", "affine_values", "round_affine", "store_affine"]

#: Decimals kept per parameter: the linear part is ~1000 for metres→mm, offsets are mm.
DECIMALS = {"a": 6, "b": 6, "c": 6, "d": 6, "tx": 3, "ty": 3}


def affine_values(transform: Transform) -> tuple[dict[str, float], Affine]:
    """The rounded parameters and the `Affine` they make; `ConfigWriteError` if invalid."""
    return round_affine(transform.as_dict())


def round_affine(raw: Mapping[str, float]) -> tuple[dict[str, float], Affine]:
    """`raw` (`a`…`ty`, any case) rounded as the file keeps it, and the `Affine` it makes.

    `ConfigWriteError` when a key is unknown or the values make no valid affine.
    """
    lowered = {str(key).lower(): value for key, value in raw.items()}
    unknown = sorted(set(lowered) - set(DECIMALS))
    if unknown:
        msg = f"not affine parameters: {', '.join(map(repr, unknown))} (a, b, c, d, tx, ty)"
        raise ConfigWriteError(msg)
    try:
        values = {key: round(float(value), DECIMALS[key]) for key, value in lowered.items()}
    except (TypeError, ValueError, OverflowError):
        msg = "the affine parameters must be numbers"
        raise ConfigWriteError(msg) from None
    try:
        return values, Affine.model_validate(values)
    except ValidationError as exc:
        msg = f"the fitted transform is not a valid affine ({exc.errors()[0]['msg']})"
        raise ConfigWriteError(msg) from None


def store_affine(path: Path, plant_name: str, values: dict[str, float]) -> Any:
    """Write `values` as the plant's affine atomically; returns what the file had before.

    The model accepts `A` or `a`; whichever spelling the file already uses is kept.
    """
    in_file = read_plant_field(path, plant_name, "affine")
    spelling = {str(k).lower(): str(k) for k in in_file} if isinstance(in_file, dict) else {}
    update_plant_field(
        path, plant_name, "affine", {spelling.get(k, k): v for k, v in values.items()}
    )
    return in_file
