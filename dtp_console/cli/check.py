"""`dtp-console check`: write a probe to each configured store, read it back, report."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from dtp_console.cli.common import add_config_arg, load_or_exit

__all__ = ["register"]

#: Exit code when any configured store failed its probe.
EXIT_FAILED = 1


def register(sub: Any) -> None:
    """Add the `check` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="probe each configured store (write and read back)",
        description="Write a probe record to each configured store and read it back; "
        "one row per store; exit 1 when any store fails.",
    )
    add_config_arg(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from dtp_console.stores.check import format_results, format_spools, run_check
    from dtp_console.stores.disk_spool import read_spool_files

    config = load_or_exit(args)
    results = asyncio.run(run_check(config.stores))
    spools = read_spool_files(config.stores.spool_root) if config.stores.spool == "disk" else {}
    if args.json:
        rows = [
            {
                "name": r.name,
                "role": r.role,
                "configured": r.configured,
                "ok": r.ok,
                "latency_ms": r.latency_ms,
                "error": r.error,
                "spool": {k: v for k, v in spools.items() if k.endswith(f":{r.name}")},
            }
            for r in results
        ]
        print(json.dumps(rows, indent=2))
    else:
        print(format_results(results))
        if spools:
            print()
            print(format_spools(spools))
    return EXIT_FAILED if any(r.configured and not r.ok for r in results) else 0
