"""`dtp-console config show`: the resolved config with secrets masked."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from dtp_console.cli.common import add_config_arg, load_or_exit
from dtp_console.config import masked_dump
from dtp_console.urls import mask_url

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the `config` command group."""
    parser: argparse.ArgumentParser = sub.add_parser("config", help="inspect the configuration")
    inner = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = inner.add_parser("show", help="print the resolved config, secrets masked")
    add_config_arg(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    show.set_defaults(func=_show)


def _mask_urls(node: Any) -> Any:
    """Every string in `node` with URL user info masked (`twinzo.base_url`, `neo4j.uri`, …)."""
    if isinstance(node, str):
        return mask_url(node)
    if isinstance(node, dict):
        return {key: _mask_urls(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_mask_urls(value) for value in node]
    return node


def _show(args: argparse.Namespace) -> int:
    data = _mask_urls(masked_dump(load_or_exit(args)))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return 0
