"""The floor map on its own: labels that tell robots apart, crowding, the selected robot."""

from __future__ import annotations

from textual.app import ComposeResult

from dtp_console.config.model import Bounds
from dtp_console.state import DeviceState, PlantState
from dtp_console.ui.display import map_labels
from dtp_console.ui.palette import PaletteApp
from dtp_console.ui.widgets.floor_map import FloorMap

BOUNDS = Bounds(x_min=0, x_max=100_000, y_min=0, y_max=50_000)


class MapApp(PaletteApp[None]):
    def compose(self) -> ComposeResult:
        yield FloorMap(BOUNDS, id="map")


def plant(*robots: tuple[str, str, float, float]) -> PlantState:
    state = PlantState(name="P")
    for vendor_id, login, x, y in robots:
        state.devices[vendor_id] = DeviceState(
            vendor_id=vendor_id, login=login, x=x, y=y, last_message_at=100.0
        )
    return state


def screen_text(floor: FloorMap) -> list[str]:
    return [floor.render_line(y).text for y in range(floor.size.height)]


def test_map_labels_tell_robots_apart() -> None:
    assert map_labels(["tugger-05-old", "tugger-06-old"]) == {
        "tugger-05-old": "t05",
        "tugger-06-old": "t06",
    }
    # The first digit run is the same for all: the last one is used.
    labels = map_labels([f"tugger-0-{n:03d}" for n in range(1, 101)])
    assert labels["tugger-0-007"] == "t007"
    assert len(set(labels.values())) == 100
    assert map_labels(["agv-left", "agv-right"]) == {"agv-left": "v-left", "agv-right": "-right"}
    assert map_labels(["line-a-amr-01", "line-b-amr-01"]) == {
        "line-a-amr-01": "line-a-amr-01",
        "line-b-amr-01": "line-b-amr-01",
    }


async def test_crowded_labels_give_way_instead_of_garbling_markers() -> None:
    app = MapApp()
    async with app.run_test(size=(60, 20)) as pilot:
        floor = app.query_one(FloorMap)
        # 1.15 braille dots per metre here: these sit in cells 26, 28 and 30, one
        # free cell apart, too close for a label between them.
        state = plant(
            ("a", "tugger-1", 45_217, 25_000),
            ("b", "tugger-2", 48_696, 25_000),
            ("c", "tugger-3", 52_174, 25_000),
        )
        floor.refresh_from(state, 100.0, 30.0)
        await pilot.pause()
        text = "\n".join(screen_text(floor))
        assert text.count("●") == 3
        # The outer robots label outwards; the middle one has no room and goes without.
        assert "t1● ● ●t3" in text
        assert "t2" not in text


async def test_selected_robot_is_highlighted_with_its_label() -> None:
    app = MapApp()
    async with app.run_test(size=(60, 20)) as pilot:
        floor = app.query_one(FloorMap)
        state = plant(("a", "tugger-1", 50_000, 25_000), ("b", "tugger-2", 53_500, 25_000))
        floor.refresh_from(state, 100.0, 30.0)
        assert floor.refresh_from(state, 100.0, 30.0, selected="b") is True
        await pilot.pause()
        text = "\n".join(screen_text(floor))
        assert "◉ t2 " in text
        assert "t1●" in text  # a's label gives way to the selected one: it goes left
        # Selection unchanged and nobody moved: nothing to redraw.
        assert floor.refresh_from(state, 100.0, 30.0, selected="b") is False


async def test_only_changed_lines_are_marked_dirty() -> None:
    app = MapApp()
    async with app.run_test(size=(60, 20)) as pilot:
        floor = app.query_one(FloorMap)
        state = plant(("a", "tugger-1", 10_000, 40_000), ("b", "tugger-2", 90_000, 10_000))
        floor.refresh_from(state, 100.0, 30.0)
        await pilot.pause()
        floor._dirty_regions.clear()
        state.devices["a"].x = 20_000  # only robot a moves
        assert floor.refresh_from(state, 100.0, 30.0) is True
        regions = list(floor._dirty_regions)
        assert regions, "the moved robot's line is repainted"
        # Single lines only: a whole-widget repaint (e.g. setting the border title
        # each tick) would show up here as one region the height of the map.
        assert all(region.height == 1 for region in regions), regions
        assert len({region.y for region in regions}) <= 2


async def test_zoom_follows_the_selected_robot_and_hides_the_rest() -> None:
    app = MapApp()
    async with app.run_test(size=(60, 20)) as pilot:
        floor = app.query_one(FloorMap)
        state = plant(("a", "tugger-1", 10_000, 10_000), ("b", "tugger-2", 90_000, 40_000))
        floor.refresh_from(state, 100.0, 30.0, selected="a")
        assert floor.set_zoom(1) == 2
        assert floor.set_zoom(1) == 4
        await pilot.pause()
        assert floor.border_title == "floor 100 × 50 m · 4× t1"
        text = "\n".join(screen_text(floor))
        assert "◉ t1 " in text
        assert "t2" not in text and "●" not in text  # b is off the zoomed view
        # Selection moves on (the table lost focus): the view stays on the last robot.
        floor.refresh_from(state, 100.0, 30.0, selected=None)
        assert floor.border_title.endswith("4× t1")
        assert floor.set_zoom(1) == 8
        assert floor.set_zoom(1) == 8  # the most there is
        assert floor.set_zoom(0) == 1
        await pilot.pause()
        text = "\n".join(screen_text(floor))
        assert text.count("●") == 2
        assert floor.border_title == "floor 100 × 50 m"


async def test_a_robot_just_off_the_floor_sits_on_its_edge_unless_zoomed() -> None:
    app = MapApp()
    async with app.run_test(size=(60, 20)) as pilot:
        floor = app.query_one(FloorMap)
        state = plant(("a", "tugger-1", 103_000, 25_000))  # bounds end at 100,000
        floor.refresh_from(state, 100.0, 30.0)
        await pilot.pause()
        assert "●" in "\n".join(screen_text(floor))


async def test_the_zoom_title_names_a_robot_that_got_its_position_after_the_zoom() -> None:
    app = MapApp()
    async with app.run_test(size=(60, 20)) as pilot:
        floor = app.query_one(FloorMap)
        state = plant()
        state.devices["a"] = DeviceState(vendor_id="a", login="tugger-1")  # no position yet
        floor.refresh_from(state, 100.0, 30.0, selected="a")
        floor.set_zoom(1)
        assert floor.border_title == "floor 100 × 50 m · 2× centre"
        state.devices["a"].x, state.devices["a"].y = 10_000.0, 10_000.0
        floor.refresh_from(state, 100.0, 30.0, selected="a")
        await pilot.pause()
        assert floor.border_title == "floor 100 × 50 m · 2× t1"
