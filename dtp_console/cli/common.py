"""Helpers shared by the commands: config loading with a clean exit, durations."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from dtp_console.config import ConfigError, ConsoleConfig, load_config
from dtp_console.config.loader import DEFAULT_CONFIG_PATH, secrets_permission_warning

__all__ = ["EXIT_CONFIG", "add_config_arg", "config_path", "load_or_exit", "parse_duration"]

#: Exit code for an unusable config file.
EXIT_CONFIG = 2

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `1.5m`, `250ms`, `2h` → seconds (argparse type)."""
    match = _DURATION.match(text)
    if not match:
        msg = f"not a duration: {text!r} (try 30s, 5m, 1h)"
        raise argparse.ArgumentTypeError(msg)
    return float(match.group(1)) * _UNIT[match.group(2)]


def config_path(args: argparse.Namespace) -> Path:
    """The config file chosen by `--config`, `$DTP_CONFIG`, or the default."""
    chosen = getattr(args, "config", None) or os.environ.get("DTP_CONFIG")
    return Path(chosen) if chosen else DEFAULT_CONFIG_PATH


def load_or_exit(args: argparse.Namespace) -> ConsoleConfig:
    """Load the config or print the problem (file, field path, reason) and exit 2."""
    path = config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    warning = secrets_permission_warning(path)
    if warning:
        print(f"WARN {warning}", file=sys.stderr)
    return config


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    """Accept `-c/--config` after the command name too."""
    parser.add_argument("-c", "--config", default=argparse.SUPPRESS, help="config file")
