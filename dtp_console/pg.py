"""PostgreSQL connection settings shared by the stores and the registry (asyncpg).

`ssl_argument()` turns `sslmode` + `ca_file` into what `asyncpg.create_pool(ssl=…)`
takes; `plaintext_warning()` says when a password may travel unverified to a
remote host; `describe_pg_error()` is the one line an operator sees — none of
them ever contains the DSN (at most `host:port/db`).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import asyncpg

from dtp_console.urls import DsnError, parse_pg_dsn

__all__ = ["describe_pg_error", "effective_sslmode", "plaintext_warning", "ssl_argument"]

#: Modes that send the password without checking who receives it.
_UNVERIFIED = frozenset({"disable", "allow", "prefer", "require"})


def ssl_argument(sslmode: str | None, ca_file: Path | None) -> ssl.SSLContext | str | None:
    """asyncpg's `ssl=` for `sslmode`/`ca_file`; None leaves it to the DSN (default `prefer`).

    The verifying modes get an `SSLContext` (asyncpg then requires TLS);
    `require` with a CA file verifies the chain, as libpq does with a root cert.
    Raises `OSError`/`ssl.SSLError` when the CA file cannot be read.
    """
    if sslmode == "require" and ca_file is not None:
        sslmode = "verify-ca"
    if sslmode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        context.check_hostname = sslmode == "verify-full"
        return context
    return sslmode


def effective_sslmode(dsn: str, sslmode: str | None, ca_file: Path | None) -> str:
    """The mode a connection will use: the setting, else the DSN's, else asyncpg's `prefer`."""
    try:
        from_dsn = parse_pg_dsn(dsn).sslmode
    except DsnError:
        from_dsn = None
    mode = sslmode or from_dsn or "prefer"
    return "verify-ca" if mode == "require" and ca_file is not None else mode


def plaintext_warning(what: str, dsn: str, sslmode: str | None, ca_file: Path | None) -> str | None:
    """A warning when `dsn` has a password, a remote host and a mode that does not verify TLS."""
    try:
        parsed = parse_pg_dsn(dsn)
    except DsnError:
        return None  # refused at load; nothing to warn about here
    mode = effective_sslmode(dsn, sslmode, ca_file)
    if not parsed.has_password or not parsed.remote() or mode not in _UNVERIFIED:
        return None
    risk = "may go in clear" if mode != "require" else "goes to an unverified server"
    return (
        f"{what}: the password to {parsed.target()} {risk} (sslmode={mode}); "
        f"set sslmode: verify-full (and ca_file) to check the server's certificate"
    )


def describe_pg_error(exc: BaseException) -> str:
    """One line an operator can act on, without the DSN."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or 'untrusted certificate'}"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    if isinstance(exc, ValueError):  # asyncpg's DSN parser; its text may echo the password
        return "invalid DSN"
    if isinstance(exc, asyncpg.PostgresError):
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        code = getattr(exc, "sqlstate", None)
        return f"{message} (SQLSTATE {code})" if code else message
    if isinstance(exc, asyncpg.InterfaceError):
        return f"connection lost: {str(exc).splitlines()[0] if str(exc) else 'interface error'}"
    return type(exc).__name__
