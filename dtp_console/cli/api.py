"""`dtp-console api token create`: a new bearer token, printed once, and its config line.

The token itself is never stored: the config keeps only `sha256:<hex>` of it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from dtp_console.api.config import ApiToken
from dtp_console.api.tokens import hash_token, new_token

__all__ = ["register"]

_ROLES = ("viewer", "operator", "admin")


def register(sub: Any) -> None:
    """Add the `api` command group."""
    parser: argparse.ArgumentParser = sub.add_parser("api", help="the HTTP API: tokens")
    inner = parser.add_subparsers(dest="api_command", metavar="ACTION", required=True)
    token = inner.add_parser("token", help="bearer tokens")
    token_inner = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_inner.add_parser(
        "create", help="print a new token once and the api.tokens line with its hash"
    )
    create.add_argument("--role", choices=_ROLES, required=True, help="what the token may do")
    create.add_argument(
        "--tenant",
        action="append",
        required=True,
        metavar="T",
        help="a tenant it may see (repeatable; '*' for every tenant)",
    )
    create.add_argument("--label", help="who holds it (default: <role>-<first hash digits>)")
    create.set_defaults(func=_create)


def _create(args: argparse.Namespace) -> int:
    token = new_token()
    digest = hash_token(token)
    label = args.label or f"{args.role}-{digest.removeprefix('sha256:')[:8]}"
    try:
        entry = ApiToken(label=label, hash=digest, role=args.role, tenants=args.tenant)
    except ValueError as exc:
        first = str(exc).splitlines()
        print(f"error: {' '.join(line.strip() for line in first[1:3])}", file=sys.stderr)
        return 2
    tenants = ", ".join(_flow(t) for t in entry.tenants)
    print("token (shown once; hand it to the client, store it nowhere else):")
    print(f"  {token}")
    print("add under api.tokens in the config:")
    print(
        f"  - {{label: {_flow(label)}, hash: {digest}, role: {entry.role}, tenants: [{tenants}]}}"
    )
    return 0


def _flow(text: str) -> str:
    """`text` as a YAML flow scalar: plain when safe, else JSON-quoted (valid YAML)."""
    return text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", text) else json.dumps(text)
