"""Store health has one channel: the badges read the engine's latest check, not a UI copy.

The UI's subscription is bounded and drops its oldest events when it falls
behind (a log storm during an outage is exactly when). A copy rebuilt from
`StoreHealth` events then kept a failed store green until its next check.
"""

from __future__ import annotations

from pathlib import Path

from dtp_console.events import LogLine, StoreHealth
from dtp_console.ui.widgets.badges import Badge
from tests.ui.harness import make_app, settle


async def test_a_store_failure_shows_even_when_the_ui_dropped_its_event(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        engine = await settle(pilot, rounds=1)
        badges = {b.info.key: b.info for b in app.main.query(Badge)}
        assert badges["store:sqlite"].level == "ok"
        wall = engine.clock.wall()
        engine.store_checked(
            StoreHealth(name="sqlite", role="observations,events,relationships", ok=False,
                        latency_ms=None, last_success=wall - 120, error="disk I/O error",
                        spool_pending=40, ts=wall)
        )  # fmt: skip
        for i in range(20_000):  # the UI's subscription holds 20,000: the check is dropped
            engine.bus.publish(LogLine(level="WARN", text=f"storm {i}"))
        app.refresh_now()
        await pilot.pause()
        badges = {b.info.key: b.info for b in app.main.query(Badge)}
        assert badges["store:sqlite"].level == "fail"
        assert badges["store:influx"].level == "warn", "the other stores keep their last check"
