"""The registry panel against a real registry service on SQLite, driven with Pilot."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from dtp_console.events import Bus, Subscription, TwinDeleted, TwinUpdated
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.model import Interfaces, TwinSpec
from dtp_console.registry.runner import open_registry
from dtp_console.registry.service import RegistryService
from dtp_console.ui.palette import PaletteApp
from dtp_console.ui.screens.confirm import ConfirmScreen
from dtp_console.ui.widgets.registry_panel import RegistryPanel

SIZE = (100, 30)


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
async def service(tmp_path: Path, bus: Bus) -> AsyncIterator[RegistryService]:
    config = RegistryConfig(
        twins_root=tmp_path / "twins", sqlite_path=tmp_path / "var" / "registry.sqlite3"
    )
    async with open_registry(config, bus) as service:
        await service.register(
            TwinSpec(
                id="dt:Lift_001",
                name="Lift",
                interfaces=Interfaces(data_streams=["MQTT:dtp/lift/alerts", "MQTT:dtp/lift/load"]),
            )
        )
        await service.register(TwinSpec(id="dt:Amr_001", name="AMR fleet", tenant="acme"))
        await service.register(TwinSpec(id="dt:Dock_001", name="Dock"))
        yield service


class _Host(PaletteApp[None]):
    def __init__(
        self, getter: Callable[[], Any], clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        super().__init__()
        self._getter = getter
        self._clock = clock

    def compose(self) -> ComposeResult:
        yield RegistryPanel(self._getter, clock=self._clock, id="registry")


def _panel(app: App[None]) -> RegistryPanel:
    return app.query_one("#registry", RegistryPanel)


def _shown_status(panel: RegistryPanel, twin_id: str) -> str:
    """The status as drawn in the DataTable itself (not the panel's bookkeeping)."""
    cell = panel.query_one(DataTable).get_cell(twin_id, "status")
    assert isinstance(cell, Text)
    return cell.plain


def _feed(panel: RegistryPanel, events: Subscription) -> int:
    return sum(panel.apply_event(event) for event in events.drain())


async def test_rows_appear_after_reload(service: RegistryService) -> None:
    lift = await service.get("dt:Lift_001")
    clock = lambda: lift.updated_at + dt.timedelta(seconds=65)  # noqa: E731
    async with _Host(lambda: service, clock).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        assert panel.placeholder is None
        assert panel.shown_ids == ["dt:Amr_001", "dt:Dock_001", "dt:Lift_001"]
        assert panel.cell_text("dt:Lift_001", "name") == "Lift"
        assert panel.cell_text("dt:Lift_001", "tenant") == "demo"
        assert panel.cell_text("dt:Amr_001", "tenant") == "acme"
        assert panel.cell_text("dt:Lift_001", "status") == "instantiated"
        assert panel.cell_text("dt:Lift_001", "streams") == "MQTT:dtp/lift/alerts +1"
        assert panel.cell_text("dt:Dock_001", "streams") == "–"
        assert panel.cell_text("dt:Lift_001", "updated") == "1m05s"


async def test_long_stream_lists_keep_their_count_visible(service: RegistryService) -> None:
    streams = ["MQTT:dtp/warehouse/north/lift/alerts", "MQTT:a/b", "MQTT:c/d"]
    await service.register(
        TwinSpec(id="dt:Belt_001", name="Belt", interfaces=Interfaces(data_streams=streams))
    )
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        assert panel.cell_text("dt:Belt_001", "streams") == "MQTT:dtp/warehouse/n… +2"  # 24 cells


async def test_twin_updated_event_changes_only_that_row(
    service: RegistryService, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = bus.subscribe()
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        table = panel.query_one(DataTable)
        written: list[tuple[str | None, str | None]] = []
        update_cell = table.update_cell

        def _spy(row_key: Any, column_key: Any, value: Any, **kwargs: Any) -> None:
            written.append((str(row_key), str(column_key)))
            update_cell(row_key, column_key, value, **kwargs)

        monkeypatch.setattr(table, "update_cell", _spy)
        await service.activate("dt:Dock_001")
        [event] = list(events.drain())
        assert isinstance(event, TwinUpdated)
        assert panel.apply_event(event)
        await pilot.pause()
        assert _shown_status(panel, "dt:Dock_001") == "active"
        assert {row for row, _ in written} == {"dt:Dock_001"}
        assert ("dt:Dock_001", "status") in written
        assert _shown_status(panel, "dt:Lift_001") == "instantiated"


async def test_new_twin_and_hard_delete_events(service: RegistryService, bus: Bus) -> None:
    events = bus.subscribe()
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        await service.register(TwinSpec(id="dt:Belt_001", name="Belt"))
        await service.delete("dt:Lift_001")
        assert _feed(panel, events) == 2
        assert panel.shown_ids == ["dt:Amr_001", "dt:Belt_001", "dt:Dock_001"]
        assert not panel.apply_event(object())  # anything else is ignored


async def test_filter_by_status_and_tenant_hides_rows(service: RegistryService) -> None:
    await service.activate("dt:Lift_001")
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        await pilot.press("tab")  # the table
        await pilot.press("s")
        assert panel.status_filter == "instantiated"
        assert panel.shown_ids == ["dt:Amr_001", "dt:Dock_001"]
        await pilot.press("s")
        assert panel.shown_ids == ["dt:Lift_001"]
        await pilot.press("s", "s")  # deprecated (none), then all again
        assert panel.status_filter is None
        await pilot.press("t", "t")  # acme, then demo
        assert panel.tenant_filter == "demo"
        assert panel.shown_ids == ["dt:Dock_001", "dt:Lift_001"]


async def test_deprecate_with_confirmation(service: RegistryService) -> None:
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        await pilot.press("tab", "down")
        assert panel.selected_id == "dt:Dock_001"
        await pilot.press("x")
        assert isinstance(pilot.app.screen, ConfirmScreen)
        assert "dt:Dock_001" in pilot.app.screen.question
        await pilot.press("y")
        await pilot.pause()
        assert (await service.get("dt:Dock_001")).status == "deprecated"
        assert _shown_status(panel, "dt:Dock_001") == "deprecated"


async def test_cancel_leaves_the_twin_alone(service: RegistryService) -> None:
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        await pilot.press("tab", "x", "n")
        await pilot.press("D", "escape")
        await pilot.press("D")
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("enter")  # the focused button is "Cancel"
        await pilot.pause()
        assert not isinstance(pilot.app.screen, ConfirmScreen)
        assert (await service.get("dt:Amr_001")).status == "instantiated"
        assert panel.shown_ids == ["dt:Amr_001", "dt:Dock_001", "dt:Lift_001"]


async def test_delete_with_confirmation_removes_the_row(service: RegistryService) -> None:
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        await pilot.press("tab", "D", "y")
        await pilot.pause()
        assert await service.find("dt:Amr_001") is None
        assert panel.shown_ids == ["dt:Dock_001", "dt:Lift_001"]


async def test_a_failed_action_is_a_notification_not_a_crash(
    service: RegistryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        notes: list[tuple[str, str]] = []
        monkeypatch.setattr(
            panel, "notify", lambda message, **kw: notes.append((kw["severity"], message))
        )
        await service.delete("dt:Amr_001")  # gone behind the panel's back
        await pilot.press("tab", "D", "y")
        await pilot.pause()
        [(severity, message)] = notes
        assert severity == "error"
        assert "delete dt:Amr_001 failed" in message
        assert "no twin 'dt:Amr_001'" in message
        assert pilot.app.is_running


async def test_placeholder_when_no_registry_is_running() -> None:
    async with _Host(lambda: None).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        assert panel.placeholder == "registry not running"
        assert not panel.query_one(DataTable).display or panel.has_class("-offline")
        assert panel.shown_ids == []


async def test_events_before_a_registry_was_loaded_trigger_a_reload(
    service: RegistryService, bus: Bus
) -> None:
    running: list[RegistryService] = []
    events = bus.subscribe()
    async with _Host(lambda: running[0] if running else None).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        assert panel.placeholder == "registry not running"
        running.append(service)
        await service.activate("dt:Lift_001")
        assert _feed(panel, events) == 1
        await pilot.app.workers.wait_for_complete()
        assert panel.placeholder is None
        assert panel.shown_ids == ["dt:Amr_001", "dt:Dock_001", "dt:Lift_001"]
        assert panel.cell_text("dt:Lift_001", "status") == "active"


async def test_soft_delete_event_shows_deprecated(service: RegistryService, bus: Bus) -> None:
    events = bus.subscribe()
    async with _Host(lambda: service).run_test(size=SIZE) as pilot:
        panel = _panel(pilot.app)
        await panel.reload()
        await service.deprecate("dt:Lift_001")
        [event] = list(events.drain())
        assert isinstance(event, TwinDeleted)
        assert not event.hard
        panel.apply_event(event)
        assert panel.cell_text("dt:Lift_001", "status") == "deprecated"
