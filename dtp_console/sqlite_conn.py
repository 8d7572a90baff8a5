"""Opening a SQLite file the one way the stores and the registry share.

Every embedded database (the SQLite store, the registry's default repository)
is opened here with one set of PRAGMAs, so they cannot drift apart again:

- `journal_mode=WAL`: readers (a `check`, the registry CLI, a second console)
  go on while one connection writes.
- `busy_timeout=5000`: a writer that finds the file locked waits up to 5 s
  (`BUSY_TIMEOUT_MS`), then fails with "database is locked". 5 s (also what
  Python's `sqlite3.connect` sets by default) rather than the registry's
  former 10 s: a waiting call holds its adapter's only
  connection and a worker thread and cannot be cancelled (the thread must
  finish first), so this is the longest a shutdown or a cancelled request can
  stall on someone else's lock. It matches the stores' default shutdown drain
  (`stores.spool.drain_timeout_s`, 5 s) and stays under the health probe's
  10 s, so a probe reports "database is locked" rather than a bare timeout.
  The longest legitimate holder, one `BEGIN IMMEDIATE` batch, takes
  milliseconds.
- `foreign_keys=ON`: SQLite's default is off; no schema declares a foreign key
  today, so this only makes any future one enforced as written.
- `synchronous=NORMAL` (callers may ask for another level): with WAL, a commit
  survives a crash of the process; a power cut may lose the last ones.

The connection is in autocommit mode (`isolation_level=None`: transactions are
the caller's explicit `BEGIN IMMEDIATE` … `COMMIT`) and may be used from the
worker threads the async adapters run it on (`check_same_thread=False`; each
adapter serialises its calls with a lock).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

__all__ = ["BUSY_TIMEOUT_MS", "Synchronous", "connect_sqlite"]

#: How long a write waits for another connection's lock before "database is locked".
BUSY_TIMEOUT_MS = 5_000

Synchronous = Literal["off", "normal", "full", "extra"]


def connect_sqlite(path: Path | str, *, synchronous: Synchronous = "normal") -> sqlite3.Connection:
    """A connection to `path` (`:memory:` works) with the shared PRAGMAs applied.

    Creates the file's folder. Blocking: call it in a worker thread from async code.
    Raises `sqlite3.Error` / `OSError`; the connection is closed when a PRAGMA fails.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn
