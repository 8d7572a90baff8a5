"""Store badges tell the truth about the spool: depth and oldest age; amber while
draining, red while failing with records waiting or when the spool cannot be written."""

from __future__ import annotations

from dtp_console.config.model import ConsoleConfig
from dtp_console.events import StoreHealth
from dtp_console.state import EngineState
from dtp_console.ui.widgets.badges import BadgeInfo, badge_infos

NOW = 1_800_000_000.0


def _badge(health: StoreHealth) -> BadgeInfo:
    config = ConsoleConfig.model_validate({"plants": []})
    infos = badge_infos(EngineState(), {health.name: health}, config, wall_now=NOW, mono_now=0)
    [badge] = [b for b in infos if b.key == f"store:{health.name}"]
    return badge


def test_healthy_and_empty_is_green() -> None:
    badge = _badge(StoreHealth("postgres", "observations", True, 2.0, NOW - 1))
    assert badge.level == "ok"
    assert "spool" not in badge.detail


def test_draining_is_amber_with_depth_and_age() -> None:
    health = StoreHealth(
        "postgres", "observations", True, 2.0, NOW - 1, spool_pending=51_010, spool_oldest_s=125
    )
    badge = _badge(health)
    assert badge.level == "warn"
    assert "spool 51010/2m" in badge.detail


def test_failing_with_records_waiting_is_red_at_once() -> None:
    health = StoreHealth(
        "postgres", "observations", False, None, NOW - 5, "connection refused", 10, 4.0
    )
    badge = _badge(health)
    assert badge.level == "fail"  # no grace while records wait
    assert "spool 10/4s" in badge.detail
    assert badge.error == "connection refused"


def test_a_spool_that_cannot_be_written_is_red_and_says_why() -> None:
    health = StoreHealth(
        "sqlite",
        "observations",
        True,
        1.0,
        NOW,
        spool_pending=3,
        spool_error="spool var/spool/sqlite/observations.sqlite3: database or disk is full",
    )
    badge = _badge(health)
    assert badge.level == "fail"
    assert badge.error is not None and "disk is full" in badge.error
