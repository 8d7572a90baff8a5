"""`dtp-console calibrate` end to end: report, --json, --write into a real config file."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from dtp_console.bridge.geometry import apply_affine
from dtp_console.calibrate import DEFAULT_THRESHOLD_MM, DEFAULT_WARN_MM, MODELS, ControlPoint
from dtp_console.cli import calibrate as calibrate_cmd
from dtp_console.cli import main
from dtp_console.config import load_config
from tests.unit.test_calibrate_fit import TRUE, synthetic_points

CONFIG = """\
# test console config
plants:
  - name: Old Plant   # ATI
    format: ati_sherpa
    twinzo: {sector_id: 2}
    bounds: {x_min: 0, x_max: 265000, y_min: 46000, y_max: 218000}
    # set by calibration
    affine:
      A: 1.0   # uppercase spelling, as the legacy .env had it
      B: 0.0
      C: 0.0
      D: 1.0
      TX: 0.0
      TY: 0.0
  - name: HiTech Plant
    format: hitech
    twinzo: {sector_id: 1}
# end
"""


def _csv(points: list[ControlPoint], extra: str = "") -> str:
    lines = ["name,vendor_x,vendor_y,twinzo_x,twinzo_y,weight"]
    lines += [
        f"{p.name},{p.vendor_x!r},{p.vendor_y!r},{p.twinzo_x!r},{p.twinzo_y!r},{p.weight:g}"
        for p in points
    ]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # No stray .env from the repository or the environment's AFFINE_* may leak in.
    monkeypatch.chdir(tmp_path)
    for key in ("A", "B", "C", "D", "TX", "TY"):
        monkeypatch.delenv(f"AFFINE_{key}", raising=False)
    (tmp_path / "console.yaml").write_text(CONFIG, encoding="utf-8")
    points, _ = synthetic_points()
    (tmp_path / "points.csv").write_text(_csv(points, "bad-row,1,two,3,4\n"), encoding="utf-8")
    return tmp_path


def _run(workdir: Path, *args: str) -> int:
    return main(["-c", str(workdir / "console.yaml"), "calibrate", *args])


def test_report_without_write_leaves_the_config_alone(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(workdir, "--plant", "old plant", str(workdir / "points.csv")) == 0
    out = capsys.readouterr().out
    assert "Calibration of plant 'Old Plant': 12 points" in out
    assert "rejected 4 of 12 points" in out
    assert "line 14: vendor_y is not a number ('two'); row skipped" in out
    assert "wrote" not in out
    assert (workdir / "console.yaml").read_text(encoding="utf-8") == CONFIG


def test_write_stores_the_robust_fit_and_says_what_changed(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(workdir, "--plant", "Old Plant", "points.csv", "--write")
    out = capsys.readouterr().out
    assert code == 0
    assert f"wrote {workdir / 'console.yaml'}: plant 'Old Plant' affine (robust similarity)" in out
    assert "\n  a   1 → 999.9" in out
    assert "\n  tx  0 → 95" in out
    text = (workdir / "console.yaml").read_text(encoding="utf-8")
    # Comments, the other plant and the file's uppercase key spelling survive.
    assert text.startswith("# test console config\n")
    assert "    # set by calibration\n    affine:\n      A: 999.9" in text
    assert "# uppercase spelling, as the legacy .env had it" in text
    assert text.endswith(
        "  - name: HiTech Plant\n    format: hitech\n    twinzo: {sector_id: 1}\n# end\n"
    )
    # What the bridge will compute with the stored affine matches the ground truth.
    affine = load_config(workdir / "console.yaml").plant("Old Plant").affine
    assert affine.d < 0
    for vendor_x, vendor_y in [(0.0, 0.0), (100.0, -60.0), (160.0, -100.0)]:
        got = apply_affine(affine, vendor_x, vendor_y)
        want = TRUE.apply(np.array([[vendor_x, vendor_y]]))[0]
        assert math.dist(got, want) < 150


def test_json_output_with_write(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(
        workdir, "--plant", "Old Plant", "points.csv", "--json", "--write", "--model", "affine"
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plant"] == "Old Plant"
    assert data["model"] == "affine"
    assert len(data["robust"]["rejected"]) == 4
    assert data["skipped_rows"] == [
        {"line": 14, "message": "vendor_y is not a number ('two'); row skipped"}
    ]
    write = data["write"]
    assert write["old"] == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0, "tx": 0.0, "ty": 0.0}
    stored = load_config(workdir / "console.yaml").plant("Old Plant").affine.model_dump()
    assert stored == write["new"]
    assert write["new"]["a"] == pytest.approx(data["chosen"]["affine"]["a"], abs=1e-6)


def test_fixed_scale_writes_exactly_that_scale(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--model", "similarity-fixed-scale", "--scale", "1000", "--write")
    assert _run(workdir, "--plant", "Old Plant", "points.csv", *args) == 0
    capsys.readouterr()
    affine = load_config(workdir / "console.yaml").plant("Old Plant").affine
    assert math.hypot(affine.a, affine.c) == pytest.approx(1000.0, abs=1e-3)
    assert math.degrees(math.atan2(affine.c, affine.a)) == pytest.approx(1.31, abs=0.05)


def test_write_adds_the_affine_where_the_plant_has_none(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(workdir, "--plant", "HiTech Plant", "points.csv", "--write") == 0
    assert "\n  ty  0 → 167" in capsys.readouterr().out
    text = (workdir / "console.yaml").read_text(encoding="utf-8")
    head, added = text.split("    twinzo: {sector_id: 1}\n", 1)
    assert head + "    twinzo: {sector_id: 1}\n# end\n" == CONFIG
    assert re.fullmatch(r"    affine:\n(      (a|b|c|d|tx|ty): -?\d+\.\d+\n){6}# end\n", added)
    assert load_config(workdir / "console.yaml").plant("HiTech Plant").affine.d < 0


def test_large_residuals_refuse_the_write_unless_forced(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(workdir, "--plant", "Old Plant", "points.csv", "--keep-all", "--write")
    captured = capsys.readouterr()
    assert code == calibrate_cmd.EXIT_CALIBRATION
    assert "not written: the chosen fit leaves residuals above 500 mm" in captured.err
    assert (workdir / "console.yaml").read_text(encoding="utf-8") == CONFIG
    code = _run(workdir, "--plant", "Old Plant", "points.csv", "--keep-all", "--write", "--force")
    assert code == 0
    assert "wrote" in capsys.readouterr().out


def test_degenerate_points_fail_clearly(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points, _ = synthetic_points(outliers=())
    (workdir / "few.csv").write_text(_csv(points[:2]), encoding="utf-8")
    assert _run(workdir, "--plant", "Old Plant", "few.csv", "--write") == 1
    captured = capsys.readouterr()
    assert "calibration error: only 2 control point(s)" in captured.err
    assert captured.out == ""
    assert (workdir / "console.yaml").read_text(encoding="utf-8") == CONFIG


def test_collinear_points_fail_clearly(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = "".join(f"p{i},{i * 10},{i * 5},{i * 1000},{i * 500 + 46000}\n" for i in range(5))
    (workdir / "line.csv").write_text("name,vendor_x,vendor_y,twinzo_x,twinzo_y\n" + rows)
    assert _run(workdir, "--plant", "Old Plant", "line.csv") == 1
    assert "lie on (or very near) one line" in capsys.readouterr().err


def test_unknown_plant(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(workdir, "--plant", "Nope", "points.csv") == 2
    assert "no plant named 'Nope'" in capsys.readouterr().err


def test_missing_csv(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(workdir, "--plant", "Old Plant", "absent.csv") == 1
    assert "absent.csv: file not found" in capsys.readouterr().err


def test_the_parser_mirrors_the_library_constants() -> None:
    assert calibrate_cmd._MODELS == MODELS
    assert calibrate_cmd._THRESHOLD_MM == DEFAULT_THRESHOLD_MM
    assert calibrate_cmd._WARN_MM == DEFAULT_WARN_MM
