"""CSV control points: header required, bad rows named by line and skipped, the rest used."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtp_console.calibrate import (
    CalibrationError,
    ControlPoint,
    format_points,
    load_points,
    parse_points,
    save_points,
)

GOOD = """\
name,vendor_x,vendor_y,twinzo_x,twinzo_y
dock-1,10.5,20.25,106000,147000
dock-2,200,30,296000,137000
"""


def test_reads_points_with_line_numbers() -> None:
    result = parse_points(GOOD, source="points.csv")
    assert result.problems == ()
    assert result.source == "points.csv"
    assert result.points == (
        ControlPoint("dock-1", 10.5, 20.25, 106000.0, 147000.0, 1.0, line=2),
        ControlPoint("dock-2", 200.0, 30.0, 296000.0, 137000.0, 1.0, line=3),
    )


def test_optional_weight_any_column_order_comments_and_blank_lines() -> None:
    text = """\
# surveyed 2024-03-01 with the total station
TWINZO_X, twinzo_y, name, weight, vendor_x, vendor_y

106000, 147000, dock-1, 2.5, 10, 20
# the next one was re-measured
296000, 137000, dock-2, , 200, 30
"""
    result = parse_points(text)
    assert result.problems == ()
    assert [(p.name, p.weight, p.line) for p in result.points] == [
        ("dock-1", 2.5, 4),
        ("dock-2", 1.0, 6),
    ]
    assert result.points[0].vendor_x == 10.0
    assert result.points[0].twinzo_x == 106000.0


def test_bad_rows_are_named_by_line_and_the_rest_is_used() -> None:
    text = """\
name,vendor_x,vendor_y,twinzo_x,twinzo_y,weight
a,1,2,3,4
b,1,oops,3,4
c,1,2,3
d,nan,2,3,4
e,1,2,3,4,-1
,1,2,3,4
f,5,6,7,8
g,1,2,3,inf
"""
    result = parse_points(text)
    assert [p.name for p in result.points] == ["a", "f"]
    assert [(p.line, p.message) for p in result.problems] == [
        (3, "vendor_y is not a number ('oops'); row skipped"),
        (4, "expected 6 values, got 4; row skipped"),
        (5, "vendor_x is not a finite number ('nan'); row skipped"),
        (6, "weight must be positive, got -1; row skipped"),
        (7, "empty name; row skipped"),
        (9, "twinzo_y is not a finite number ('inf'); row skipped"),
    ]
    assert str(result.problems[0]) == "line 3: vendor_y is not a number ('oops'); row skipped"


def test_quoted_names_may_contain_commas() -> None:
    text = 'name,vendor_x,vendor_y,twinzo_x,twinzo_y\n"dock 1, north",1,2,3,4\n'
    assert parse_points(text).points[0].name == "dock 1, north"


def test_header_is_required() -> None:
    with pytest.raises(CalibrationError, match=r"line 1 must be the header.*missing name"):
        parse_points("dock-1,10,20,106000,147000\n", source="p.csv")


def test_header_with_unknown_or_repeated_columns() -> None:
    with pytest.raises(CalibrationError, match="unknown column"):
        parse_points("name,vendor_x,vendor_y,twinzo_x,twinzo_y,z\n")
    with pytest.raises(CalibrationError, match="appear twice"):
        parse_points("name,vendor_x,vendor_y,twinzo_x,twinzo_y,name\n")


def test_empty_file() -> None:
    with pytest.raises(CalibrationError, match="no header line"):
        parse_points("# nothing yet\n\n", source="p.csv")


def test_header_only_gives_no_points() -> None:
    result = parse_points("name,vendor_x,vendor_y,twinzo_x,twinzo_y\n")
    assert result.points == ()


def test_load_points_from_file(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    # A BOM, as spreadsheets write it, must not spoil the header.
    path.write_text("\ufeff" + GOOD, encoding="utf-8")
    result = load_points(path)
    assert len(result.points) == 2
    assert result.source == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="file not found"):
        load_points(tmp_path / "nope.csv")


def test_label_names_the_line() -> None:
    assert ControlPoint("a", 0, 0, 0, 0, line=7).label == "'a' (line 7)"
    assert ControlPoint("a", 0, 0, 0, 0).label == "'a'"


def test_format_and_save_round_trip_exactly(tmp_path: Path) -> None:
    points = [
        ControlPoint('dock 1, "north"', 0.1 + 0.2, -1e-9, 95598.80000000001, 167357.6, 0.5),
        ControlPoint("#1 dock", 1.0, 2.0, 3.0, 4.0),  # not a comment once written
        ControlPoint("p2", 1.0, 2.0, 3.0, 4.0),
    ]
    parsed = parse_points(format_points(points)).points
    assert [(p.name, p.vendor_x, p.vendor_y, p.twinzo_x, p.twinzo_y, p.weight) for p in parsed] == [
        (p.name, p.vendor_x, p.vendor_y, p.twinzo_x, p.twinzo_y, p.weight) for p in points
    ]
    path = tmp_path / "sub" / "points.csv"
    save_points(path, points)
    assert load_points(path).points == parsed
    assert not list(path.parent.glob(".*.tmp"))
