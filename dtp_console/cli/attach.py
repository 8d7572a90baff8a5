"""`dtp-console attach [URL]`: the full console on a running headless service, over its API.

Typically over SSH to the service's host: `ssh -t host dtp-console attach` (the API
listens on loopback there). The token comes from `--token-file` or
`$DTP_API_TOKEN`, never the command line (argv is readable by every user of the
host); a viewer token attaches read-only. `q` detaches and leaves the service running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dtp_console.api.config import is_loopback_host, parse_listen
from dtp_console.cli.common import EXIT_CONFIG, add_config_arg, load_or_exit

__all__ = ["default_url", "read_token", "register"]

#: Bytes of a token file read (a token is 43 characters; anything larger is not one).
_TOKEN_FILE_MAX = 4096


def register(sub: Any) -> None:
    """Add the `attach` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "attach",
        help="the console UI on a running headless service (over its API)",
        allow_abbrev=False,  # `--token X` must not be read as `--token-file X` (and echoed)
    )
    add_config_arg(parser)
    parser.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="the service's API (default: http(s):// + api.listen of the local config)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="file holding the API token (default: $DTP_API_TOKEN)",
    )
    parser.add_argument(
        "--ca-file", type=Path, metavar="F", help="CA bundle that signed the API's certificate"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the API's TLS certificate (anyone on the path can read the token)",
    )
    # Named only to refuse it without echoing its value: argv is readable by every user.
    parser.add_argument("--token", action=_RefuseToken, help=argparse.SUPPRESS)
    parser.set_defaults(func=_attach)


class _RefuseToken(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        del namespace, values, option_string  # the value is a secret: never shown
        parser.error(
            "a token is never a command-line argument (every user of the host can read argv):"
            " use --token-file F or $DTP_API_TOKEN"
        )


class _RefusedError(Exception):
    """A reason to exit 2 before the UI starts."""


def read_token(token_file: Path | None, env: dict[str, str] | os._Environ[str]) -> str:
    """The API token from `token_file`, else `$DTP_API_TOKEN` (`_RefusedError` naming what is
    missing; the token itself is never in a message)."""
    if token_file is not None:
        try:
            with token_file.open("rb") as handle:
                raw = handle.read(_TOKEN_FILE_MAX + 1)
        except OSError as exc:
            msg = f"--token-file {token_file}: cannot read it ({exc.strerror or exc})"
            raise _RefusedError(msg) from None
        warning = _token_file_warning(token_file)
        if warning is not None:
            print(f"WARN {warning}", file=sys.stderr)
        if len(raw) > _TOKEN_FILE_MAX:
            msg = f"--token-file {token_file}: larger than {_TOKEN_FILE_MAX} bytes, not a token"
            raise _RefusedError(msg)
        token = raw.decode("utf-8", errors="replace").strip()
        if not token:
            msg = f"--token-file {token_file} is empty"
            raise _RefusedError(msg)
    else:
        token = env.get("DTP_API_TOKEN", "").strip()
        if not token:
            msg = (
                "no API token: pass --token-file F or set $DTP_API_TOKEN "
                "(never on the command line; `dtp-console api token create` makes one)"
            )
            raise _RefusedError(msg)
    if any(c.isspace() or not c.isprintable() for c in token):
        msg = "the API token has spaces or control characters in it (one token, one line)"
        raise _RefusedError(msg)
    return token


def _token_file_warning(path: Path) -> str | None:
    """A warning when other users of the host may read the token file (as the config's
    secrets and the API's TLS key are warned about)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & 0o044:
        return (
            f"--token-file {path} is readable by other users (mode {mode & 0o777:o}): "
            "anyone on this host can use the token; chmod 600 it"
        )
    return None


def default_url(args: argparse.Namespace) -> str:
    """`http(s)://` + the local config's `api.listen` (a wildcard address → loopback)."""
    config = load_or_exit(args)
    host, port = parse_listen(config.api.listen)
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - a listen address read, not bound
        host = "127.0.0.1" if host != "::" else "::1"
    scheme = "https" if config.api.tls is not None else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def _tls(args: argparse.Namespace) -> ssl.SSLContext | bool:
    if args.insecure:
        return False
    if args.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(args.ca_file))
    except (OSError, ssl.SSLError) as exc:
        msg = f"--ca-file {args.ca_file}: not a readable PEM CA bundle ({exc})"
        raise _RefusedError(msg) from None


def _check_url(url: str, args: argparse.Namespace) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        msg = f"URL must be http(s)://HOST:PORT (got {url[:80]!r})"
        raise _RefusedError(msg)
    if parts.username or parts.password:
        msg = "URL must not carry credentials: use --token-file or $DTP_API_TOKEN"
        raise _RefusedError(msg)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        print(
            f"WARN {parts.hostname} is not loopback and the URL is plain http: the token and "
            "the console cross the network in clear (attach over SSH to the host, or use https)",
            file=sys.stderr,
        )
    if args.insecure and parts.scheme == "https":
        print("WARN --insecure: the API's certificate is not verified", file=sys.stderr)


def _attach(args: argparse.Namespace) -> int:
    try:
        url = args.url or default_url(args)
        _check_url(url, args)
        tls = _tls(args)
        token = read_token(args.token_file, os.environ)
    except _RefusedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from dtp_console.attach.client import AttachError, RemoteEngine

    try:
        engine = asyncio.run(RemoteEngine.open(url, token, tls=tls))
    except AttachError as exc:
        print(f"error: cannot attach to {url}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not sys.stdout.isatty():
        print("error: attach needs a terminal (use ssh -t)", file=sys.stderr)
        return EXIT_CONFIG
    # Imported here, as `run` does: nothing above needs Textual.
    from dtp_console.ui.app import run_ui

    return run_ui(engine)
