"""The device-map editor: one plant's vendor id → twinzo login map, edited in a modal.

The rules (non-empty, unique vendor id, login syntax) live in
`dtp_console.bridge.device_map`; this screen only shows their verdicts. Saving
calls the `save` callable it was given with the map as opened and as edited (the
engine applies the difference to the file as it is now, so edits made elsewhere
meanwhile survive) and stays open with the edits intact when that fails. When the
same vendor id was changed elsewhere too, the editor reloads the file's map with
the operator's other edits re-applied and says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from dtp_console.bridge.device_map import login_problem, mapping_problems, vendor_id_problem
from dtp_console.config.writer import ConfigWriteError, DeviceMapConflictError
from dtp_console.textsafe import safe_text
from dtp_console.ui.palette import MUTED, TEXT
from dtp_console.ui.screens.confirm import ConfirmScreen

__all__ = ["DeviceMapEditor"]

#: `save(edited, base)`: persist the edits from `base` (the map the editor opened with)
#: to `edited`; returns the map now in force (None: `edited`), raises to refuse.
SaveMap = Callable[[dict[str, str], dict[str, str]], Awaitable[dict[str, str] | None]]

_HINT = "a add · e edit · d remove · enter on a suggestion maps it · ctrl+s save · esc cancel"


class DeviceMapEditor(ModalScreen[dict[str, str] | None]):
    """Edit a plant's device map; dismisses with the saved map, or None when cancelled."""

    CSS_PATH = "device_map.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("d,delete", "remove", "Remove"),
        Binding("s,ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(
        self,
        plant_name: str,
        mapping: dict[str, str],
        suggestions: list[str],
        save: SaveMap,
    ) -> None:
        super().__init__()
        self.plant_name = plant_name
        self._original = dict(mapping)
        self._mapping = dict(mapping)
        self._suggestions = list(dict.fromkeys(suggestions))
        self._save = save
        self._editing: str | None = None  # vendor id whose row the form edits; None: adding
        self._form_base = ("", "")  # what the form held when it was (re)started
        self._attempted = False  # a submit failed: show every problem, even for empty fields
        self._from_suggestion = False

    # -- public view (tests and the App read these) ------------------------------------

    @property
    def mapping(self) -> dict[str, str]:
        """The map as edited so far (not yet saved)."""
        return dict(self._mapping)

    @property
    def dirty(self) -> bool:
        """Unsaved changes: the map differs from the one opened, or the form holds an edit."""
        return self._mapping != self._original or self._form_values() != self._form_base

    @property
    def error(self) -> str:
        """The message of the last failed save ("" when none)."""
        return str(self.query_one("#dm-error", Static).content)

    def problem(self, field: str) -> str:
        """The reason shown next to `field` (`vendor` or `login`), "" when none."""
        return str(self.query_one(f"#dm-{field}-problem", Static).content)

    # -- layout ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="dm-dialog") as dialog:
            dialog.border_title = Text(f"Device map · {safe_text(self.plant_name, 80)}")
            with Horizontal(id="dm-lists"):
                table: DataTable[Text] = DataTable(id="dm-table", cursor_type="row")
                table.add_column("vendor id", key="vendor", width=18)
                table.add_column("twinzo login", key="login", width=22)
                yield table
                with Vertical(id="dm-suggest-box"):
                    yield Label("Seen, not mapped", id="dm-suggest-label")
                    yield OptionList(id="dm-suggestions", markup=False)
            with Vertical(id="dm-form"):
                with Horizontal(classes="dm-row"):
                    yield Label("vendor id", classes="dm-label")
                    yield Input(id="dm-vendor", placeholder="vendor id", select_on_focus=False)
                    yield Static("", id="dm-vendor-problem", classes="dm-problem", markup=False)
                with Horizontal(classes="dm-row"):
                    yield Label("login", classes="dm-label")
                    yield Input(id="dm-login", placeholder="twinzo login", select_on_focus=False)
                    yield Static("", id="dm-login-problem", classes="dm-problem", markup=False)
            yield Static("", id="dm-error", markup=False)
            yield Static(_HINT, id="dm-hint", markup=False)

    def on_mount(self) -> None:
        self._fill_table()
        self._fill_suggestions()
        self._reset_form()
        if self.query_one("#dm-suggestions", OptionList).option_count:
            self.query_one("#dm-suggestions", OptionList).focus()
        elif self._mapping:
            self.query_one("#dm-table", DataTable).focus()
        else:
            self.query_one("#dm-vendor", Input).focus()

    # -- actions -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:  # noqa: ARG002
        # Edit and remove act on the table's cursor row: only while the table has the focus.
        if action in {"edit", "remove"}:
            return self.focused is self.query_one("#dm-table", DataTable)
        return True

    def action_add(self) -> None:
        """Start a new mapping in the form."""
        self._reset_form()
        self.query_one("#dm-vendor", Input).focus()

    def action_edit(self) -> None:
        """Load the selected mapping into the form."""
        vendor_id = self._cursor_vendor_id()
        if vendor_id is None:
            return
        self._reset_form(vendor_id)
        self.query_one("#dm-login", Input).focus()

    def action_remove(self) -> None:
        """Remove the selected mapping (kept until save; cancel brings it back)."""
        vendor_id = self._cursor_vendor_id()
        if vendor_id is None:
            return
        row = self.query_one("#dm-table", DataTable).cursor_row
        del self._mapping[vendor_id]
        if self._editing == vendor_id:
            self._reset_form()
        self._fill_table(cursor=max(0, min(row, len(self._mapping) - 1)))
        self._fill_suggestions()

    async def action_save(self) -> None:
        """Commit a pending form, then save the map; stay open and say why if that fails."""
        pending = self._form_values() not in {("", ""), self._form_base}
        if pending and not self._commit_form():
            self._show_error("fix the highlighted field first (or press a to start over)")
            return
        problems = mapping_problems(self._mapping)
        if problems:
            self._show_error("; ".join(problems))
            return
        mapping = dict(self._mapping)
        try:
            saved = await self._save(mapping, dict(self._original))
        except DeviceMapConflictError as exc:
            self._rebase(exc.current, exc.keys)
            self._show_error(f"not saved: {exc}")
            return
        except (ValueError, ConfigWriteError, OSError) as exc:
            self._show_error(f"not saved: {exc}")
            return
        mapping = mapping if saved is None else dict(saved)
        self.dismiss(mapping)

    def _rebase(self, current: dict[str, str], conflicts: list[str]) -> None:
        """Take `current` as the opened map; keep this editor's non-conflicting edits."""
        edited = dict(current)
        for key in dict.fromkeys([*self._original, *self._mapping]):
            if key in conflicts or self._original.get(key) == self._mapping.get(key):
                continue
            if key in self._mapping:
                edited[key] = self._mapping[key]
            else:
                edited.pop(key, None)
        self._original = dict(current)
        self._mapping = edited
        self._reset_form()
        self._fill_table(cursor=0)
        self._fill_suggestions()

    def action_cancel(self) -> None:
        """Close without saving; asks first when there are unsaved changes."""
        if not self.dirty:
            self.dismiss(None)
            return

        def _answer(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)

        question = f"Discard the unsaved changes to the device map of {self.plant_name}?"
        self.app.push_screen(ConfirmScreen(question, yes="Discard", no="Keep editing"), _answer)

    # -- events --------------------------------------------------------------------

    @on(DataTable.RowSelected, "#dm-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_edit()

    @on(OptionList.OptionSelected, "#dm-suggestions")
    def _suggestion_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id is None:
            return
        self._reset_form()
        self.query_one("#dm-vendor", Input).value = event.option_id
        self._from_suggestion = True
        self.query_one("#dm-login", Input).focus()

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._validate()

    @on(Input.Submitted, "#dm-vendor")
    def _vendor_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.query_one("#dm-login", Input).value:
            self._commit_form()
        else:
            self.query_one("#dm-login", Input).focus()

    @on(Input.Submitted, "#dm-login")
    def _login_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._commit_form()

    # -- form ----------------------------------------------------------------------

    def _form_values(self) -> tuple[str, str]:
        return (
            self.query_one("#dm-vendor", Input).value,
            self.query_one("#dm-login", Input).value,
        )

    def _reset_form(self, vendor_id: str | None = None) -> None:
        """Empty the form for a new mapping, or load `vendor_id`'s mapping to edit it."""
        self._editing = vendor_id
        self._attempted = False
        self._from_suggestion = False
        login = self._mapping.get(vendor_id, "") if vendor_id is not None else ""
        self._form_base = (vendor_id or "", login)
        with self.prevent(Input.Changed):
            self.query_one("#dm-vendor", Input).value = vendor_id or ""
            self.query_one("#dm-login", Input).value = login
        editing = f"edit {safe_text(vendor_id, 80)}" if vendor_id is not None else "new mapping"
        # A border title given as a str is parsed as markup; a Text is shown as it is.
        self.query_one("#dm-form", Vertical).border_title = Text(editing)
        self._validate()

    def _validate(self) -> tuple[str | None, str | None]:
        """Check the form with the bridge's rules and show each reason next to its field."""
        vendor, login = self._form_values()
        others = {k: v for k, v in self._mapping.items() if k != self._editing}
        logins = {v.casefold(): k for k, v in others.items()}
        problems = (vendor_id_problem(vendor, set(others)), login_problem(login, logins))
        for field, value, problem in zip(
            ("vendor", "login"), (vendor, login), problems, strict=True
        ):
            shown = problem if problem and (value or self._attempted) else ""
            self.query_one(f"#dm-{field}-problem", Static).update(safe_text(shown))
            self.query_one(f"#dm-{field}", Input).set_class(bool(shown), "-invalid")
        return problems

    def _commit_form(self) -> bool:
        """Put the form's mapping into the map; False (reasons shown) when it is invalid."""
        vendor_problem, login_problem_ = self._validate()
        if vendor_problem or login_problem_:
            self._attempted = True
            self._validate()
            self.query_one("#dm-login" if not vendor_problem else "#dm-vendor", Input).focus()
            return False
        vendor, login = self._form_values()
        if self._editing is not None and self._editing != vendor:
            # Renamed: keep the row where it was.
            self._mapping = {
                (vendor if key == self._editing else key): (login if key == self._editing else val)
                for key, val in self._mapping.items()
            }
        else:
            self._mapping[vendor] = login
        back_to_suggestions = self._from_suggestion
        self._reset_form()
        self._show_error("")
        self._fill_table(cursor=list(self._mapping).index(vendor))
        self._fill_suggestions()
        suggestions = self.query_one("#dm-suggestions", OptionList)
        if back_to_suggestions and suggestions.option_count:
            suggestions.focus()
        else:
            self.query_one("#dm-table", DataTable).focus()
        return True

    # -- lists ---------------------------------------------------------------------

    def _cursor_vendor_id(self) -> str | None:
        table: DataTable[Text] = self.query_one("#dm-table", DataTable)
        if not self._mapping or table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    def _fill_table(self, cursor: int | None = None) -> None:
        """Show the map (a few dozen rows at most: rebuilt whole on every change)."""
        table: DataTable[Text] = self.query_one("#dm-table", DataTable)
        table.clear()
        for vendor_id, login in self._mapping.items():
            table.add_row(
                Text(safe_text(vendor_id, 200), style=TEXT),
                Text(safe_text(login, 200), style=TEXT),
                key=vendor_id,
            )
        if cursor is not None and self._mapping:
            table.move_cursor(row=cursor)

    def _fill_suggestions(self) -> None:
        """Offer the seen vendor ids that are not mapped yet (most frequent first)."""
        suggestions = self.query_one("#dm-suggestions", OptionList)
        highlighted = suggestions.highlighted
        unmapped = [vid for vid in self._suggestions if vid not in self._mapping]
        # Ids come from the broker: shown escaped and as plain text (a `[red]` stays
        # visible), while the option's id keeps the exact id the bridge will look up.
        suggestions.set_options(Option(Text(safe_text(vid, 200)), id=vid) for vid in unmapped)
        if unmapped:
            suggestions.highlighted = min(highlighted or 0, len(unmapped) - 1)
        label = "Seen, not mapped" if unmapped else "No unmapped ids seen"
        self.query_one("#dm-suggest-label", Label).update(Text(label, style=MUTED))
        suggestions.display = bool(unmapped)

    def _show_error(self, message: str) -> None:
        self.query_one("#dm-error", Static).update(safe_text(message))
