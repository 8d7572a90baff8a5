"""High availability without a server: the `ha:` section, the lock key, the poster's gate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from dtp_console.bridge.outbox import Location, Outbox
from dtp_console.bridge.poster import Poster
from dtp_console.cli import main
from dtp_console.config import ConfigError, ConsoleConfig, load_config
from dtp_console.config.ha import HaConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.ha import PlantLock, default_identity, lock_key
from dtp_console.state import PlantState
from dtp_console.twinzo.protocol import PostResult
from dtp_console.twinzo.wire import LocationBody

SECRET = "test-ha-secret-pw"
BASE = """\
twinzo: {client: demo, password: change-me}
plants:
  - name: Old Plant
    format: ati_sherpa
    twinzo: {sector_id: 2}
"""


def _write(tmp_path: Path, ha: str) -> Path:
    path = tmp_path / "console.yaml"
    path.write_text(BASE + ha, encoding="utf-8")
    return path


def test_ha_is_off_by_default_and_needs_no_dsn() -> None:
    config = ConsoleConfig.model_validate({})
    assert config.ha.enabled is False
    assert config.ha.dsn is None
    assert config.ha.poll_s == 1.0


def test_ha_on_without_a_dsn_is_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "ha: {enabled: true}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "ha.dsn" in str(caught.value)
    with pytest.raises(SystemExit) as exited:
        main(["-c", str(path), "config", "show"])
    assert exited.value.code == 2
    assert "ha.dsn" in capsys.readouterr().err


def test_a_bad_dsn_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "ha: {enabled: true, dsn: '${HA_PG_DSN}'}\n")
    bad = f"postgresql://dtp:{SECRET}@db:99999/dtp"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"HA_PG_DSN": bad})
    assert "ha.dsn" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_the_dsn_is_masked_in_config_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "ha: {enabled: true, dsn: '${HA_PG_DSN}'}\n")
    dsn = f"postgresql://dtp:{SECRET}@db.example:5432/dtp"
    config = load_config(path, environ={"HA_PG_DSN": dsn})
    assert config.ha.dsn is not None and config.ha.dsn.get_secret_value() == dsn
    assert SECRET not in repr(config.ha) and SECRET not in str(config.model_dump(mode="json"))


@pytest.mark.parametrize(
    "instance",
    ["", "a" * 64, "héllo", "line\nbreak", "\x1b[31mred", "tab\there"],
)
def test_an_instance_postgres_would_mangle_is_refused(instance: str) -> None:
    with pytest.raises(ValueError, match="application_name"):
        HaConfig(enabled=False, instance=instance)


def test_poll_s_is_bounded() -> None:
    for poll in (0, -1, 0.01, 61, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="poll_s"):
            HaConfig.model_validate({"poll_s": poll})


def test_the_lock_key_is_stable_signed_64_bit_and_shards_plants() -> None:
    key = lock_key("Old Plant", "demo")
    assert key == lock_key("old plant", "demo"), "plant names are case-insensitive"
    assert -(2**63) <= key < 2**63
    assert key != lock_key("New Plant", "demo")
    assert key != lock_key("Old Plant", "other-client")
    # Pinned: two releases of the console must agree on the key of one plant.
    assert key == lock_key("Old Plant", "demo")
    assert lock_key("Hall \u00e4 \U0001f916", "x") != lock_key("Hall a", "x")


def test_the_default_identity_is_host_and_pid_and_fits_application_name() -> None:
    identity = default_identity()
    assert identity.endswith(f":{__import__('os').getpid()}")
    assert len(identity) <= 63
    assert all(0x20 <= ord(c) <= 0x7E for c in identity)


def _lock(state: PlantState) -> PlantLock:
    config = HaConfig(enabled=True, dsn="postgresql://u@127.0.0.1:1/db", poll_s=1.0)
    return PlantLock(config, "Old Plant", "demo", state, OpsLog(Bus()), identity="test-a")


def test_the_gate_is_closed_until_the_lock_is_confirmed_and_closes_by_itself() -> None:
    state = PlantState("Old Plant")
    lock = _lock(state)
    assert state.ha_role == "no_lock" and not lock.may_post()
    lock._set_role("active", "test-a", "holds the plant's lock")
    assert not lock.may_post(), "active without a confirmed check is not enough"
    lock._confirm(time.monotonic())
    assert lock.may_post()
    lock._confirm(time.monotonic() - 1.6)  # the last good check is older than the lease
    assert not lock.may_post(), "a silent connection closes the gate without any check"
    lock._confirm(time.monotonic())
    lock._terminated(object())
    assert not lock.may_post(), "a closed session closes the gate at once"


async def test_a_closed_gate_posts_nothing_and_keeps_the_latest_per_device() -> None:
    state = PlantState("Old Plant")
    outbox = Outbox(state.counters, 0.0)
    gate = {"open": False}
    from tests.reliability.conftest import plant_config

    plant, twinzo = plant_config(1)

    class _NoClient:
        """A `LocalizationClient` that must never be called."""

        async def post_device(
            self,
            login: str,
            password: str,
            locations: Sequence[LocationBody],
            *,
            branch: str | None = None,
        ) -> PostResult:
            raise AssertionError("a standby posted")

        async def post_batch(
            self, branch: str, devices: Mapping[str, Sequence[LocationBody]]
        ) -> dict[str, PostResult]:
            raise AssertionError("a standby posted")

        async def ensure_token(self, login: str, password: str) -> None:
            raise AssertionError("a standby authenticated")

        def forget_tokens(self, logins: Iterable[str]) -> None:
            return None

    poster = Poster(
        plant, twinzo, _NoClient(), outbox, state, OpsLog(Bus()), may_post=lambda: gate["open"]
    )  # fmt: skip
    for i in range(1_000):
        location = Location("tugger-001", "ati_amr_001", i, float(i), 0.0, 0.0, None, False, 0, 0.0)
        outbox.put(location)
    assert poster.flush(time.monotonic()) == 0
    assert len(outbox) == 1, "bounded: one pending location per device, latest wins"
    assert state.counters.outcomes["coalesced"] == 999
    await asyncio.wait_for(poster.drain(5.0), 1.0)  # a standby does not post on its way out
    assert state.counters.outcomes["dropped:shutdown"] == 1


def _plant_with_role(role: str, holder: str | None) -> tuple[ConsoleConfig, object]:
    from dtp_console.state import EngineState

    config = ConsoleConfig.model_validate(
        {"plants": [{"name": "Old Plant", "format": "ati_sherpa", "twinzo": {"sector_id": 2}}]}
    )
    engine = EngineState()
    plant = engine.plants["Old Plant"] = PlantState("Old Plant")
    plant.ha_role, plant.ha_holder = role, holder  # type: ignore[assignment]
    plant.ha_detail = "why [b]not[/b]"
    return config, engine


@pytest.mark.parametrize(
    ("role", "label", "level"),
    [("active", "ACTIVE", "ok"), ("standby", "STANDBY", "off"), ("no_lock", "NO LOCK", "fail")],
)
def test_the_plant_badge_says_the_role(role: str, label: str, level: str) -> None:
    from dtp_console.ui.widgets.badges import badge_infos

    config, engine = _plant_with_role(role, "host-b:42")
    badges = {b.key: b for b in badge_infos(engine, {}, config, wall_now=0, mono_now=0)}  # type: ignore[arg-type]
    badge = badges["ha:Old Plant"]
    assert badge.label == f"Old Plant {label}" and badge.level == level
    assert badge.error is not None and "why [b]not[/b]" in badge.error
    if role != "active":
        assert "host-b:42" in badge.error


def test_no_badge_and_no_stats_suffix_with_ha_off() -> None:
    from dtp_console.headless import stats_line
    from dtp_console.ui.widgets.badges import badge_infos

    config, engine = _plant_with_role("off", None)
    keys = [b.key for b in badge_infos(engine, {}, config, wall_now=0, mono_now=0)]  # type: ignore[arg-type]
    assert not [k for k in keys if k.startswith("ha:")]
    assert " ha " not in stats_line(engine.plants["Old Plant"])  # type: ignore[attr-defined]


def test_the_stats_line_names_the_role_and_the_active() -> None:
    from dtp_console.headless import stats_line

    _, engine = _plant_with_role("standby", "host-a:7")
    line = stats_line(engine.plants["Old Plant"])  # type: ignore[attr-defined]
    assert line.endswith("| ha STANDBY (active: host-a:7)")


class _SlowConnection:
    """Answers `SELECT 1` after `delay` seconds (an asyncpg connection's `fetchval`)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def fetchval(self, _query: str) -> int:
        await asyncio.sleep(self.delay)
        return 1


async def test_a_slow_check_stops_posting_keeps_the_lock_and_resumes() -> None:
    state = PlantState("Old Plant")
    bus = Bus()
    lines = bus.subscribe()
    config = HaConfig(enabled=True, dsn="postgresql://u@127.0.0.1:1/db", poll_s=0.2)
    lock = PlantLock(config, "Old Plant", "demo", state, OpsLog(bus), identity="test-a")
    lock._set_role("active", "test-a", "holds the plant's lock")
    lock._confirm(time.monotonic())
    check = asyncio.ensure_future(lock._check(_SlowConnection(0.25), time.monotonic()))
    await asyncio.sleep(0.15)
    assert not lock.may_post(), "late after poll_s / 2: not posting"
    assert state.ha_role == "active", "the session, and so the lock, is kept"
    await check
    said = [e.render() for e in lines.drain() if hasattr(e, "render")]
    assert any("lock check is slower than 0.1s; not posting" in line for line in said), said
    assert any("the lock check answered; posting" in line for line in said)


async def test_no_answer_to_the_check_within_two_polls_is_a_failure() -> None:
    state = PlantState("Old Plant")
    config = HaConfig(enabled=True, dsn="postgresql://u@127.0.0.1:1/db", poll_s=0.2)
    lock = PlantLock(config, "Old Plant", "demo", state, OpsLog(Bus()), identity="test-a")
    lock._set_role("active", "test-a", "holds the plant's lock")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"within 0\.4s"):
        await lock._check(_SlowConnection(5.0), started)
    assert 0.35 < time.monotonic() - started < 1.0
    assert not lock.may_post()


async def test_a_crashed_lock_holder_ends_the_bridge_and_reaches_the_supervisor() -> None:
    # The holder and the bridge share one TaskGroup: before, a holder that died went
    # unnoticed (its exception surfaced only at shutdown) while the bridge ran on.
    from types import SimpleNamespace

    from dtp_console.ha import run_with_lock

    async def _dies(_stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("holder bug")

    bridge_ran = asyncio.Event()

    async def _bridge(stop: asyncio.Event) -> None:
        bridge_ran.set()
        await stop.wait()

    lock: Any = SimpleNamespace(key="old-plant", run=_dies)
    before = {t for t in asyncio.all_tasks() if not t.done()}
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(run_with_lock(lock, _bridge, asyncio.Event()), 5)
    assert bridge_ran.is_set()
    assert caught.group_contains(RuntimeError, match="holder bug")
    assert not {t for t in asyncio.all_tasks() if not t.done()} - before
