"""`dtp-console calibrate`: fit a plant's vendor → twinzo transform from control points.

Prints every model side by side plus the robust fit of the chosen one; with
`--write` stores the chosen parameters in the plant's `affine:` mapping of the
config file (atomically; a running console reloads the file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtp_console.cli.common import EXIT_CONFIG, add_config_arg, config_path, load_or_exit

if TYPE_CHECKING:
    from dtp_console.calibrate import CalibrationReport
    from dtp_console.config.model import PlantConfig

__all__ = ["EXIT_CALIBRATION", "register"]

#: Exit code when the points give no usable fit, or `--write` was refused or failed.
EXIT_CALIBRATION = 1
# Mirrors of dtp_console.calibrate's constants (a test keeps them equal) so that building
# the parser does not import numpy: every other command would pay ~0.2 s for it.
_MODELS = ("affine", "similarity", "similarity-fixed-scale")
_THRESHOLD_MM = 1000.0
_WARN_MM = 500.0


def register(sub: Any) -> None:
    """Add the `calibrate` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "calibrate",
        help="fit a plant's vendor→twinzo transform from control points",
        description=(
            "Fit affine, similarity and fixed-scale similarity transforms to surveyed control "
            "points, reject outliers, and optionally store the result in the plant's config."
        ),
    )
    add_config_arg(parser)
    parser.add_argument(
        "points",
        type=Path,
        help="CSV with a header: name,vendor_x,vendor_y,twinzo_x,twinzo_y[,weight]",
    )
    parser.add_argument("--plant", required=True, help="plant name (as in the config)")
    parser.add_argument(
        "--model",
        choices=_MODELS,
        default="similarity",
        help="the model to write (default: %(default)s)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1000.0,
        help="scale of similarity-fixed-scale, twinzo mm per vendor unit (default: %(default)g)",
    )
    parser.add_argument(
        "--threshold-mm",
        type=float,
        default=_THRESHOLD_MM,
        help="reject points the others' fit misses by more than this (default: %(default)g)",
    )
    parser.add_argument(
        "--warn-mm",
        type=float,
        default=_WARN_MM,
        help="warn (and refuse --write) above this residual (default: %(default)g)",
    )
    parser.add_argument(
        "--keep-all", action="store_true", help="fit the chosen model to every point; reject none"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--write", action="store_true", help="store the chosen fit in the plant's config"
    )
    parser.add_argument(
        "--force", action="store_true", help="with --write: write despite large residuals"
    )
    parser.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from dtp_console.calibrate import CalibrationError, build_report, load_points
    from dtp_console.calibrate.render import render_text
    from dtp_console.config.writer import ConfigWriteError

    config = load_or_exit(args)
    try:
        plant = config.plant(args.plant)
    except KeyError as exc:
        print(f"calibrate: {exc.args[0]}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = build_report(
            load_points(args.points),
            model=args.model,
            scale=args.scale,
            threshold_mm=args.threshold_mm,
            warn_mm=args.warn_mm,
            bounds=plant.bounds,
            plant=plant.name,
            keep_all=args.keep_all,
        )
    except CalibrationError as exc:
        print(f"calibration error: {exc}", file=sys.stderr)
        return EXIT_CALIBRATION
    written: dict[str, Any] | None = None
    failure: str | None = None
    if args.write:
        if report.residuals_too_large and not args.force:
            failure = (
                f"not written: the chosen fit leaves residuals above {report.warn_mm:g} mm "
                "(see the warnings; --force writes anyway)"
            )
        else:
            try:
                written = _write(config_path(args), plant, report)
            except ConfigWriteError as exc:
                failure = str(exc)
    if args.json:
        data = report.to_json()
        if args.write:
            data["write"] = written if written is not None else {"error": failure}
        print(json.dumps(data, indent=2))
    else:
        print(render_text(report), end="")
        if written is not None:
            print()
            print(_change_text(written))
    if failure is not None:
        print(f"calibrate: {failure}", file=sys.stderr)
        return EXIT_CALIBRATION
    return 0


def _write(path: Path, plant: PlantConfig, report: CalibrationReport) -> dict[str, Any]:
    """Store the chosen transform in the plant's `affine:` mapping; return old and new."""
    from dtp_console.calibrate.store import affine_values, store_affine
    from dtp_console.config.model import Affine
    from dtp_console.config.writer import ConfigWriteError

    try:
        new, _ = affine_values(report.chosen.transform)
    except ConfigWriteError as exc:
        raise ConfigWriteError(f"not written: {exc}") from None
    in_file = store_affine(path, plant.name, new)
    return {
        "path": str(path),
        "plant": plant.name,
        "model": report.chosen.label,
        "old": plant.affine.model_dump(),
        "new": new,
        "overrides_environment": in_file is None and plant.affine != Affine(),
    }


def _change_text(written: dict[str, Any]) -> str:
    lines = [f"wrote {written['path']}: plant {written['plant']!r} affine ({written['model']})"]
    old = {key: _short(value) for key, value in written["old"].items()}
    new = {key: _short(value) for key, value in written["new"].items()}
    width = max(len(text) for text in old.values())
    for key in new:
        same = "   (unchanged)" if written["old"][key] == written["new"][key] else ""
        lines.append(f"  {key:<2}  {old[key]:>{width}} → {new[key]}{same}")
    if written["overrides_environment"]:
        lines.append(
            "  note: the old values came from AFFINE_* in the environment; the file now wins"
        )
    return "\n".join(lines)


def _short(value: float) -> str:
    """`1.0` → `1`, `999.941091` stays: the stored precision without trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".")
