"""Building the console App on a seeded engine for tests, snapshots, screenshots and benches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import TabbedContent

from devtools.seeded import SeededEngine, write_config
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.display import FixedClock
from dtp_console.ui.widgets.registry_panel import RegistryPanel

__all__ = ["SCREENS", "TWIN_SCREENS", "Shot", "make_app", "prepare", "settle"]


@dataclass(frozen=True, slots=True)
class Shot:
    """One picture of the console: terminal size, the tab shown, keys pressed after."""

    size: tuple[int, int]
    tab: str | None = None
    keys: tuple[str, ...] = ()
    twins: bool = False
    """Seed the registry's demo twins and the platform worker's rings (the twin view)."""
    focus: str | None = None
    """Focus the widget this selector names before pressing the keys."""


#: The screens that snapshots and `scripts/screenshots.py` take, by name.
SCREENS: dict[str, Shot] = {
    "main-200x60": Shot((200, 60)),
    "plant-map-120x40": Shot((120, 40), "tab-plant-1"),
    "twinzo-120x40": Shot((120, 40), "tab-twinzo"),
    "registry-120x40": Shot((120, 40), "tab-registry"),
    "main-80x24": Shot((80, 24)),
    "help-120x40": Shot((120, 40), keys=("question_mark",)),
    "device-map-120x40": Shot((120, 40), keys=("m",)),
    # The table focused, its second robot selected and followed by a 2× map.
    "plant-zoom-120x40": Shot((120, 40), keys=("t", "down", "plus")),
}
#: The twin view (the registry's first twin, `dt:EnergyHvac_001`, then down to the lift).
TWIN_SCREENS: dict[str, Shot] = {
    "twin-lift-120x40": Shot(
        (120, 40), "tab-registry", ("down", "enter"), twins=True, focus="#registry-table"
    ),
    "twin-lift-80x24": Shot(
        (80, 24), "tab-registry", ("down", "enter"), twins=True, focus="#registry-table"
    ),
}


def make_app(
    folder: Path, *, steps: int = 40, config: str | None = None, twins: bool = False
) -> DtpConsoleApp:
    """A console App on a `SeededEngine`, redrawn only when told (`refresh_s=None`)."""
    clock = FixedClock()
    path = write_config(folder) if config is None else write_config(folder, config)
    engine = SeededEngine(path, clock=clock, steps=steps, twins=twins)
    return DtpConsoleApp(engine, clock=clock, refresh_s=None)


async def settle(pilot: Pilot[int], *, rounds: int = 12) -> SeededEngine:
    """Wait for the seeded state, then step and redraw `rounds` times (trails, rates)."""
    app = pilot.app
    assert isinstance(app, DtpConsoleApp)
    engine = app.engine
    assert isinstance(engine, SeededEngine)
    await engine.ready.wait()
    app.refresh_now()
    for _ in range(rounds):
        engine.advance(2, 0.5)
        app.refresh_now()
    await pilot.pause()
    return engine


async def prepare(pilot: Pilot[int], shot: Shot) -> None:
    """Settle the seeded engine, then show `shot`'s tab and press its keys."""
    await settle(pilot)
    app = pilot.app
    assert isinstance(app, DtpConsoleApp)
    if shot.tab is not None:
        app.main.query_one(TabbedContent).active = shot.tab
        await pilot.pause()
        app.refresh_now()
    if shot.twins:  # the registry panel reads its twins in a worker
        panel = app.main.query_one(RegistryPanel)
        for _ in range(100):
            if panel.shown_ids:
                break
            await pilot.pause(0.02)
    if shot.focus is not None:
        app.screen.query_one(shot.focus).focus()
        await pilot.pause()
    for key in shot.keys:
        await pilot.press(key)
    app.refresh_now()  # what the keys changed, drawn now rather than at the next tick
    await pilot.pause()
