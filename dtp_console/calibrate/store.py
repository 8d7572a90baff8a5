"""Storing a fitted transform as a plant's `affine:` (shared by the CLI and the UI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dtp_console.calibrate.fit import Transform
from dtp_console.config.model import Affine
from dtp_console.config.writer import ConfigWriteError, read_plant_field, update_plant_field

__all__ = ["DECIMALS", "affine_values", "store_affine"]

#: Decimals kept per parameter: the linear part is ~1000 for metres→mm, offsets are mm.
DECIMALS = {"a": 6, "b": 6, "c": 6, "d": 6, "tx": 3, "ty": 3}


def affine_values(transform: Transform) -> tuple[dict[str, float], Affine]:
    """The rounded parameters and the `Affine` they make; `ConfigWriteError` if invalid."""
    values = {key: round(value, DECIMALS[key]) for key, value in transform.as_dict().items()}
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
