"""A crashed worker is logged (with URLs masked), restarted with backoff, and stops on `stop`."""

from __future__ import annotations

import asyncio

from dtp_console.config.model import ConsoleConfig
from dtp_console.events import LogLine
from dtp_console.runtime import Engine


async def test_a_crash_is_logged_masked_and_the_worker_restarted() -> None:
    engine = Engine(ConsoleConfig())
    lines = engine.bus.subscribe()
    stop = asyncio.Event()
    calls = 0

    async def work(_stop: asyncio.Event) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("cannot reach bolt://neo4j:Hunter2-pw@db.example.com:7687")
        stop.set()

    await asyncio.wait_for(engine._supervise("graph", work, stop), 10)
    assert calls == 2
    text = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    crash = [t for t in text if "graph crashed" in t]
    assert crash, text
    assert "Hunter2-pw" not in crash[0]
    assert "bolt://***@db.example.com:7687" in crash[0]
    assert "restarting in" in crash[0]
