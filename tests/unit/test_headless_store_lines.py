"""Headless: a store's failure and recovery are logged once (by the stores service), not twice."""

from __future__ import annotations

import io

from dtp_console.events import Bus, StoreHealth
from dtp_console.headless import HeadlessRenderer
from dtp_console.state import EngineState


def _renderer(out: io.StringIO) -> tuple[Bus, HeadlessRenderer]:
    bus = Bus()
    return bus, HeadlessRenderer(bus, EngineState(), out=out)


def test_a_store_is_said_ok_once_and_its_failures_are_left_to_the_stores_service() -> None:
    out = io.StringIO()
    bus, renderer = _renderer(out)
    for ok, error in [(True, None), (True, None), (False, "down"), (False, "down"), (True, None)]:
        bus.publish(StoreHealth("sqlite", "timeseries", ok=ok, latency_ms=1.0, error=error))
    renderer.drain()
    lines = [line for line in out.getvalue().splitlines() if "sqlite" in line]
    assert len(lines) == 1, lines
    assert "store sqlite (timeseries): ok 1.0 ms" in lines[0]
