"""Control points: a vendor position paired with where twinzo shows it.

The CSV has a header naming at least `name, vendor_x, vendor_y, twinzo_x,
twinzo_y` (any order, any case) and optionally `weight`. Blank lines and lines
starting with `#` are skipped. A bad row is reported with its line number and
left out; the rest is still used, so one typo does not cost the whole survey.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dtp_console.atomic import write_bytes_atomic
from dtp_console.calibrate.errors import CalibrationError

__all__ = [
    "ControlPoint",
    "PointSet",
    "RowProblem",
    "format_points",
    "load_points",
    "parse_points",
    "save_points",
]

_REQUIRED = ("name", "vendor_x", "vendor_y", "twinzo_x", "twinzo_y")
_OPTIONAL = ("weight",)


@dataclass(frozen=True)
class ControlPoint:
    """One surveyed point: vendor (x, y) in vendor units, twinzo (X, Y) in millimetres."""

    name: str
    vendor_x: float
    vendor_y: float
    twinzo_x: float
    twinzo_y: float
    weight: float = 1.0
    line: int | None = None
    """CSV line the point came from (for messages), if it came from a file."""

    @property
    def label(self) -> str:
        """The name, with the CSV line when known: `dock-3 (line 7)`."""
        return f"{self.name!r} (line {self.line})" if self.line else repr(self.name)


@dataclass(frozen=True)
class RowProblem:
    """A CSV row that was left out, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class PointSet:
    """The usable points of a CSV plus the rows that were left out."""

    points: tuple[ControlPoint, ...]
    problems: tuple[RowProblem, ...] = field(default_factory=tuple)
    source: str = "<points>"


def load_points(path: Path) -> PointSet:
    """Read control points from a CSV file; `CalibrationError` if the file is unusable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        msg = f"{path}: file not found"
        raise CalibrationError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read: {exc}"
        raise CalibrationError(msg) from None
    return parse_points(text, source=str(path))


def parse_points(text: str, source: str = "<points>") -> PointSet:
    """Parse CSV text into points; bad rows become `RowProblem`s, a bad header an error."""
    # A comment is a line written starting with `#`; a quoted "#1 dock" is a name.
    lines = text.splitlines(keepends=True)
    rows = csv.reader(io.StringIO("".join("\n" if _comment(ln) else ln for ln in lines)))
    columns: dict[str, int] | None = None
    points: list[ControlPoint] = []
    problems: list[RowProblem] = []
    for row in rows:
        line = rows.line_num
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if columns is None:
            columns = _header(cells, source, line)
            continue
        try:
            points.append(_point(cells, columns, line))
        except ValueError as exc:
            problems.append(RowProblem(line, str(exc)))
    if columns is None:
        msg = f"{source}: no header line (expected {','.join(_REQUIRED)}[,weight])"
        raise CalibrationError(msg)
    return PointSet(tuple(points), tuple(problems), source)


def format_points(points: Sequence[ControlPoint]) -> str:
    """CSV text `parse_points` reads back to the same points (full float precision)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    # A name starting with `#` is quoted, or the line would read as a comment.
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow([*_REQUIRED, *_OPTIONAL])
    for p in points:
        values = (p.vendor_x, p.vendor_y, p.twinzo_x, p.twinzo_y, p.weight)
        row = [p.name, *(repr(v) for v in values)]
        (quoted if p.name.lstrip().startswith("#") else writer).writerow(row)
    return out.getvalue()


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def save_points(path: Path, points: Sequence[ControlPoint]) -> None:
    """Write `points` as CSV atomically (temp file, then rename); `CalibrationError` on failure."""
    try:
        # Readable by others, as a plain `open` would leave it: a survey is not a secret.
        write_bytes_atomic(path, format_points(points).encode("utf-8"), mode=0o644)
    except OSError as exc:
        msg = f"{path}: cannot write: {exc.strerror or exc}"
        raise CalibrationError(msg) from None


def _header(cells: Sequence[str], source: str, line: int) -> dict[str, int]:
    names = [cell.lower() for cell in cells]
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        msg = (
            f"{source}: line {line} must be the header "
            f"{','.join(_REQUIRED)}[,weight]; missing {', '.join(missing)}"
        )
        raise CalibrationError(msg)
    unknown = [name for name in names if name not in _REQUIRED + _OPTIONAL]
    if unknown:
        msg = f"{source}: line {line}: unknown column(s) {', '.join(map(repr, unknown))}"
        raise CalibrationError(msg)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        msg = f"{source}: line {line}: column(s) {', '.join(twice)} appear twice"
        raise CalibrationError(msg)
    return {name: index for index, name in enumerate(names)}


def _point(cells: Sequence[str], columns: dict[str, int], line: int) -> ControlPoint:
    missing = [name for name, index in columns.items() if index >= len(cells)]
    if len(cells) > len(columns) or any(name not in _OPTIONAL for name in missing):
        msg = f"expected {len(columns)} values, got {len(cells)}; row skipped"
        raise ValueError(msg)
    # A trailing optional column (weight) may be left off.
    cells = [*cells, *[""] * (len(columns) - len(cells))]
    name = cells[columns["name"]]
    if not name:
        msg = "empty name; row skipped"
        raise ValueError(msg)
    values = {key: _number(cells[columns[key]], key) for key in _REQUIRED[1:]}
    weight = 1.0
    if "weight" in columns and cells[columns["weight"]]:
        weight = _number(cells[columns["weight"]], "weight")
        if weight <= 0:
            msg = f"weight must be positive, got {weight:g}; row skipped"
            raise ValueError(msg)
    return ControlPoint(name=name, weight=weight, line=line, **values)


def _number(cell: str, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        msg = f"{column} is not a number ({cell!r}); row skipped"
        raise ValueError(msg) from None
    if not math.isfinite(value):
        msg = f"{column} is not a finite number ({cell!r}); row skipped"
        raise ValueError(msg)
    return value
