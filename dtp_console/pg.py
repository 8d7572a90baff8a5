"""PostgreSQL connection settings shared by the stores and the registry (asyncpg).

`ssl_argument()` turns `sslmode` + `ca_file` into what `asyncpg.create_pool(ssl=…)`
takes; `plaintext_warning()` says when a password may travel unverified to a
remote host; `describe_pg_error()` is the one line an operator sees — none of
them ever contains the DSN (at most `host:port/db`).

`open_pool()` is the one way a pool is opened: connect, then run the caller's
schema creation in a transaction holding a transaction-scoped advisory lock on
the caller's key (two consoles starting at once do not race on the catalog),
and close the pool again when that fails. `PG_ERRORS` are what a connection can
raise; callers turn them into their own error with `describe_pg_error()`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from dtp_console.urls import DsnError, parse_pg_dsn

__all__ = [
    "PG_ERRORS",
    "PgOpenError",
    "PoolSettings",
    "describe_pg_error",
    "effective_sslmode",
    "open_pool",
    "plaintext_warning",
    "ssl_argument",
]

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


#: What connecting or a statement can raise. `ValueError` is asyncpg's DSN parser, whose
#: text may hold part of the password: never show `{exc}`, use `describe_pg_error()`.
PG_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    ValueError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

#: An async step on one connection: a schema migration, or a new connection's set-up.
ConnectionStep = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How to open one asyncpg pool (the DSN is a secret: never shown)."""

    dsn: str
    sslmode: str | None = None
    ca_file: Path | None = None
    min_size: int = 1
    max_size: int = 10
    timeout: float | None = None
    """Connect timeout (s); None keeps asyncpg's (60 s)."""
    command_timeout: float | None = None
    """Default statement timeout (s); None: none."""
    init: ConnectionStep | None = None
    """Run on every new connection (type codecs)."""

    def __repr__(self) -> str:
        return "PoolSettings(<dsn masked>)"


class PgOpenError(Exception):
    """Opening a pool failed; `phase` is `connect` or `schema`, the text has no DSN."""

    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(reason)
        self.phase = phase
        self.reason = reason


async def open_pool(settings: PoolSettings, schema_lock: int, migrate: ConnectionStep) -> Any:
    """A connected pool whose schema `migrate` has created under advisory lock `schema_lock`.

    Raises `PgOpenError` (phase `connect` or `schema`, the reason from
    `describe_pg_error`) for a driver error and closes the pool when the schema fails;
    the SSL context's `OSError` for an unreadable CA file counts as `connect`.
    """
    extra: dict[str, Any] = {}
    if settings.timeout is not None:
        extra["timeout"] = settings.timeout
    if settings.command_timeout is not None:
        extra["command_timeout"] = settings.command_timeout
    try:
        pool = await asyncpg.create_pool(
            settings.dsn,
            min_size=settings.min_size,
            max_size=settings.max_size,
            init=settings.init,
            ssl=ssl_argument(settings.sslmode, settings.ca_file),
            **extra,
        )
    except PG_ERRORS as exc:
        raise PgOpenError("connect", describe_pg_error(exc)) from None
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", schema_lock)
            await migrate(conn)
    except PG_ERRORS as exc:
        await pool.close()
        raise PgOpenError("schema", describe_pg_error(exc)) from None
    except BaseException:
        await pool.close()
        raise
    return pool
