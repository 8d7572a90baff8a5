"""The device-map editor, driven from the keyboard with Pilot."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Input, OptionList

from dtp_console.config.writer import ConfigWriteError
from dtp_console.ui.palette import PaletteApp
from dtp_console.ui.screens.confirm import ConfirmScreen
from dtp_console.ui.screens.device_map import DeviceMapEditor, SaveMap

SIZE = (100, 30)


class _Saver:
    """Records what the editor saves; raises `error` instead when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, str]] = []
        self.bases: list[dict[str, str]] = []
        self.error = error

    async def __call__(self, mapping: dict[str, str], base: dict[str, str]) -> None:
        self.calls.append(mapping)
        self.bases.append(base)
        if self.error is not None:
            raise self.error


class _Host(PaletteApp[None]):
    def __init__(self, editor: DeviceMapEditor) -> None:
        super().__init__()
        self.editor = editor
        self.results: list[dict[str, str] | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.editor, self.results.append)


def _editor(
    mapping: dict[str, str] | None = None,
    suggestions: list[str] | None = None,
    save: SaveMap | None = None,
) -> DeviceMapEditor:
    return DeviceMapEditor(
        "Hall A",
        {"amr-1": "robot-1", "amr-2": "robot-2"} if mapping is None else mapping,
        suggestions or [],
        save or _Saver(),
    )


async def _type(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*text)


def _focus(editor: DeviceMapEditor) -> str | None:
    """Id of the focused widget (`dm-vendor`, `dm-login`, `dm-table`, `dm-suggestions`)."""
    return editor.focused.id if editor.focused is not None else None


def _top(pilot: Pilot[None]) -> Screen[Any]:
    return pilot.app.screen


def _rows(editor: DeviceMapEditor) -> list[str]:
    table = editor.query_one("#dm-table", DataTable)
    return [str(key.value) for key in table.rows]


async def test_add_a_mapping_from_the_keyboard() -> None:
    editor = _editor()
    async with _Host(editor).run_test(size=SIZE) as pilot:
        assert _focus(editor) == "dm-table"  # no suggestions: the map has the focus
        await pilot.press("a")
        assert _focus(editor) == "dm-vendor"
        await _type(pilot, "amr-3")
        await pilot.press("enter")  # vendor id done: on to the login
        assert _focus(editor) == "dm-login"
        await _type(pilot, "robot-3")
        await pilot.press("enter")
        assert editor.mapping == {"amr-1": "robot-1", "amr-2": "robot-2", "amr-3": "robot-3"}
        assert _rows(editor) == ["amr-1", "amr-2", "amr-3"]
        assert editor.query_one("#dm-vendor", Input).value == ""  # form cleared for the next
        assert editor.dirty


async def test_edit_the_selected_mapping_with_e_and_with_enter() -> None:
    editor = _editor()
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await pilot.press("e")  # cursor on the first row
        login = editor.query_one("#dm-login", Input)
        assert _focus(editor) == "dm-login"
        assert (editor.query_one("#dm-vendor", Input).value, login.value) == ("amr-1", "robot-1")
        await pilot.press("ctrl+u")
        await _type(pilot, "robot-9")
        await pilot.press("enter")
        assert editor.mapping == {"amr-1": "robot-9", "amr-2": "robot-2"}

        await pilot.press("down", "enter")  # enter on a row edits it too
        assert editor.query_one("#dm-vendor", Input).value == "amr-2"
        await pilot.press("shift+tab", "end", "backspace", "backspace")  # rename the vendor id
        await _type(pilot, "-b")
        await pilot.press("enter")
        assert list(editor.mapping.items()) == [("amr-1", "robot-9"), ("amr-b", "robot-2")]


async def test_remove_with_d_and_delete() -> None:
    editor = _editor({"amr-1": "robot-1", "amr-2": "robot-2", "amr-3": "robot-3"})
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await pilot.press("down", "d")
        assert editor.mapping == {"amr-1": "robot-1", "amr-3": "robot-3"}
        await pilot.press("delete")
        assert editor.mapping == {"amr-1": "robot-1"}
        assert _rows(editor) == ["amr-1"]


async def test_invalid_login_shows_the_reason_and_blocks_save() -> None:
    saver = _Saver()
    editor = _editor(save=saver)
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await _type(pilot, "amr-3")
        await pilot.press("enter")
        await _type(pilot, "bad login")
        await pilot.pause()
        assert "letters, digits" in editor.problem("login")
        assert editor.problem("vendor") == ""
        assert editor.query_one("#dm-login", Input).has_class("-invalid")

        await pilot.press("enter")  # refused
        await pilot.press("ctrl+s")  # and so is saving
        assert saver.calls == []
        assert "fix the highlighted field" in editor.error
        assert _top(pilot) is editor
        assert "amr-3" not in editor.mapping


async def test_empty_fields_are_reported_only_once_submitted() -> None:
    editor = _editor()
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await pilot.press("a")
        assert (editor.problem("vendor"), editor.problem("login")) == ("", "")
        await pilot.press("tab", "enter")  # submit an empty login
        assert editor.problem("vendor") == "vendor id is empty"
        assert editor.problem("login") == "login is empty"
        assert _focus(editor) == "dm-vendor"


async def test_duplicate_vendor_id_is_refused() -> None:
    editor = _editor()
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await _type(pilot, "amr-2")
        await pilot.pause()
        assert "already mapped" in editor.problem("vendor")
        await pilot.press("enter")
        await _type(pilot, "robot-x")
        await pilot.press("enter")
        assert editor.mapping == {"amr-1": "robot-1", "amr-2": "robot-2"}
        assert _focus(editor) == "dm-vendor"

        await pilot.press("ctrl+u")
        await pilot.press("escape")
        assert isinstance(_top(pilot), ConfirmScreen)  # form holds an edit: asks
        await pilot.press("n")
        assert _top(pilot) is editor


async def test_a_suggestion_is_mapped_in_two_keystrokes() -> None:
    editor = _editor(suggestions=["amr-7", "amr-1", "amr-8"])
    async with _Host(editor).run_test(size=SIZE) as pilot:
        suggestions = editor.query_one("#dm-suggestions", OptionList)
        assert _focus(editor) == "dm-suggestions"  # offered first when there are any
        assert suggestions.option_count == 2  # amr-1 is mapped already
        await pilot.press("enter")
        assert editor.query_one("#dm-vendor", Input).value == "amr-7"
        assert _focus(editor) == "dm-login"
        await _type(pilot, "robot-7")
        await pilot.press("enter")
        assert editor.mapping["amr-7"] == "robot-7"
        assert _focus(editor) == "dm-suggestions"  # back for the next one
        assert [suggestions.get_option_at_index(0).id] == ["amr-8"]
        assert suggestions.option_count == 1


async def test_save_passes_the_map_and_dismisses() -> None:
    saver = _Saver()
    editor = _editor(suggestions=["amr-7"], save=saver)
    host = _Host(editor)
    async with host.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        await _type(pilot, "robot-7")
        await pilot.press("enter")
        # No suggestion left: the map has the focus, its cursor on the new row.
        assert _focus(editor) == "dm-table"
        assert editor.query_one("#dm-table", DataTable).cursor_row == 2
        await pilot.press("up", "up", "d")
        await pilot.press("s")
        expected = {"amr-2": "robot-2", "amr-7": "robot-7"}
        assert saver.calls == [expected]
        assert saver.bases == [{"amr-1": "robot-1", "amr-2": "robot-2"}]  # the map as opened
        assert host.results == [expected]
        assert _top(pilot) is not editor


async def test_ctrl_s_commits_a_valid_pending_form() -> None:
    saver = _Saver()
    editor = _editor(save=saver)
    async with _Host(editor).run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await _type(pilot, "amr-3")
        await pilot.press("tab")
        await _type(pilot, "robot-3")
        await pilot.press("ctrl+s")
        assert saver.calls == [{"amr-1": "robot-1", "amr-2": "robot-2", "amr-3": "robot-3"}]


@pytest.mark.parametrize(
    "error",
    [ConfigWriteError("config.yaml is read-only"), OSError("disk full"), ValueError("no bridge")],
)
async def test_save_failure_keeps_the_modal_open_with_the_edits(error: Exception) -> None:
    saver = _Saver(error)
    editor = _editor(save=saver)
    host = _Host(editor)
    async with host.run_test(size=SIZE) as pilot:
        await pilot.press("d", "ctrl+s")
        assert saver.calls == [{"amr-2": "robot-2"}]
        assert _top(pilot) is editor
        assert editor.error == f"not saved: {error}"
        assert editor.mapping == {"amr-2": "robot-2"}
        assert host.results == []


async def test_escape_asks_before_discarding_changes() -> None:
    editor = _editor()
    host = _Host(editor)
    async with host.run_test(size=SIZE) as pilot:
        await pilot.press("d", "escape")
        assert isinstance(_top(pilot), ConfirmScreen)
        await pilot.press("escape")  # keep editing
        assert _top(pilot) is editor
        assert editor.mapping == {"amr-2": "robot-2"}
        await pilot.press("escape", "y")
        assert host.results == [None]
        assert _top(pilot) is not editor


async def test_escape_without_changes_closes_at_once() -> None:
    editor = _editor()
    host = _Host(editor)
    async with host.run_test(size=SIZE) as pilot:
        await pilot.press("e", "escape")  # loading a row into the form is not a change
        assert host.results == [None]
