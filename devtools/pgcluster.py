"""A throwaway PostgreSQL cluster that a test can stop and start (outages on demand).

The FIELD-NOTES recipe: `initdb` as the `postgres` user with trust auth, then
`pg_ctl start` on a free 127.0.0.1 port with its socket in the cluster folder.
Needs root (to run as `postgres`) and PostgreSQL 15's binaries; `unavailable()`
says why when either is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from devtools.ports import free_port

__all__ = ["PG_BIN", "PgCluster"]

PG_BIN = Path(os.environ.get("DTP_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PgCluster:
    """`with PgCluster() as pg:` → `pg.dsn`, `pg.stop()`, `pg.start()`."""

    def __init__(self) -> None:
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="dtp-pg-"))
        self.data = self._root / "data"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def unavailable() -> str | None:
        """Why a cluster cannot be started here; None when it can."""
        if not (PG_BIN / "initdb").exists():
            return f"no PostgreSQL binaries at {PG_BIN}"
        if os.geteuid() != 0 or shutil.which("runuser") is None:
            return "starting a private cluster needs root and runuser (to run as postgres)"
        return None

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def __enter__(self) -> PgCluster:
        shutil.chown(self._root, "postgres", "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--no-sync",
        )  # fmt: skip
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self._root} -c fsync=off"
        log = str(self._root / "server.log")
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", log, "-o", options, "start"
        )

    def stop(self) -> None:
        """Stop the server at once (`-m immediate`: connections drop like a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "immediate", "stop"
            )
