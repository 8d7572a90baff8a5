"""The twin view's seed: a registry of the demo twins and a platform worker with full rings.

Deterministic on a `FixedClock`: the registry's clock is pinned, the twin
generators are seeded, and the worker receives their messages at fixed times
(the last three minutes before the clock's wall time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from dtp_console.events import Bus, OpsLog
from dtp_console.ingest.worker import PlatformWorker
from dtp_console.registry import open_repository
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.model import Dependencies, Interfaces, ServiceSpec, TwinSpec
from dtp_console.registry.repository import TwinRepository
from dtp_console.registry.service import RegistryService
from dtp_console.runtime import Engine
from dtp_console.simulator.config import GeneratorsConfig
from dtp_console.simulator.generators import TwinGenerators
from dtp_console.ui.display import FixedClock

__all__ = ["SEED_SECONDS", "open_seeded_registry", "seed_platform"]

#: How much history the rings get.
SEED_SECONDS = 180
_TWINS = [
    TwinSpec(
        id="dt:Lift_001",
        name="Goods lift 1",
        metadata={"vibration_alert_rms": 4.5},
        interfaces=Interfaces(data_streams=["MQTT:dtp/lift/alerts"]),
        dependencies=Dependencies(static=["dt:EnergyHvac_001"], dynamic=["dt:LiftCtrl_9"]),
        declared_status="active",
    ),
    TwinSpec(
        id="dt:EnergyHvac_001",
        name="Energy & HVAC",
        interfaces=Interfaces(data_streams=["MQTT:dtp/energy_hvac/events"]),
        dependencies=Dependencies(dynamic=["dt:Room1_001"]),
        declared_status="active",
    ),
    TwinSpec(
        id="dt:Room1_001",
        name="Room 1 temperature",
        interfaces=Interfaces(data_streams=["MQTT:dtp/sensors/room1/temp"]),
        declared_status="active",
    ),
]


async def open_seeded_registry(
    folder: Path, bus: Bus, clock: FixedClock
) -> tuple[RegistryService, TwinRepository]:
    """A registry on SQLite in `folder` holding the demo twins and the lift's UI service."""
    config = RegistryConfig(twins_root=folder / "twins", sqlite_path=folder / "registry.sqlite3")
    repo = open_repository(config)
    await repo.open()
    at = [clock.wall() - 3600.0]

    def now() -> dt.datetime:
        at[0] += 60.0
        return dt.datetime.fromtimestamp(at[0], tz=dt.UTC)

    service = RegistryService(repo, bus, clock=now)
    for spec in _TWINS:
        await service.register(spec)
    await service.deprecate("dt:Lift_001", reason="maintenance")
    await service.activate("dt:Lift_001", reason="back in service")
    await service.register_service(
        ServiceSpec(id="svc:lift-ui", name="lift UI", category="ui", twin_id="dt:Lift_001")
    )
    await service.update_health("svc:lift-ui", "healthy", "200 in 12 ms")
    return service, repo


def seed_platform(engine: Engine, clock: FixedClock) -> Callable[[float], None]:
    """A platform worker (never connected) whose rings hold the generators' last minutes.

    Returns the feeder that steps the generators on with the clock (`feed(dt)`).
    """
    worker = PlatformWorker(engine.config.platform, OpsLog(Bus()))
    start = clock.wall() - SEED_SECONDS
    at = [start]
    worker.wall_clock = lambda: at[0]
    gens = TwinGenerators(
        GeneratorsConfig.model_validate(
            {"lift": {"spike_probability": 0.08}, "energy": {"interval_s": 2}}
        ),
        start_s=start,
    )

    def feed(dt_s: float) -> None:
        for topic, payload in gens.step(dt_s):
            worker.state.counters.received += 1  # the MQTT source counts intake
            worker.handle(topic, payload)

    for _ in range(SEED_SECONDS * 2):
        at[0] += 0.5
        feed(0.5)
    worker.wall_clock = clock.wall
    worker.state.mqtt, worker.state.connects = "connected", 1
    engine.platform = worker
    engine.state.platform = worker.state
    engine.state.platform_stats = worker.stats_dict
    return feed
