"""`dtp-console simulate`: only the simulator, publishing to the configured brokers.

Useful to drive a real broker (or a bridge running elsewhere) with realistic
traffic. A plant whose broker is `embedded` gets an in-process broker on its
configured port, bound to 127.0.0.1; the command says where.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from dtp_console.cli.common import add_config_arg, load_or_exit, parse_duration
from dtp_console.config import ConsoleConfig
from dtp_console.events import Bus, LogLine, Subscription
from dtp_console.simulator.broker import EmbeddedBroker
from dtp_console.simulator.runner import SimStats, run_simulator, select_plants, with_simulated

__all__ = ["register"]

#: Exit code for a `--plant` that is not configured.
EXIT_USAGE = 2


def register(sub: Any) -> None:
    """Add the `simulate` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="run only the simulator against the configured brokers",
        description=(
            "Publish simulated AMR traffic in each plant's vendor format, and the twin "
            "generators' sensor data, to the configured brokers. A broker set to `embedded` "
            "is started in-process on 127.0.0.1. Stop with Ctrl-C."
        ),
    )
    add_config_arg(parser)
    parser.add_argument(
        "--plant",
        action="append",
        metavar="NAME",
        help=(
            "simulate only this plant, with default settings if it has no simulator section "
            "(repeatable; default: every plant with an enabled simulator section)"
        ),
    )
    parser.add_argument(
        "--rate", type=float, metavar="HZ", help="messages per second per robot (overrides config)"
    )
    parser.add_argument(
        "--for",
        dest="duration",
        type=parse_duration,
        metavar="DURATION",
        help="stop after this long (e.g. 30s, 5m); default: until Ctrl-C",
    )
    parser.add_argument(
        "--no-generators", action="store_true", help="do not run the twin generators"
    )
    parser.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    config = load_or_exit(args)
    if args.rate is not None and not 0 < args.rate <= 100:
        print(f"--rate must be above 0 and at most 100, got {args.rate:g}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.plant:
            # Naming a plant is the deliberate choice to simulate it, section or not.
            config = with_simulated(config, args.plant)
    except KeyError as exc:
        print(f"simulate: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    try:
        stats = asyncio.run(_main(config, args))
    except OSError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    print("simulator summary:")
    for line in stats.summary_lines():
        print(f"  {line}")
    return 0


async def _print_log(subscription: Subscription) -> None:
    try:
        while True:
            event = await subscription.get()
            if isinstance(event, LogLine):
                print(event.render(), flush=True)
    finally:
        subscription.close()


async def _start_broker(
    brokers: dict[int, EmbeddedBroker], port: int, what: str
) -> tuple[str, int]:
    """An embedded broker on `port`, shared by everything configured with the same port."""
    broker = brokers.get(port) if port else None
    if broker is None:
        broker = EmbeddedBroker("127.0.0.1", port)
        bound = await broker.start()
        brokers[port or -bound] = broker
        print(
            f"embedded MQTT broker for {what} on 127.0.0.1:{bound} "
            "(MQTT 3.1.1 only, loopback only, demo use)",
            flush=True,
        )
    elif broker.port is not None:
        print(f"{what} shares the embedded broker on 127.0.0.1:{broker.port}", flush=True)
    return broker.address


async def _main(config: ConsoleConfig, args: argparse.Namespace) -> SimStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bus = Bus()
    # Subscribe before anything runs, so the first lines are not missed.
    printer = asyncio.create_task(_print_log(bus.subscribe()), name="simulate:log")
    brokers: dict[int, EmbeddedBroker] = {}
    stats = SimStats()
    started = time.monotonic()
    try:
        addresses: dict[str, tuple[str, int]] = {}
        for plant, _ in select_plants(config, args.plant):
            if plant.broker.embedded:
                addresses[plant.name] = await _start_broker(brokers, plant.broker.port, plant.name)
            else:
                addresses[plant.name] = (plant.broker.host, plant.broker.port)
        platform: tuple[str, int] | None = None
        gens = not args.no_generators and config.simulator.generators.enabled
        if gens and config.platform.broker.embedded:
            platform = await _start_broker(
                brokers, config.platform.broker.port, "the twin generators"
            )
        elif gens:
            platform = (config.platform.broker.host, config.platform.broker.port)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await run_simulator(
            config,
            addresses,
            stop,
            bus=bus,
            plants=args.plant,
            rate_override=args.rate,
            generators=gens,
            platform_address=platform,
            stats=stats,
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for broker in brokers.values():
            await broker.stop()
        await asyncio.sleep(0)  # let the printer show the last lines
        printer.cancel()
        await asyncio.gather(printer, return_exceptions=True)
    print(f"simulated for {time.monotonic() - started:.1f}s", flush=True)
    return stats
