"""The device-map editor against a real config file edited meanwhile (issue 13, FAIL 6),
and refusing one login for two robots (FAIL 7)."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from dtp_console.config import load_config
from dtp_console.config.writer import merge_device_map
from dtp_console.ui.palette import PaletteApp
from dtp_console.ui.screens.device_map import DeviceMapEditor
from tests.support.configs import OPERATOR_CONFIG

SIZE = (100, 30)
OPENED = {"ati_amr_001": "tugger-05-old"}
LINE = "      ati_amr_001: tugger-05-old   # the first tugger\n"


class _Host(PaletteApp[None]):
    def __init__(self, editor: DeviceMapEditor) -> None:
        super().__init__()
        self.editor = editor
        self.results: list[dict[str, str] | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.editor, self.results.append)


def _file_editor(tmp_path: Path, opened: dict[str, str]) -> tuple[Path, DeviceMapEditor]:
    path = tmp_path / "console.yaml"
    path.write_text(OPERATOR_CONFIG.format(port=1883))

    async def save(mapping: dict[str, str], base: dict[str, str]) -> dict[str, str]:
        return merge_device_map(path, "Old Plant", base, mapping, environ={})

    return path, DeviceMapEditor("Old Plant", opened, [], save)


async def _add(pilot: Pilot[None], vendor_id: str, login: str) -> None:
    await pilot.press("a", *vendor_id, "tab", *login, "enter")


def _in_file(path: Path) -> dict[str, str]:
    return load_config(path, environ={}).plant("Old Plant").device_map


async def test_a_mapping_added_to_the_file_while_open_survives_the_save(tmp_path: Path) -> None:
    path, editor = _file_editor(tmp_path, OPENED)
    host = _Host(editor)
    async with host.run_test(size=SIZE) as pilot:
        # A colleague adds a robot to the file while the editor is open.
        path.write_text(path.read_text().replace(LINE, LINE + "      ati_amr_007: tugger-07\n"))
        await _add(pilot, "ati_amr_002", "tugger-06-old")
        await pilot.press("ctrl+s")
        await pilot.pause()
    expected = {
        "ati_amr_001": "tugger-05-old",
        "ati_amr_007": "tugger-07",
        "ati_amr_002": "tugger-06-old",
    }
    assert _in_file(path) == expected
    assert host.results == [expected]  # the map now in force, what the bridge applies


async def test_the_same_id_changed_both_ways_reloads_and_says_why(tmp_path: Path) -> None:
    path, editor = _file_editor(tmp_path, OPENED)
    host = _Host(editor)
    async with host.run_test(size=SIZE) as pilot:
        path.write_text(path.read_text().replace("tugger-05-old", "tugger-99"))
        changed = path.read_text()
        await pilot.press("e", "ctrl+u", *"tugger-11", "enter")
        await _add(pilot, "ati_amr_002", "tugger-06-old")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "the file changed since you opened it" in editor.error
        assert "'ati_amr_001'" in editor.error
        assert path.read_text() == changed
        assert pilot.app.screen is editor
        # Reloaded: the file's login for the contested id, the other edit kept.
        assert editor.mapping == {"ati_amr_001": "tugger-99", "ati_amr_002": "tugger-06-old"}
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert _in_file(path) == {"ati_amr_001": "tugger-99", "ati_amr_002": "tugger-06-old"}
    assert host.results == [_in_file(path)]


async def test_a_login_already_mapped_is_shown_on_the_field_and_save_refused(
    tmp_path: Path,
) -> None:
    path, editor = _file_editor(tmp_path, OPENED)
    before = path.read_text()
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await pilot.press("a", *"ati_amr_002", "tab", *"tugger-05-old")
        await pilot.pause()
        assert (
            editor.problem("login") == "login 'tugger-05-old' is already mapped from 'ati_amr_001'"
        )
        await pilot.press("enter")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "fix the highlighted field" in editor.error
        assert editor.mapping == OPENED
        assert pilot.app.screen is editor
    assert path.read_text() == before


async def test_a_var_reference_in_the_map_is_written_back_as_written(tmp_path: Path) -> None:
    path, _ = _file_editor(tmp_path, OPENED)
    path.write_text(path.read_text().replace("tugger-05-old", "${TUGGER_ONE:-tugger-05-old}"))

    async def save(mapping: dict[str, str], base: dict[str, str]) -> dict[str, str]:
        return merge_device_map(path, "Old Plant", base, mapping, environ={})

    editor = DeviceMapEditor("Old Plant", _in_file(path), [], save)
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await _add(pilot, "ati_amr_002", "tugger-06-old")
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert "ati_amr_001: ${TUGGER_ONE:-tugger-05-old}   # the first tugger" in path.read_text()
    assert _in_file(path) == {"ati_amr_001": "tugger-05-old", "ati_amr_002": "tugger-06-old"}
