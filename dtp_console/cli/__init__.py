"""The `dtp-console` command line: one module per command group.

Nothing here imports Textual at module level; only `run` without `--no-ui`
imports the UI, inside the function that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dtp_console import __version__
from dtp_console.cli import (
    api,
    attach,
    calibrate,
    check,
    config_cmd,
    registry,
    run,
    simulate,
    sniff,
)

__all__ = ["build_parser", "main"]

#: Command modules; each has `register(subparsers)` that sets `func` on its parser.
COMMANDS = [run, attach, config_cmd, sniff, calibrate, simulate, registry, check, api]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="dtp-console",
        description="Operations console for the factory digital-twin platform.",
    )
    parser.add_argument("--version", action="version", version=f"dtp-console {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help="config file (default: $DTP_CONFIG or config/console.yaml)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        args = parser.parse_args([*args_list, "run"])
    code: int = args.func(args)
    return code
