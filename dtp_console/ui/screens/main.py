"""The console's main screen: health badges, one tab per plant, twinzo, registry, log.

It lays widgets out and hands each the state it shows; the App decides when
(`refresh_view`, on the App's clock). Only the visible tab's widgets are fed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from dtp_console.config.model import PlantConfig
from dtp_console.events import Event, LogLine, StoreHealth, TwinDeleted, TwinUpdated
from dtp_console.textsafe import safe_text
from dtp_console.ui.display import UiClock
from dtp_console.ui.screens.calibration import CalibrationScreen
from dtp_console.ui.screens.device_map import DeviceMapEditor
from dtp_console.ui.screens.twin import TwinScreen
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.auth_panel import AuthPanel
from dtp_console.ui.widgets.badges import HealthBadges, badge_infos
from dtp_console.ui.widgets.floor_map import FloorMap
from dtp_console.ui.widgets.log_panel import LogPanel
from dtp_console.ui.widgets.registry_panel import RegistryPanel
from dtp_console.ui.widgets.vda_table import VdaAmrTable

if TYPE_CHECKING:
    from dtp_console.view import ConsoleEngine, RegistryView

__all__ = ["MainScreen", "PlantPane"]


class PlantPane(Horizontal):
    """A plant's AMR table beside its floor map (stacked when the terminal is narrow)."""

    def __init__(self, plant: PlantConfig, *, index: int) -> None:
        super().__init__(id=f"plant-pane-{index}", classes="plant-pane")
        self.plant = plant

    def compose(self) -> ComposeResult:
        """Table, then map."""
        table = VdaAmrTable if self.plant.format == "vda5050" else AmrTable
        yield table(
            self.plant.stale_after_s,
            clock_tolerance_s=self.plant.clock_tolerance_s,
            id=f"amr-{self.id}",
        )
        yield FloorMap(self.plant.bounds, id=f"map-{self.id}")

    def refresh_from(self, engine: ConsoleEngine, now: float) -> None:
        """Feed both widgets the plant's current state (and its config as it runs now)."""
        state = engine.state.plants.get(self.plant.name)
        if state is None:
            return
        table = self.query_one(AmrTable)
        self._follow(engine, table)
        table.refresh_from(state, now)
        self.query_one(FloorMap).refresh_from(
            state, now, self.plant.stale_after_s, selected=table.selected_key
        )

    def _follow(self, engine: ConsoleEngine, table: AmrTable) -> None:
        """Take a reloaded config's staleness, clock tolerance and bounds (name and format
        never change while the console runs)."""
        plant = next((p for p in engine.plants if p.name == self.plant.name), self.plant)
        if plant is self.plant:
            return
        self.plant = plant
        table.stale_after_s = plant.stale_after_s
        table.clock_tolerance_s = plant.clock_tolerance_s
        self.query_one(FloorMap).set_bounds(plant.bounds)


class MainScreen(Screen[None]):
    """Badges on top, tabs in the middle, the log and the footer at the bottom."""

    CSS_PATH = Path(__file__).with_name("main.tcss")
    # Textual's Screen types these as plain attributes, so no ClassVar here.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "edit_device_map", "Device map"),
        Binding("c", "calibrate", "Calibrate", show=False),
        Binding("t", "focus_table", "AMR table", show=False),
        Binding("plus,equals_sign", "zoom(1)", "Zoom in", show=False),
        Binding("minus", "zoom(-1)", "Zoom out", show=False),
        Binding("0", "zoom(0)", "Whole floor", show=False),
        Binding("right_square_bracket", "next_tab", "Next tab"),
        Binding("left_square_bracket", "previous_tab", "Prev tab", show=False),
    ]

    def __init__(self, engine: ConsoleEngine, clock: UiClock) -> None:
        super().__init__()
        self.engine = engine
        self.clock = clock
        self.plant_tabs = {f"tab-plant-{i}": p for i, p in enumerate(engine.plants)}
        self._registry_source: RegistryView | None = None

    def compose(self) -> ComposeResult:
        """The whole layout."""
        yield HealthBadges(id="badges")
        with TabbedContent(id="tabs"):
            for index, (tab_id, plant) in enumerate(self.plant_tabs.items()):
                # Text, not markup: an attached console shows a service's plant names.
                with TabPane(Content(safe_text(plant.name, 80)), id=tab_id):
                    yield PlantPane(plant, index=index)
            with TabPane("twinzo", id="tab-twinzo"):
                yield AuthPanel(id="auth")
            with TabPane("registry", id="tab-registry"):
                yield RegistryPanel(
                    lambda: self.engine.twins,
                    read_only=lambda: self.engine.read_only,
                    clock=self._utc_now,
                    twin_view=lambda twin: TwinScreen(self.engine, twin, self.clock),
                )
        yield LogPanel([p.name for p in self.engine.plants], clock=self.clock, id="log")
        yield Footer()

    @property
    def active_tab(self) -> str:
        """The id of the visible tab."""
        return self.query_one(TabbedContent).active

    @property
    def active_plant(self) -> PlantConfig | None:
        """The plant of the visible tab, if it is a plant tab."""
        plant = self.plant_tabs.get(self.active_tab)
        if plant is None:
            return None
        # As it runs now: a config reload may have changed its bounds since start-up.
        return next((p for p in self.engine.plants if p.name == plant.name), plant)

    def refresh_view(self, health: Mapping[str, StoreHealth], events: Sequence[Event]) -> None:
        """Apply this tick's events and redraw what is visible (call inside `batch_update`)."""
        mono, wall = self.clock.monotonic(), self.clock.wall()
        engine = self.engine
        link = engine.link
        infos = badge_infos(
            engine.state, health, engine.config, wall_now=wall, mono_now=mono, link=link
        )
        # Attached and the link is lost: the last picture stays, greyed (main.tcss).
        self.set_class(link is not None and link.state == "down", "-link-down")
        self.query_one(HealthBadges).show(infos, width=self.size.width)
        lines = [e for e in events if isinstance(e, LogLine)]
        if lines:
            self.query_one(LogPanel).add(lines)
        registry = self.query_one(RegistryPanel)
        for event in events:
            if isinstance(event, TwinUpdated | TwinDeleted):
                registry.apply_event(event)
        twins = engine.twins
        if twins is not self._registry_source:
            # The registry started (or restarted): read every twin once, then events.
            self._registry_source = twins
            registry.request_reload()
        tab = self.active_tab
        if tab in self.plant_tabs:
            self.query_one(f"#{tab} PlantPane", PlantPane).refresh_from(engine, mono)
        elif tab == "tab-twinzo":
            self.query_one(AuthPanel).refresh_from(engine.state, wall)

    def _utc_now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.wall(), tz=dt.UTC)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:  # noqa: ARG002
        """`m` and `c` only apply on a plant tab."""
        if action in {"edit_device_map", "calibrate", "zoom", "focus_table"}:
            return self.is_mounted and self.active_plant is not None
        return True

    def on_tabbed_content_tab_activated(self, _: TabbedContent.TabActivated) -> None:
        """Show the new tab's state at once, not at the next tick."""
        self.refresh_bindings()
        self.app.call_later(getattr(self.app, "refresh_now", lambda: None))

    def _switch(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        ids = [pane.id for pane in tabs.query(TabPane) if pane.id]
        tabs.active = ids[(ids.index(tabs.active) + step) % len(ids)]

    def action_next_tab(self) -> None:
        """Show the next tab."""
        self._switch(1)

    def action_previous_tab(self) -> None:
        """Show the previous tab."""
        self._switch(-1)

    def action_focus_table(self) -> None:
        """Focus the visible plant's AMR table (its cursor robot is highlighted on the map)."""
        if self.active_plant is not None:
            self.query_one(f"#{self.active_tab} AmrTable", AmrTable).focus()

    def action_zoom(self, step: int) -> None:
        """Zoom the visible plant's floor map (around the table's cursor robot when focused)."""
        if self.active_plant is None:
            return
        self.query_one(f"#{self.active_tab} FloorMap", FloorMap).set_zoom(step)

    def action_edit_device_map(self) -> None:
        """Open the device-map editor of the visible plant."""
        plant = self.active_plant
        if plant is None:
            return
        if self.engine.read_only is not None:
            self.notify(
                f"device map editing is disabled: {self.engine.read_only}",
                severity="warning",
                markup=False,
            )
            return
        device_map = self.engine.device_map(plant.name)
        if device_map is None:
            self.notify(
                f"{plant.name}: the bridge is not running yet.", severity="warning", markup=False
            )
            return
        state = self.engine.state.plants.get(plant.name)
        suggestions = [vid for vid, _ in state.unknown.most_common()] if state else []
        engine, name = self.engine, plant.name

        async def save(mapping: dict[str, str], base: dict[str, str]) -> dict[str, str]:
            return await engine.save_device_map(name, mapping, base)

        self.app.push_screen(DeviceMapEditor(name, device_map, suggestions, save))

    def action_calibrate(self) -> None:
        """Open the calibration workbench of the visible plant."""
        plant = self.active_plant
        if plant is None:
            return
        self.app.push_screen(CalibrationScreen(self.engine, plant))
