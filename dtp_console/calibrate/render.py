"""Plain-text rendering of a `CalibrationReport` (the CLI's table)."""

from __future__ import annotations

from collections.abc import Callable

from dtp_console.calibrate.report import CalibrationReport, ModelSummary

__all__ = ["render_text"]

_LABEL_WIDTH = 20
_COLUMN_WIDTH = 19


def render_text(report: CalibrationReport) -> str:
    """The report as a side-by-side table followed by rejections, points and warnings."""
    lines: list[str] = []
    plant = f"plant {report.plant!r}" if report.plant else "control points"
    lines.append(f"Calibration of {plant}: {len(report.points)} points from {report.source}")
    lines.append("")
    lines += _model_table([*report.models, report.robust])
    lines.append("")
    lines.append(
        f"similarity vs affine on the {report.kept_points} kept points: linear parts differ by "
        f"{report.similarity_vs_affine_pct:.2f}% of the scale "
        f"(on all {len(report.points)}: {report.similarity_vs_affine_all_pct:.2f}%)"
    )
    lines.append("")
    lines.append(
        f"Robust {report.robust.label.removeprefix('robust ')} fit: {report.robust_method}"
    )
    if report.rejected:
        lines.append(f"  rejected {len(report.rejected)} of {len(report.points)} points:")
        width = max(len(r.name) for r in report.rejected)
        lines += [f"    {r.name:<{width}}  {r.reason}" for r in report.rejected]
    else:
        lines.append(f"  no point is farther than {report.threshold_mm:g} mm from the others' fit")
    lines.append("")
    lines.append(f"Per point, under the chosen fit ({report.chosen.label}):")
    lines += _point_table(report)
    if report.warnings:
        lines.append("")
        lines.append("Warnings:")
        lines += [f"  ! {text}" for text in report.warnings]
    if report.notes:
        lines.append("")
        lines.append("Notes:")
        lines += [f"  - {text}" for text in report.notes]
    lines.append("")
    t = report.chosen.transform
    lines.append(f"Chosen ({report.chosen.label}, stored by --write):")
    lines.append(
        f"  a={t.a:.6f}  b={t.b:.6f}  c={t.c:.6f}  d={t.d:.6f}  tx={t.tx:.3f}  ty={t.ty:.3f}"
    )
    return "\n".join(lines) + "\n"


def _model_table(summaries: list[ModelSummary]) -> list[str]:
    rows: list[tuple[str, Callable[[ModelSummary], str]]] = [
        ("points", lambda s: str(s.points)),
        ("mean residual mm", lambda s: f"{s.mean_mm:,.1f}"),
        ("max residual mm", lambda s: f"{s.max_mm:,.1f}"),
        ("RMS residual mm", lambda s: f"{s.rms_mm:,.1f}"),
        ("rotation °", lambda s: _number(s.rotation_deg, 4)),
        ("scale x", lambda s: _number(s.scale_x, 4)),
        ("scale y", lambda s: _number(s.scale_y, 4)),
        ("axis flip", lambda s: "yes (Y)" if s.flip else "no"),
        ("shear °", lambda s: _number(s.shear_deg, 4)),
        ("condition", lambda s: _number(s.condition, 2)),
        ("A", lambda s: _number(s.transform.a, 4)),
        ("B", lambda s: _number(s.transform.b, 4)),
        ("C", lambda s: _number(s.transform.c, 4)),
        ("D", lambda s: _number(s.transform.d, 4)),
        ("TX", lambda s: _number(s.transform.tx, 1)),
        ("TY", lambda s: _number(s.transform.ty, 1)),
    ]
    header = " " * _LABEL_WIDTH + "".join(f"{s.label:>{_COLUMN_WIDTH}}" for s in summaries)
    out = [header.rstrip()]
    for label, cell in rows:
        out.append(
            f"{label:<{_LABEL_WIDTH}}" + "".join(f"{cell(s):>{_COLUMN_WIDTH}}" for s in summaries)
        )
    return out


def _number(value: float, decimals: int) -> str:
    """Thousands separators, and no `-0.0000` for a value that rounds to zero."""
    if abs(value) < 0.5 * 10**-decimals:
        value = 0.0
    return f"{value:,.{decimals}f}"


def _point_table(report: CalibrationReport) -> list[str]:
    width = max([4, *(len(row.name) for row in report.points)])
    head = (
        f"  {'name':<{width}}  {'line':>4}  {'weight':>6}  {'residual mm':>12}  "
        f"{'left out mm':>12}  {'on floor':>8}  status"
    )
    out = [head]
    for row in report.points:
        line = str(row.line) if row.line else "-"
        loo = f"{row.loo_mm:,.1f}" if row.loo_mm is not None else "-"
        floor = {None: "-", True: "yes", False: "NO"}[row.in_bounds]
        status = "used" if row.used else "rejected"
        out.append(
            f"  {row.name:<{width}}  {line:>4}  {row.weight:>6g}  {row.residual_mm:>12,.1f}  "
            f"{loo:>12}  {floor:>8}  {status}"
        )
    return out
