"""The attached console fed by a hostile service: whatever it sends shows as text, or not at all.

The engine is a `FrozenRemote` (tests/ui/attached.py) into which each test pushes the
frames a hostile service could send; the UI must neither crash, hang nor pass a
control sequence or markup of the service's on to the operator's terminal.
Found by the attach attack (tests/security/test_attach_attack.py covers the wire).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from textual.app import ComposeResult
from textual.widgets import TabbedContent
from textual.widgets._tabs import Tab

import tests.ui.attached as attached
from devtools.seeded import CONFIG
from dtp_console.config.model import Bounds
from dtp_console.state import DeviceState, PlantState
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.palette import PaletteApp
from dtp_console.ui.widgets.floor_map import FloorMap
from dtp_console.ui.widgets.log_panel import LogPanel
from tests.ui.attached import FrozenRemote, make_attached_app, snapshot_frame

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


async def _ready(app: DtpConsoleApp) -> FrozenRemote:
    engine = app.engine
    assert isinstance(engine, FrozenRemote)
    await asyncio.wait_for(engine.ready.wait(), 30)
    return engine


@pytest.mark.parametrize("name", ["[/bogus]", "[@click=app.quit]Plant[/]", "esc\x1b[2J\u202eX"])
async def test_a_plant_name_with_markup_is_a_tab_title_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Found: the plant tabs took the name as Textual markup: `[/bogus]` crashed the
    # attached console at mount (MarkupError) and `[@click=…]` made a clickable action.
    hostile = CONFIG.replace("name: Old Plant", f"name: {name!r}")
    monkeypatch.setattr(attached, "write_config", lambda folder: _write(folder, hostile))
    app = make_attached_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await _ready(app)
        await pilot.pause()
        titles = [str(tab.label) for tab in app.main.query_one(TabbedContent).query(Tab)]
        shown = next(t for t in titles if "bogus" in t or "Plant" in t or "esc" in t)
        assert not _CONTROL.search(shown), titles
        assert "[" in shown or "esc" in shown  # the brackets are text, not markup


def _write(folder: Path, text: str) -> Path:
    path = folder / "console.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_log_text_of_the_service_reaches_the_panel_as_text(tmp_path: Path) -> None:
    # Found: a `log` event's text went into the log panel as sent; the panel draws
    # segments as they are, so an escape sequence of the service reached the terminal.
    app = make_attached_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        engine = await _ready(app)
        evil = "pwn\x1b]0;owned\x07\x1b[2J\u202egnp" + "x" * 100_000
        engine.push("log", {"ts": 0.0, "level": "FAIL", "text": evil, "plant": "\x1b[5mP"})
        app.refresh_now()
        await pilot.pause()
        lines = app.main.query_one(LogPanel).shown_text
        hostile = [line for line in lines if "pwn" in line]
        assert hostile, lines
        assert not any(_CONTROL.search(line) for line in hostile)
        assert all(len(line) < 5_000 for line in hostile)


@pytest.mark.parametrize("value", [1e308, -1e308, 1.7e308])
async def test_a_position_at_the_end_of_the_floats_neither_crashes_nor_hangs(
    tmp_path: Path, value: float
) -> None:
    app = make_attached_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        engine = await _ready(app)
        plant = next(iter(engine.state.plants))
        vendor_id = next(iter(engine.state.plants[plant].devices))
        # Found: the floor map walked a trail segment to the far point dot by dot (the
        # UI hung), and without floor bounds the extent became inf - inf (a crash).
        jump = {"start": [0.0, 0.0], "end": [value, value], "speed_mm_s": 1e9, "at": 0.0}
        device: dict[str, Any] = {"x": value, "y": -value, "vendor_x": value, "vendor_y": value}
        device["last_jump"] = {**jump, "dropped": True}
        delta = {
            "mono": engine.clock.monotonic(),
            "plants": {
                plant: {
                    "devices": {
                        vendor_id: device,
                        "new-robot": {**device, "login": "far-away", "messages": -5},
                    }
                }
            },
        }
        engine.push("delta", delta)
        async with asyncio.timeout(20):
            app.refresh_now()
            await pilot.pause()
            await pilot.press("f")  # the floor map, if a key shows it
            await pilot.pause()
        assert app.is_running


class _UnboundedMap(PaletteApp[None]):
    def compose(self) -> ComposeResult:
        yield FloorMap(None, id="map")


@pytest.mark.parametrize("bounds", [None, Bounds(x_min=0, x_max=100_000, y_min=0, y_max=50_000)])
async def test_the_floor_map_skips_a_robot_at_1e308_with_or_without_bounds(
    bounds: Bounds | None,
) -> None:
    app = _UnboundedMap()
    async with app.run_test(size=(60, 20)) as pilot:
        floor = app.query_one(FloorMap)
        floor.bounds = bounds
        state = PlantState(name="P")
        for vendor_id, x in (("near", 10_000.0), ("far", 1e308), ("back", -1e308)):
            state.devices[vendor_id] = DeviceState(
                vendor_id=vendor_id, login=f"t-{vendor_id}", x=x, y=x, last_message_at=100.0
            )
        async with asyncio.timeout(10):
            floor.refresh_from(state, 100.0, 30.0)
            await pilot.pause()
        text = "".join(floor.render_line(y).text for y in range(floor.size.height))
        assert text.count("●") == 1  # the near robot; the far ones are on no floor


_EVIL = "E\x1b[2J[/x][@click=app.quit]\u202eZ"
#: Fields whose value is one of a few words (the shapes refuse anything else).
_ENUMS = frozenset({"ghost", "ha_role", "status", "mqtt"})


def _poison(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _poison(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v) for v in value]
    if isinstance(value, str) and key not in _ENUMS:
        return value + _EVIL
    return value


async def test_every_text_a_hostile_service_sends_is_drawn_as_text(tmp_path: Path) -> None:
    # Found: a `store` event's name went onto the health badge as sent (the local
    # console names its stores itself): an escape sequence reached the terminal.
    app = make_attached_app(tmp_path)
    async with app.run_test(size=(200, 50)) as pilot:
        engine = await _ready(app)
        frame = _poison(snapshot_frame(engine.service, engine.clock))
        for plant in frame["plants"].values():
            devices = plant.get("devices", {})
            plant["devices"] = {k + _EVIL: v for k, v in devices.items()}
        frame["auth"] = {k + _EVIL: v for k, v in frame["auth"].items()}
        engine.push("snapshot", frame)
        store = {"name": "postgres" + _EVIL, "role": _EVIL, "ok": False, "error": _EVIL}
        engine.push("store", {**store, "spool_error": _EVIL})
        engine.push("log", {"ts": 0.0, "level": "WARN", "text": _EVIL, "plant": _EVIL})
        for tab in ("tab-plant-0", "tab-plant-1", "tab-twinzo"):
            app.main.query_one(TabbedContent).active = tab
            app.refresh_now()
            await pilot.pause()
            screen = app.export_screenshot()
            assert "E" + _EVIL[1:] not in screen  # (the raw sequence, not its escape)
            assert not _CONTROL.search(screen), tab
