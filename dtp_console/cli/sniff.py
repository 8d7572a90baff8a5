"""`dtp-console sniff` (placeholder until the engine lands)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the `sniff` command."""
    parser: argparse.ArgumentParser = sub.add_parser("sniff", help="sniff")
    parser.set_defaults(func=lambda _args: 0)
