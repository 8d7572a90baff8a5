"""Saving a device map as a diff: edits made to the file meanwhile survive (issue 13, FAIL 6)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dtp_console.config import load_config
from dtp_console.config.writer import DeviceMapConflictError, merge_device_map
from tests.support.configs import OPERATOR_CONFIG

OPENED = {"ati_amr_001": "tugger-05-old"}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "console.yaml"
    path.write_text(OPERATOR_CONFIG.format(port=1883))
    return path


def _add_in_file(path: Path, line: str) -> None:
    """What another editor (vim, calibrate, a colleague) does while ours is open."""
    text = path.read_text()
    anchor = "      ati_amr_001: tugger-05-old   # the first tugger\n"
    path.write_text(text.replace(anchor, anchor + f"      {line}\n"))


def _map(path: Path) -> dict[str, str]:
    return load_config(path).plant("Old Plant").device_map


def test_a_mapping_added_to_the_file_meanwhile_survives_the_save(tmp_path: Path) -> None:
    path = _config(tmp_path)
    _add_in_file(path, "ati_amr_007: tugger-07   # added by hand")
    edited = {**OPENED, "ati_amr_002": "tugger-06-old"}
    merged = merge_device_map(path, "Old Plant", OPENED, edited, environ={})
    expected = {
        "ati_amr_001": "tugger-05-old",
        "ati_amr_007": "tugger-07",
        "ati_amr_002": "tugger-06-old",
    }
    assert merged == expected
    assert _map(path) == expected
    assert "# added by hand" in path.read_text()
    assert "# the first tugger" in path.read_text()


def test_a_removal_removes_only_what_the_operator_removed(tmp_path: Path) -> None:
    path = _config(tmp_path)
    _add_in_file(path, "ati_amr_007: tugger-07")
    merged = merge_device_map(path, "Old Plant", OPENED, {}, environ={})
    assert merged == {"ati_amr_007": "tugger-07"}
    assert _map(path) == merged


def test_the_same_id_changed_both_ways_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    path = _config(tmp_path)
    path.write_text(path.read_text().replace("tugger-05-old", "tugger-99"))
    before = path.read_text()
    with pytest.raises(
        DeviceMapConflictError, match="the file changed since you opened it"
    ) as caught:
        merge_device_map(path, "Old Plant", OPENED, {"ati_amr_001": "tugger-11"}, environ={})
    assert caught.value.keys == ["ati_amr_001"]
    assert caught.value.current == {"ati_amr_001": "tugger-99"}
    assert path.read_text() == before


def test_the_same_edit_made_both_ways_is_not_a_conflict(tmp_path: Path) -> None:
    path = _config(tmp_path)
    path.write_text(path.read_text().replace("tugger-05-old", "tugger-11"))
    merged = merge_device_map(path, "Old Plant", OPENED, {"ati_amr_001": "tugger-11"}, environ={})
    assert merged == {"ati_amr_001": "tugger-11"}


def test_a_merge_that_maps_one_login_twice_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path)
    _add_in_file(path, "ati_amr_007: tugger-07")
    before = path.read_text()
    edited = {**OPENED, "ati_amr_002": "tugger-07"}
    with pytest.raises(ValueError, match="tugger-07"):
        merge_device_map(path, "Old Plant", OPENED, edited, environ={})
    assert path.read_text() == before


def test_untouched_var_references_are_kept_as_written(tmp_path: Path) -> None:
    path = _config(tmp_path)
    _add_in_file(path, "ati_amr_002: ${LOGIN_TWO}")
    environ = {"LOGIN_TWO": "tugger-02"}
    opened = {**OPENED, "ati_amr_002": "tugger-02"}
    edited = {**opened, "ati_amr_003": "tugger-03"}
    merged = merge_device_map(path, "Old Plant", opened, edited, environ=environ)
    assert merged == edited
    assert "ati_amr_002: ${LOGIN_TWO}" in path.read_text()


def test_concurrent_saves_from_the_same_opened_map_keep_both(tmp_path: Path) -> None:
    path = _config(tmp_path)
    errors: list[BaseException] = []

    def _save(vendor_id: str) -> None:
        try:
            edited = {**OPENED, vendor_id: f"login-{vendor_id}"}
            merge_device_map(path, "Old Plant", OPENED, edited, environ={})
        except BaseException as exc:  # reported below, on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=_save, args=(f"amr_{i:02d}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(_map(path)) == {"ati_amr_001"} | {f"amr_{i:02d}" for i in range(8)}
