"""The twin registry table: live from the registry's events, filterable, with lifecycle actions.

The panel holds every twin it knows (`reload()` reads them all once) and shows
those matching the tenant/status filter. Registry events update one row in
place; deprecate (`x`) and delete (`D`) ask first and report failures as
notifications; `enter` on a twin opens its twin view (its data, alerts, lifecycle).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.worker import WorkType

from dtp_console.events import TwinDeleted, TwinUpdated
from dtp_console.registry.lifecycle import STATUSES, TwinStatus
from dtp_console.textsafe import safe_text
from dtp_console.ui.display import fmt_age
from dtp_console.ui.palette import BLUE, GREEN, MUTED, TEXT
from dtp_console.ui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from textual.screen import Screen

    from dtp_console.registry.model import TwinRecord
    from dtp_console.view import RegistryView

__all__ = ["RegistryPanel"]

_Cell = tuple[str, str]  # text, Rich style (hex colours only)
_COLUMNS: list[tuple[str, str, int]] = [
    ("id", "id", 20),
    ("name", "name", 14),
    ("tenant", "tenant", 8),
    ("status", "status", 12),
    ("streams", "data streams", 24),
    ("updated", "updated", 7),
]
_STATUS_STYLE: dict[str, str] = {
    "instantiated": BLUE,
    "active": f"bold {GREEN}",
    "deprecated": f"italic {MUTED}",
}
_AGE_REFRESH_S = 5.0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _streams(twin: TwinRecord, width: int) -> str:
    """The first stream and how many more (`MQTT:dtp/lift/alerts +1`), cut to `width`."""
    streams = twin.interfaces.data_streams
    if not streams:
        return "–"
    more = f" +{len(streams) - 1}" if len(streams) > 1 else ""
    first = streams[0]
    if len(first) + len(more) > width:  # keep the count visible: cut the address instead
        first = first[: max(1, width - len(more) - 1)] + "…"
    return first + more


class RegistryPanel(Widget):
    """Registered twins: id, name, tenant, status, data streams, age of the last update."""

    DEFAULT_CSS = """
    RegistryPanel {
        height: 1fr;
        min-height: 5;
    }
    RegistryPanel > #registry-filters {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    RegistryPanel > #registry-table {
        height: 1fr;
    }
    RegistryPanel > #registry-placeholder {
        display: none;
        height: 1fr;
        content-align: center middle;
        color: $text-muted;
        text-style: italic;
    }
    RegistryPanel.-offline > #registry-placeholder {
        display: block;
    }
    RegistryPanel.-offline > #registry-table, RegistryPanel.-offline > #registry-filters {
        display: none;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "cycle_tenant", "Tenant"),
        Binding("s", "cycle_status", "Status"),
        Binding("x", "deprecate", "Deprecate"),
        Binding("D", "delete", "Delete"),
        Binding("r", "reload", "Reload", show=False),
    ]

    def __init__(
        self,
        registry_getter: Callable[[], RegistryView | None],
        *,
        read_only: Callable[[], str | None] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        twin_view: Callable[[TwinRecord], Screen[None]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._registry_getter = registry_getter
        self._read_only = read_only or (lambda: None)
        self._twin_view = twin_view
        self._clock = clock or _utcnow
        self._twins: dict[str, TwinRecord] = {}
        self._cells: dict[str, list[_Cell]] = {}  # shown rows, in display order
        self._loaded = False
        self.tenant_filter: str | None = None
        """Show only this tenant's twins (None: every tenant)."""
        self.status_filter: TwinStatus | None = None
        """Show only twins in this status (None: every status)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="registry-filters", markup=False)
        table: DataTable[Text] = DataTable(
            id="registry-table", cursor_type="row", zebra_stripes=True
        )
        for key, label, width in _COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("registry: loading…", id="registry-placeholder", markup=False)

    def on_mount(self) -> None:
        self.add_class("-offline")
        self.set_interval(_AGE_REFRESH_S, self._refresh_ages)
        self.request_reload()

    # -- public view ---------------------------------------------------------------

    @property
    def service(self) -> RegistryView | None:
        """The running registry, or None."""
        return self._registry_getter()

    @property
    def shown_ids(self) -> list[str]:
        """Ids of the rows shown, in display order."""
        return list(self._cells)

    @property
    def selected_id(self) -> str | None:
        """Id of the twin under the cursor."""
        table = self._table
        if not self._cells or table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    @property
    def placeholder(self) -> str | None:
        """The message shown instead of the table, or None while the table is shown."""
        if not self.has_class("-offline"):
            return None
        return str(self.query_one("#registry-placeholder", Static).content)

    def cell_text(self, twin_id: str, column: str) -> str:
        """The text of one shown cell (tests read the table through this)."""
        index = [c[0] for c in _COLUMNS].index(column)
        return self._cells[twin_id][index][0]

    # -- loading and events --------------------------------------------------------

    async def reload(self) -> None:
        """Read every twin from the running registry (or show that none is running)."""
        service = self.service
        if service is None:
            self._offline("registry not running")
            return
        try:
            twins = await service.list_twins()
        except Exception as exc:  # a broken store must not take the console down
            self._offline(f"registry unavailable: {exc}")
            self.notify(safe_text(exc), title="registry", severity="error", markup=False)
            return
        self._twins = {twin.id: twin for twin in twins}
        self._loaded = True
        self.remove_class("-offline")
        self._rebuild()

    def request_reload(self) -> None:
        """Read every twin again in a worker (the latest request wins).

        The worker gets the method, not a coroutine: a request cancelled before it
        started would leave its coroutine never awaited.
        """
        work: WorkType[None] = self.reload
        self.run_worker(work, group="registry-reload", exclusive=True)

    def apply_event(self, event: object) -> bool:
        """Update the one row `event` (`TwinUpdated` / `TwinDeleted`) is about; False if ignored."""
        if isinstance(event, TwinUpdated) or (isinstance(event, TwinDeleted) and not event.hard):
            if not self._loaded:  # the registry came up since: read everything once
                self.request_reload()
                return True
            self._put(event.twin)
            return True
        if isinstance(event, TwinDeleted):
            self._drop(event.twin.id)
            return True
        return False

    def set_filter(self, *, tenant: str | None, status: TwinStatus | None) -> None:
        """Show only `tenant`'s twins in `status` (None: any)."""
        self.tenant_filter = tenant
        self.status_filter = status
        self._rebuild()

    # -- actions -------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """`enter` on a twin: open its twin view."""
        event.stop()
        self.open_twin(event.row_key.value)

    def open_twin(self, twin_id: str | None = None) -> None:
        """Open the twin view of `twin_id` (default: the selected twin)."""
        twin = self._twins.get(twin_id or self.selected_id or "")
        if twin is None or self._twin_view is None:
            return
        self.app.push_screen(self._twin_view(twin))

    def action_cycle_tenant(self) -> None:
        """Next tenant filter: all → each known tenant → all."""
        tenants: list[str | None] = [None, *sorted({t.tenant for t in self._twins.values()})]
        at = tenants.index(self.tenant_filter) if self.tenant_filter in tenants else 0
        self.set_filter(tenant=tenants[(at + 1) % len(tenants)], status=self.status_filter)

    def action_cycle_status(self) -> None:
        """Next status filter: all → instantiated → active → deprecated → all."""
        statuses: list[TwinStatus | None] = [None, *STATUSES]
        at = statuses.index(self.status_filter)
        self.set_filter(tenant=self.tenant_filter, status=statuses[(at + 1) % len(statuses)])

    async def action_reload(self) -> None:
        """Read the registry again."""
        await self.reload()

    def action_deprecate(self) -> None:
        """Deprecate (soft-delete) the selected twin, after confirmation."""
        self._confirm("deprecate")

    def action_delete(self) -> None:
        """Remove the selected twin and its history, after confirmation."""
        self._confirm("delete")

    def _confirm(self, action: Literal["deprecate", "delete"]) -> None:
        why = self._read_only()
        if why is not None:
            self.notify(
                f"{action} is disabled: {why}", title="registry", severity="warning", markup=False
            )
            return
        twin_id = self.selected_id
        if twin_id is None:
            self.notify("no twin selected", title="registry", severity="warning")
            return
        twin = self._twins[twin_id]
        if action == "deprecate":
            question = f"Deprecate twin {twin_id} ({twin.name})? It stays listed and can return."
        else:
            question = f"Delete twin {twin_id} ({twin.name}) and its history for good?"

        async def _answer(yes: bool | None) -> None:
            if yes:
                await self._act(action, twin_id)

        self.app.push_screen(ConfirmScreen(question, yes=action.capitalize(), no="Cancel"), _answer)

    async def _act(self, action: Literal["deprecate", "delete"], twin_id: str) -> None:
        service = self.service
        if service is None:
            self.notify("registry not running", title="registry", severity="error")
            return
        try:
            if action == "deprecate":
                self._put(await service.deprecate(twin_id, reason="deprecated in the console"))
            else:
                await service.delete(twin_id, reason="deleted in the console")
                self._drop(twin_id)
        except Exception as exc:  # illegal transition, unknown twin, store down: say so
            self.notify(
                safe_text(f"{action} {twin_id} failed: {exc}"),
                title="registry",
                severity="error",
                markup=False,
            )
            return
        self.notify(safe_text(f"{twin_id} {action}d"), title="registry", markup=False)

    # -- rows ----------------------------------------------------------------------

    @property
    def _table(self) -> DataTable[Text]:
        table: DataTable[Text] = self.query_one("#registry-table", DataTable)
        return table

    def _matches(self, twin: TwinRecord) -> bool:
        return (self.tenant_filter is None or twin.tenant == self.tenant_filter) and (
            self.status_filter is None or twin.status == self.status_filter
        )

    def _row(self, twin: TwinRecord) -> list[_Cell]:
        age = (self._clock() - twin.updated_at).total_seconds()
        return [
            (twin.id, f"bold {TEXT}"),
            (twin.name, TEXT),
            (twin.tenant, MUTED),
            (twin.status, _STATUS_STYLE.get(twin.status, TEXT)),
            (_streams(twin, _COLUMNS[4][2]), TEXT),
            (fmt_age(age), MUTED),
        ]

    def _put(self, twin: TwinRecord) -> None:
        """Store `twin` and show it: update its row's changed cells, add or hide it."""
        self._twins[twin.id] = twin
        if not self._matches(twin):
            self._remove_row(twin.id)
        elif twin.id in self._cells:
            self._update_row(twin.id, self._row(twin))
        else:
            self._rebuild()  # a row to insert: keep the order by id
        self._show_filters()

    def _drop(self, twin_id: str) -> None:
        self._twins.pop(twin_id, None)
        self._remove_row(twin_id)
        self._show_filters()

    def _remove_row(self, twin_id: str) -> None:
        if twin_id in self._cells:
            self._table.remove_row(twin_id)
            del self._cells[twin_id]

    def _update_row(self, twin_id: str, cells: list[_Cell]) -> None:
        old = self._cells[twin_id]
        for index, cell in enumerate(cells):
            if old[index] != cell:
                self._table.update_cell(twin_id, _COLUMNS[index][0], _text(cell))
                old[index] = cell

    def _rebuild(self) -> None:
        """Show the matching twins by id, keeping the cursor on the same twin if it stays."""
        table = self._table
        selected = self.selected_id
        table.clear()
        self._cells = {}
        for twin_id in sorted(self._twins):
            twin = self._twins[twin_id]
            if self._matches(twin):
                cells = self._row(twin)
                table.add_row(*(_text(cell) for cell in cells), key=twin_id)
                self._cells[twin_id] = cells
        if selected in self._cells:
            table.move_cursor(row=list(self._cells).index(selected))
        self._show_filters()

    def _refresh_ages(self) -> None:
        with self.app.batch_update():
            for twin_id in self._cells:
                self._update_row(twin_id, self._row(self._twins[twin_id]))

    def _show_filters(self) -> None:
        tenant = self.tenant_filter or "all"
        status = self.status_filter or "all"
        shown, total = len(self._cells), len(self._twins)
        self.query_one("#registry-filters", Static).update(
            safe_text(
                f"tenant: {tenant} (t) · status: {status} (s) · {shown} of {total} twins"
                " · x deprecate · D delete"
            )
        )

    def _offline(self, message: str) -> None:
        self._loaded = False
        self.query_one("#registry-placeholder", Static).update(safe_text(message))
        self.add_class("-offline")


def _text(cell: _Cell) -> Text:
    """A cell as plain text: twin fields come from files anyone may write."""
    return Text(safe_text(cell[0], 200), style=cell[1])
