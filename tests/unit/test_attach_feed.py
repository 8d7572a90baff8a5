"""The attach state feed without HTTP: change detection, reuse, quiet ticks, cut-off."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from dtp_console.api.tokens import Principal
from dtp_console.attach.feed import StateFeed
from dtp_console.config.model import Affine, ConsoleConfig, PlantConfig
from dtp_console.events import Bus, LogLine, StoreHealth, Subscription, TwinUpdated
from dtp_console.registry.model import TwinRecord
from dtp_console.state import DeviceState, EngineState, PlantState, RobotFacts

VIEWER = Principal("viewer", "viewer", frozenset({"*"}))


class _Bridge:
    def __init__(self) -> None:
        self.affine = Affine()
        self.device_map = {"amr-1": "login-1"}


class _Engine:
    """The parts of `ServedEngine` the feed reads (state, plants, maps, bus)."""

    def __init__(self) -> None:
        self.config = ConsoleConfig.model_validate(
            {
                "plants": [
                    {
                        "name": "Hall",
                        "format": "ati_sherpa",
                        "broker": {"host": "127.0.0.1"},
                        "device_map": {"amr-1": "login-1"},
                        "twinzo": {"sector_id": 1},
                    }
                ]
            }
        )
        self.state = EngineState()
        plant = self.state.plants["Hall"] = PlantState("Hall")
        plant.devices["amr-1"] = DeviceState("amr-1", "login-1", robot=RobotFacts())
        self.bus = Bus()
        self.bridges = {"Hall": _Bridge()}
        self.config_path: Path | None = None
        self.store_health: dict[str, StoreHealth] = {}

    @property
    def plants(self) -> Sequence[PlantConfig]:
        return self.config.plants

    def subscribe(self, *, maxsize: int) -> Subscription:
        return self.bus.subscribe(maxsize=maxsize)

    def device_map(self, plant_name: str) -> dict[str, str] | None:
        bridge = self.bridges.get(plant_name)
        return None if bridge is None else dict(bridge.device_map)


def _feed(engine: _Engine, queue: int = 64) -> StateFeed:
    served: Any = engine  # the feed reads only what `_Engine` has
    # A tick far in the future: the test drives `tick()` itself.
    return StateFeed(lambda: served, queue_size=queue, max_clients=4, tick_s=3600)


def _frames(queue: asyncio.Queue[Any]) -> list[tuple[str, Any]]:
    out = []
    while not queue.empty():
        item = queue.get_nowait()
        head, _, data = item.frame.partition(b"\ndata: ")
        out.append((head.removeprefix(b"event: ").decode(), orjson.loads(data)))
    return out


async def test_a_quiet_tick_sends_nothing_and_reuses_the_encoding() -> None:
    engine = _Engine()
    feed = _feed(engine)
    client = feed.attach(VIEWER, ["Hall"], lambda: None)
    assert client is not None
    kinds = [kind for kind, _ in _frames(client.stream.queue)]
    assert kinds == ["snapshot", "maps"]
    feed.tick()
    assert _frames(client.stream.queue) == []
    assert feed.stats.devices_reused >= 1
    await feed.close()


async def test_a_fresh_client_gets_every_stores_latest_check_after_its_snapshot() -> None:
    engine = _Engine()
    engine.store_health["pg"] = StoreHealth("pg", "events", ok=False, error="down [red]x")
    feed = _feed(engine)
    client = feed.attach(VIEWER, ["Hall"], lambda: None)
    assert client is not None
    frames = _frames(client.stream.queue)
    assert [kind for kind, _ in frames] == ["snapshot", "maps", "store"]
    assert frames[2][1]["name"] == "pg" and frames[2][1]["ok"] is False
    assert frames[2][1]["error"] == "down [red]x"
    await feed.close()


async def test_an_in_place_change_of_robot_facts_is_in_the_next_delta() -> None:
    engine = _Engine()
    feed = _feed(engine)
    client = feed.attach(VIEWER, ["Hall"], lambda: None)
    assert client is not None
    _frames(client.stream.queue)
    robot = engine.state.plants["Hall"].devices["amr-1"].robot
    assert robot is not None
    robot.connection = "OFFLINE"  # no counter moved
    feed.tick()
    [(kind, delta)] = _frames(client.stream.queue)
    assert kind == "delta"
    device = delta["plants"]["Hall"]["devices"]["amr-1"]
    assert device == {"robot": {**device["robot"], "connection": "OFFLINE"}}
    await feed.close()


async def test_a_changed_map_is_a_maps_event_and_log_lines_are_forwarded() -> None:
    engine = _Engine()
    feed = _feed(engine)
    client = feed.attach(VIEWER, [], lambda: None)
    assert client is not None
    _frames(client.stream.queue)
    engine.bridges["Hall"].device_map = {"amr-1": "login-9"}
    feed.tick()
    frames = _frames(client.stream.queue)
    maps = [data for kind, data in frames if kind == "maps"]
    assert maps[0]["device_maps"]["Hall"]["map"] == {"amr-1": "login-9"}
    engine.bus.publish(LogLine("WARN", "x\x1b[2J [red]y[/]", plant="Hall"))
    for _ in range(3):
        await asyncio.sleep(0)  # the event pump runs
    [(kind, line)] = _frames(client.stream.queue)
    assert kind == "log"
    assert (line["level"], line["plant"]) == ("WARN", "Hall")
    assert "\x1b" not in line["text"] and "[red]" in line["text"]  # text, escaped once
    await feed.close()


async def test_a_full_queue_cuts_the_client_off_and_counts_it() -> None:
    engine = _Engine()
    feed = _feed(engine, queue=2)
    aborted: list[bool] = []
    slow = feed.attach(VIEWER, ["Hall"], lambda: aborted.append(True))
    other = feed.attach(VIEWER, [], lambda: None)
    assert slow is not None and other is not None
    device = engine.state.plants["Hall"].devices["amr-1"]
    device.messages += 1
    feed.tick()  # snapshot + maps + this delta > 2
    assert aborted == [True] and slow.stream.cut
    assert feed.stats.cut_off == 1 and feed.stats.clients == 1
    device.messages += 1
    _frames(other.stream.queue)
    engine.state.plants["Hall"].connects += 1
    feed.tick()
    assert [kind for kind, _ in _frames(other.stream.queue)] == ["delta"]
    await feed.close()


async def test_a_restricted_token_cannot_learn_which_dependencies_exist() -> None:
    engine = _Engine()
    feed = _feed(engine)
    mine = feed.attach(Principal("a", "viewer", frozenset({"plant-a"})), [], lambda: None)
    admin = feed.attach(Principal("all", "admin", frozenset({"*"})), [], lambda: None)
    assert mine is not None and admin is not None
    for client in (mine, admin):
        _frames(client.stream.queue)
    now = dt.datetime.now(dt.UTC)
    twin = TwinRecord(
        id="dt:Fleet",
        name="fleet",
        tenant="plant-a",
        status="active",
        dependencies={"static": ["dt:Secret_b", "dt:Nowhere"]},
        unknown_dependencies=["dt:Nowhere"],  # dt:Secret_b exists, in plant-b
        created_at=now,
        updated_at=now,
    )
    engine.bus.publish(TwinUpdated(twin=twin))
    for _ in range(3):
        await asyncio.sleep(0)
    [(_, seen)] = _frames(mine.stream.queue)
    [(_, true)] = _frames(admin.stream.queue)
    assert seen["twin"]["unknown_dependencies"] == ["dt:Secret_b", "dt:Nowhere"]
    assert true["twin"]["unknown_dependencies"] == ["dt:Nowhere"]
    await feed.close()


async def test_clients_in_step_share_one_delta_and_a_newcomer_diffs_its_own() -> None:
    engine = _Engine()
    feed = _feed(engine)
    device = engine.state.plants["Hall"].devices["amr-1"]
    first = feed.attach(VIEWER, ["Hall"], lambda: None)
    second = feed.attach(VIEWER, ["Hall"], lambda: None)
    summaries = feed.attach(VIEWER, [], lambda: None)  # other plants followed: never shares
    assert first is not None and second is not None and summaries is not None
    for client in (first, second, summaries):
        _frames(client.stream.queue)
    device.messages, device.x = 1, 10.0
    feed.tick()  # each diffs its own (only snapshots before)
    assert feed.stats.deltas_shared == 0
    assert _frames(first.stream.queue) == _frames(second.stream.queue)
    late = feed.attach(VIEWER, ["Hall"], lambda: None)
    assert late is not None
    _frames(late.stream.queue)
    device.messages, device.x = 2, 20.0
    feed.tick()
    assert feed.stats.deltas_shared == 1  # `second` took `first`'s; `late` diffed its own
    got = [_frames(c.stream.queue) for c in (first, second, late)]
    assert got[0] == got[1] == got[2]
    [(kind, delta)] = got[0]
    assert kind == "delta"
    assert delta["plants"]["Hall"]["devices"]["amr-1"] == {"messages": 2, "x": 20.0}
    for _, body in _frames(summaries.stream.queue):
        assert "devices" not in (body.get("plants") or {}).get("Hall", {})
    device.messages = 3
    feed.tick()  # all three in step now
    assert feed.stats.deltas_shared == 3
    got = [_frames(c.stream.queue) for c in (first, second, late)]
    assert got[0] == got[1] == got[2]
    assert got[0][0][1]["plants"]["Hall"]["devices"]["amr-1"] == {"messages": 3}
    feed.tick()  # nothing changed: nothing sent to anyone
    assert [_frames(c.stream.queue) for c in (first, second, late)] == [[], [], []]
    await feed.close()
