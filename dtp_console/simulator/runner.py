"""Async orchestration: one MQTT publisher per simulated plant, one for the twin generators.

Each publisher owns its aiomqtt client in an `async with` inside a reconnect
loop. The client is built by the one MQTT module (`dtp_console.mqtt.client`:
the broker's TLS, login and MQTT version, a random id of its own), and a broker
that is down or goes away is retried with the broker's shared backoff until
`stop` is set, never fatal. The simulated clock only advances while connected,
at most a second per tick, so an outage pauses the robots instead of
teleporting them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiomqtt

from dtp_console.events import Bus, OpsLog
from dtp_console.mqtt.client import (
    client_kwargs,
    describe_mqtt_error,
    raise_if_cancelling,
    reconnect_backoff,
)
from dtp_console.simulator.amr import AmrFleet
from dtp_console.simulator.config import PlantSimulatorConfig
from dtp_console.simulator.faults import Message
from dtp_console.simulator.generators import TwinGenerators
from dtp_console.simulator.vda5050 import retained

if TYPE_CHECKING:
    from dtp_console.config.model import BrokerConfig, ConsoleConfig, PlantConfig

__all__ = ["GENERATORS", "SimStats", "run_simulator", "select_plants", "with_simulated"]

#: The `SimStats` key of the twin generators.
GENERATORS = "generators"
_MAX_DT_S = 1.0


@dataclass
class SimStats:
    """What the simulator did; filled in live, readable at any time."""

    published: dict[str, Counter[str]] = field(default_factory=dict)
    """Messages published per plant (or `generators`), by topic."""
    faults: dict[str, Counter[str]] = field(default_factory=dict)
    """Faults injected per plant, by kind."""
    connects: Counter[str] = field(default_factory=Counter)
    """Successful broker connections per plant (or `generators`)."""
    failures: Counter[str] = field(default_factory=Counter)
    """Failed connections or lost links per plant (or `generators`)."""

    def total(self, name: str | None = None) -> int:
        """Messages published by one plant (or `generators`), or by everything."""
        if name is not None:
            return sum(self.published.get(name, Counter()).values())
        return sum(sum(topics.values()) for topics in self.published.values())

    def summary_lines(self, max_topics: int = 8) -> list[str]:
        """A human summary: per source the total, the busiest topics and the faults."""
        lines: list[str] = []
        for name, topics in self.published.items():
            extra = f", {self.failures[name]} connection failures" if self.failures[name] else ""
            lines.append(f"{name}: {sum(topics.values())} messages on {len(topics)} topics{extra}")
            for topic, count in topics.most_common(max_topics):
                lines.append(f"  {count:>8}  {topic}")
            if len(topics) > max_topics:
                lines.append(f"  … and {len(topics) - max_topics} more topics")
            faults = self.faults.get(name)
            if faults and sum(faults.values()):
                kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(faults.items()))
                lines.append(f"  faults injected: {kinds}")
        return lines or ["nothing was published"]


class _Source(Protocol):
    def step(self, dt_s: float, now_ms: int | None = None) -> list[Message]: ...


@dataclass(frozen=True)
class _Target:
    """Where a publisher connects: `address`, with the broker's TLS, login and backoff."""

    name: str
    broker: BrokerConfig
    host: str
    port: int

    def client_kwargs(self) -> dict[str, Any]:
        """The client's keyword arguments (a random id and a clean session, never the
        bridge's), from the one MQTT module."""
        return client_kwargs(self, self.host, self.port, role="sim")


def select_plants(
    config: ConsoleConfig, plants: Collection[str] | None
) -> list[tuple[PlantConfig, PlantSimulatorConfig]]:
    """The plants to simulate with their settings: those with an enabled `simulator` section.

    `plants` (names, case-insensitive) narrows the choice further; an unknown
    name is a KeyError. A plant without an enabled `simulator` section is
    never simulated, so real vendor brokers only get simulated traffic on purpose.
    """
    wanted = None if plants is None else {config.plant(name).name for name in plants}
    return [
        (p, p.simulator)
        for p in config.plants
        if p.simulator and p.simulator.enabled and (wanted is None or p.name in wanted)
    ]


def with_simulated(config: ConsoleConfig, plants: Collection[str]) -> ConsoleConfig:
    """A copy of `config` in which the named plants have an enabled `simulator` section
    (default settings where they had none)."""
    wanted = {config.plant(name).name for name in plants}
    copies = []
    for plant in config.plants:
        if plant.name in wanted:
            sim = (plant.simulator or PlantSimulatorConfig()).model_copy(update={"enabled": True})
            plant = plant.model_copy(update={"simulator": sim})
        copies.append(plant)
    return config.model_copy(update={"plants": copies})


def _plant_target(plant: PlantConfig, address: tuple[str, int]) -> _Target:
    return broker_target(plant.name, plant.broker, address)


def broker_target(name: str, broker: BrokerConfig, address: tuple[str, int]) -> _Target:
    """Where a publisher connects: `address`, with the broker's TLS and login.

    The embedded broker (in process, no TLS, no users) gets a plain connection."""
    if broker.embedded:
        broker = broker.model_copy(
            update={"username": None, "password": None, "tls": False, "protocol": "3.1.1"}
        )
    return _Target(name, broker, *address)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set."""
    if stop.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


async def _publish_loop(
    target: _Target,
    source: _Source,
    stop: asyncio.Event,
    counts: Counter[str],
    stats: SimStats,
    log: OpsLog | None,
    tick_s: float,
) -> None:
    """Step `source` on a clock and publish what it yields; reconnect until `stop`."""
    loop = asyncio.get_running_loop()
    backoff = reconnect_backoff(target.broker)
    where = f"{target.host}:{target.port}"
    while not stop.is_set():
        connecting = True
        try:
            async with aiomqtt.Client(**target.client_kwargs()) as client:
                connecting = False
                stats.connects[target.name] += 1
                backoff.reset()
                last = loop.time()
                while not stop.is_set():
                    now = loop.time()
                    dt, last = min(now - last, _MAX_DT_S), now
                    for topic, payload in source.step(dt, time.time_ns() // 1_000_000):
                        await client.publish(topic, payload, qos=0, retain=retained(topic))
                        counts[topic] += 1
                    await _wait(stop, tick_s)
        except (aiomqtt.MqttError, OSError) as exc:
            raise_if_cancelling(exc)
            stats.failures[target.name] += 1
            wait = backoff.next()
            reason = describe_mqtt_error(exc, tls=target.broker.tls if connecting else None)
            if log is not None:
                log.limited(
                    "WARN",
                    f"sim-broker:{target.name}",
                    f"simulator {target.name}: broker {where} unreachable ({reason}); "
                    f"retrying in {wait:.1f}s",
                    plant=target.name,
                )
            await _wait(stop, wait)


async def run_simulator(
    config: ConsoleConfig,
    addresses: Mapping[str, tuple[str, int]],
    stop: asyncio.Event,
    *,
    bus: Bus | None = None,
    plants: Collection[str] | None = None,
    rate_override: float | None = None,
    generators: bool = True,
    platform_address: tuple[str, int] | None = None,
    stats: SimStats | None = None,
) -> SimStats:
    """Publish simulated fleets (and the twin generators) until `stop` is set.

    The plants are `select_plants(config, plants)`: those with an enabled
    `simulator` section, narrowed to `plants` when given.
    `addresses` maps a plant name to the (host, port) to publish to — the
    caller resolves an `embedded` broker to the port it actually runs on;
    plants without an address are skipped with a warning. The twin generators
    run when `generators` is true, they are enabled in the config, and
    `platform_address` is given. Pass `stats` to watch the counts live.
    """
    stats = stats if stats is not None else SimStats()
    log = OpsLog(bus, config.logging.repeat_window_s) if bus is not None else None
    start_ms = time.time_ns() // 1_000_000
    jobs: list[tuple[_Target, _Source, float]] = []
    for plant, sim_cfg in select_plants(config, plants):
        if plant.name not in addresses:
            if log is not None:
                log.emit("WARN", f"simulator {plant.name}: no broker address; not simulated")
            continue
        if rate_override is not None:
            sim_cfg = sim_cfg.model_copy(update={"rate_hz": rate_override})
        fleet = AmrFleet(plant, sim_cfg, start_ms=start_ms)
        stats.faults[plant.name] = fleet.faults.counts
        target = _plant_target(plant, addresses[plant.name])
        jobs.append((target, fleet, min(0.1, max(0.01, 0.5 / sim_cfg.rate_hz))))
        if log is not None:
            mapped = sum(1 for vid in fleet.robots if vid in plant.device_map)
            log.emit(
                "INFO",
                f"simulator {plant.name}: {len(fleet.robots)} robots ({mapped} mapped) "
                f"publishing {plant.format} at {sim_cfg.rate_hz:g} Hz to "
                f"{target.host}:{target.port}",
                plant=plant.name,
            )
    gen_cfg = config.simulator.generators
    if generators and gen_cfg.enabled and platform_address is not None:
        target = broker_target(GENERATORS, config.platform.broker, platform_address)
        jobs.append((target, TwinGenerators(gen_cfg, start_s=start_ms / 1000), 0.1))
    if not jobs:
        if log is not None:
            log.emit("INFO", "simulator: nothing to simulate")
        return stats
    async with asyncio.TaskGroup() as group:
        for target, source, tick in jobs:
            counts = stats.published.setdefault(target.name, Counter())
            group.create_task(
                _publish_loop(target, source, stop, counts, stats, log, tick),
                name=f"simulator:{target.name}",
            )
    return stats
