"""Atomic, comment-preserving edits of one plant's field in the config file."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from dtp_console.config import load_config
from dtp_console.config.writer import ConfigWriteError, read_plant_field, update_plant_field

CONFIG = """\
# dtp-console configuration (test copy)
twinzo:
  client: demo   # placeholder, not a real client
  password: "${TWINZO_PASSWORD:-placeholder}"

plants:
  - name: Old Plant   # the ATI one
    format: ati_sherpa
    twinzo: {sector_id: 2}
    # calibrated by hand in 2023; replace with `dtp-console calibrate --write`
    affine:
      a: 1.0  # x → X
      b: 0.0
      c: 0.0
      d: 1.0
      tx: 0.0
      ty: 0.0   # last one
    # Floor bounds in mm
    bounds: {x_min: 0, x_max: 265000, y_min: 46000, y_max: 218000}
    device_map:
      ati_amr_001: tugger-05-old
      ati_amr_002: tugger-06-old  # the slow one
    # HiTech comes next
  - name: HiTech Plant
    format: hitech
    twinzo:
      sector_id: 1
    device_map:
      'amr-1': tugger-03
# end of plants
"""

REAL = {"a": 999.74, "b": 22.88, "c": 22.88, "d": -999.74, "tx": 95598.8, "ty": 167357.6}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "console.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_updates_only_the_field_and_keeps_comments(config_file: Path) -> None:
    old = update_plant_field(config_file, "Old Plant", "affine", REAL)
    assert old == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0, "tx": 0.0, "ty": 0.0}
    after = config_file.read_text(encoding="utf-8")
    removed, added = _changed_lines(CONFIG, after)
    assert [line.split(":")[0].strip() for line in removed] == ["a", "b", "c", "d", "tx", "ty"]
    assert added == [
        "      a: 999.74 # x → X",
        "      b: 22.88",
        "      c: 22.88",
        "      d: -999.74",
        "      tx: 95598.8",
        "      ty: 167357.6 # last one",
    ]
    plant = load_config(config_file).plant("Old Plant")
    assert plant.affine.model_dump() == REAL
    assert plant.device_map == {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"}


@pytest.mark.parametrize(
    "text",
    [
        CONFIG,
        # Sequences flush with their parent key.
        CONFIG.replace("  - name:", "- name:").replace("\n    ", "\n  "),
        # Four spaces everywhere.
        "twinzo:\n    client: x  # c\nplants:\n    - name: A\n      format: hitech\n"
        "      twinzo:\n          sector_id: 1\n",
        # Flow style.
        "plants: [{name: A, format: hitech, twinzo: {sector_id: 1}, affine: {a: 1, b: 0}}]\n",
    ],
)
def test_the_rest_of_the_file_is_kept_byte_for_byte(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    name = "Old Plant" if "Old Plant" in text else "A"
    format_line = next(line for line in text.splitlines() if "format: " in line)
    assert update_plant_field(path, name, "format", "generic") in ("ati_sherpa", "hitech")
    after = path.read_text(encoding="utf-8")
    expected = format_line.replace("ati_sherpa", "generic").replace("hitech", "generic")
    assert after == text.replace(format_line, expected, 1)


def test_an_unchanged_value_does_not_touch_the_file(config_file: Path) -> None:
    before = config_file.stat().st_mtime_ns
    os.utime(config_file, ns=(before - 10**9, before - 10**9))
    touched = config_file.stat().st_mtime_ns
    old = read_plant_field(config_file, "Old Plant", "affine")
    assert update_plant_field(config_file, "Old Plant", "affine", old) == old
    assert config_file.stat().st_mtime_ns == touched
    assert config_file.read_text(encoding="utf-8") == CONFIG


def test_adding_a_field_keeps_the_trailing_comment_last(config_file: Path) -> None:
    assert update_plant_field(config_file, "hitech plant", "affine", REAL) is None
    after = config_file.read_text(encoding="utf-8")
    assert after.endswith("      ty: 167357.6\n# end of plants\n")
    assert after.startswith(CONFIG.removesuffix("# end of plants\n"))
    assert load_config(config_file).plant("HiTech Plant").affine.model_dump() == REAL


def test_adding_a_device_map_entry_keeps_the_next_comment_in_place(config_file: Path) -> None:
    new_map = {
        "ati_amr_001": "tugger-05-old",
        "ati_amr_002": "tugger-06-old",
        "ati_amr_003": "tugger-07-old",
    }
    update_plant_field(config_file, "Old Plant", "device_map", new_map)
    after = config_file.read_text(encoding="utf-8")
    assert (
        "      ati_amr_002: tugger-06-old  # the slow one\n"
        "      ati_amr_003: tugger-07-old\n"
        "    # HiTech comes next\n"
    ) in after
    _, added = _changed_lines(CONFIG, after)
    assert added == ["      ati_amr_003: tugger-07-old"]


def test_removing_the_last_key_keeps_the_comment_after_it(config_file: Path) -> None:
    update_plant_field(config_file, "Old Plant", "device_map", {"ati_amr_001": "tugger-05-old"})
    after = config_file.read_text(encoding="utf-8")
    assert "      ati_amr_001: tugger-05-old\n    # HiTech comes next\n" in after
    assert "ati_amr_002" not in after


def test_scalar_and_dotted_fields(config_file: Path) -> None:
    assert update_plant_field(config_file, "HiTech Plant", "twinzo.sector_id", 7) == 1
    assert update_plant_field(config_file, "HiTech Plant", "broker.topics", ["a/#"]) is None
    assert update_plant_field(config_file, "Old Plant", "movement_threshold_mm", 25.0) is None
    config = load_config(config_file)
    hitech = config.plant("HiTech Plant")
    assert hitech.twinzo.sector_id == 7
    assert hitech.broker.topics == ["a/#"]
    assert config.plant("Old Plant").movement_threshold_mm == 25.0
    assert config_file.read_text(encoding="utf-8").endswith("# end of plants\n")
    assert read_plant_field(config_file, "HiTech Plant", "broker.topics") == ["a/#"]
    assert read_plant_field(config_file, "HiTech Plant", "nothing.here") is None


def test_unknown_plant_is_refused_clearly(config_file: Path) -> None:
    with pytest.raises(ConfigWriteError, match=r"no plant named 'Nope'.*'Old Plant', 'HiTech"):
        update_plant_field(config_file, "Nope", "affine", REAL)
    assert config_file.read_text(encoding="utf-8") == CONFIG


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("twinzo: {client: x}\n", "no `plants:` list"),
        ("plants: [\n", "cannot parse"),
        ("plants:\n  - name: A\n  - name: a\n", "appears 2 times"),
        ("plants:\n  - name: A\n    affine: 3\n", "affine is not a mapping"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigWriteError, match=message):
        update_plant_field(path, "A", "affine.a", 2.0)
    assert path.read_text(encoding="utf-8") == text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigWriteError, match="config file not found"):
        update_plant_field(tmp_path / "none.yaml", "A", "affine", REAL)


def test_bad_field_name(config_file: Path) -> None:
    with pytest.raises(ConfigWriteError, match="not a field name"):
        update_plant_field(config_file, "Old Plant", "affine..a", 1)


def test_failed_replace_leaves_the_old_file_and_no_temporary(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ConfigWriteError, match=r"No space left on device.*file is unchanged"):
        update_plant_field(config_file, "Old Plant", "affine", REAL)
    assert config_file.read_text(encoding="utf-8") == CONFIG
    assert [p.name for p in config_file.parent.iterdir()] == ["console.yaml"]


def test_failed_fsync_leaves_the_old_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ConfigWriteError, match="Input/output error"):
        update_plant_field(config_file, "Old Plant", "affine", REAL)
    assert config_file.read_text(encoding="utf-8") == CONFIG
    assert [p.name for p in config_file.parent.iterdir()] == ["console.yaml"]


def test_unrepresentable_value_leaves_the_old_file(config_file: Path) -> None:
    with pytest.raises(ConfigWriteError, match="cannot write affine"):
        update_plant_field(config_file, "Old Plant", "affine", {"a": object()})
    assert config_file.read_text(encoding="utf-8") == CONFIG


def test_permissions_are_kept_and_symlinks_followed(tmp_path: Path, config_file: Path) -> None:
    config_file.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(config_file)
    update_plant_field(link, "Old Plant", "affine", REAL)
    assert link.is_symlink()
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640
    assert "999.74" in config_file.read_text(encoding="utf-8")
