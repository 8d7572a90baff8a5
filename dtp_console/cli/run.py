"""`dtp-console run`: the console, with the UI or headless (`--no-ui`)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
import sys
from pathlib import Path
from typing import Any

from dtp_console.api.errors import ApiBindError
from dtp_console.atomic import write_json_atomic
from dtp_console.cli.common import (
    EXIT_CONFIG,
    add_config_arg,
    config_path,
    load_or_exit,
    parse_duration,
)
from dtp_console.config.model import ConsoleConfig
from dtp_console.headless import HeadlessRenderer
from dtp_console.oplog import configure_library_logging
from dtp_console.runtime import Engine

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the `run` command (also what a bare `dtp-console` does)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "run", help="run the console (the default command)"
    )
    add_config_arg(parser)
    parser.add_argument("--no-ui", action="store_true", help="headless: log lines and stats")
    parser.add_argument(
        "--plant",
        action="append",
        metavar="NAME",
        help="run only this plant (repeatable; default: all enabled plants)",
    )
    parser.add_argument(
        "--for",
        dest="duration",
        type=parse_duration,
        metavar="DURATION",
        help="stop cleanly after this long (e.g. 30s, 5m)",
    )
    parser.add_argument(
        "--stats-json", type=Path, metavar="PATH", help="write the final counters as JSON"
    )
    sim = parser.add_mutually_exclusive_group()
    sim.add_argument(
        "--simulate", dest="simulate", action="store_true", default=None, help="run the simulator"
    )
    sim.add_argument(
        "--no-simulate", dest="simulate", action="store_false", help="do not run the simulator"
    )
    parser.set_defaults(func=_run)


def _ui_available() -> bool:
    return importlib.util.find_spec("dtp_console.ui") is not None


def _run(args: argparse.Namespace) -> int:
    config = load_or_exit(args)
    stores = config.stores
    if stores.enabled and stores.spool == "disk":
        from dtp_console.stores.disk_spool import check_spool_dir

        problem = check_spool_dir(stores.spool_root)
        if problem is not None:
            print(f"error: stores.spool_dir: cannot keep the spool in {problem}", file=sys.stderr)
            return 2
    try:
        engine = Engine(
            config,
            config_path=config_path(args),
            plants=args.plant,
            simulate=args.simulate,
        )
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if not args.no_ui and _ui_available() and sys.stdout.isatty():
        # Imported here: `--no-ui` (and a non-terminal stdout) never loads Textual.
        from dtp_console.ui.app import run_ui

        return run_ui(engine, duration=args.duration, stats_json=args.stats_json)
    configure_library_logging(None)  # headless: library records go to stderr
    return asyncio.run(_headless(engine, config, args.duration, args.stats_json))


async def _headless(
    engine: Engine, config: ConsoleConfig, duration: float | None, stats_json: Path | None
) -> int:
    renderer = HeadlessRenderer(
        engine.bus,
        engine.state,
        out=sys.stdout,
        interval_s=config.logging.stats_interval_s,
        log_file=config.logging.file,
    )
    stop, render_stop = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rendering = asyncio.create_task(renderer.run(render_stop), name="headless")
    running = asyncio.create_task(engine.run(stop), name="engine")
    code = 0
    try:
        waits: set[asyncio.Future[Any]] = {running, asyncio.ensure_future(stop.wait())}
        await asyncio.wait(waits, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        await running
    except* ApiBindError as refused:
        # A start-up refusal like a config error: say which field, exit 2, no traceback.
        for bind_error in refused.exceptions:
            print(f"config error: {bind_error}", file=sys.stderr)
        code = EXIT_CONFIG
    except* Exception as group:
        for exc in group.exceptions:
            print(f"FAIL console stopped: {exc!r}", file=sys.stderr)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        render_stop.set()
        await rendering
        renderer.print_stats()
        renderer.close()
    if stats_json is not None:
        write_json_atomic(stats_json, engine.state.as_dict())
    return code
