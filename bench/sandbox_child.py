"""The bridge benchmark's twinzo sandbox: in the bridge's process, or in a child of its own.

`new_sandbox` is the one definition of the bench's sandbox (tenant, credentials,
seed, recording limit). By default the bridge benchmark runs it in the bridge's
event loop, as the demo does; the sandbox's server CPU per request, comparable to
the client's, is then charged to the bridge. Real twinzo is a remote server, so
``bench_bridge.py --sandbox-process`` runs the very same sandbox here instead:

``python bench/sandbox_child.py --records FILE [--max-recorded N]``
    serves `new_sandbox` on a free 127.0.0.1 port and prints one JSON line
    ``{"url", "port", "branch_guid", "pid"}`` when it accepts connections. On
    SIGTERM (or SIGINT, its parent's exit, or a hard time limit) it stops serving,
    writes every accepted location to FILE as a JSON list of `AcceptedLocation`
    objects and prints a last JSON line with its `SandboxStats`, the count
    written and its own CPU seconds.

`RemoteSandbox` is the parent's side: the same ``url`` / ``branch_guid`` /
``stats`` / ``locations()`` the benchmark reads from an in-process sandbox, the
last two filled in by `collect` from what the child handed back. The child is
stopped by its PID only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtp_console.config.model import SandboxConfig
from dtp_console.twinzo.sandbox import AcceptedLocation, SandboxStats, TwinzoSandbox

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_PASSWORD",
    "TWINZO_CLIENT",
    "RemoteSandbox",
    "new_sandbox",
]

TWINZO_CLIENT = "bench-client"
SANDBOX_PASSWORD = "sandbox-placeholder"
SANDBOX_API_KEY = "sandbox-placeholder-key"

SCRIPT = Path(__file__).resolve()
#: The child gives up after this long, whatever it was asked to do.
_CHILD_HARD_LIMIT_S = 900.0
#: How often the child checks that its parent is still there.
_PARENT_CHECK_S = 1.0


def new_sandbox(max_recorded: int = 200_000) -> TwinzoSandbox:
    """A fresh loopback twinzo sandbox for one phase."""
    return TwinzoSandbox(
        SandboxConfig(),
        client=TWINZO_CLIENT,
        password=SANDBOX_PASSWORD,
        api_key=SANDBOX_API_KEY,
        max_recorded=max_recorded,
        seed=1,
    )


# -- parent side --------------------------------------------------------------------------


async def final_json(
    process: asyncio.subprocess.Process,
    what: str,
    limit_s: float,
    stop: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """A bench child's last JSON line, once its output ends; `stop` it past `limit_s`."""
    assert process.stdout is not None
    try:
        async with asyncio.timeout(limit_s):
            out = await process.stdout.read()
            await process.wait()
    except TimeoutError:
        await stop()
        msg = f"{what} did not finish within {limit_s:.0f}s"
        raise RuntimeError(msg) from None
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if process.returncode != 0 or not lines:
        msg = f"{what} failed (rc={process.returncode})"
        raise RuntimeError(msg)
    final: dict[str, Any] = orjson.loads(lines[-1])
    return final


class RemoteSandbox:
    """`new_sandbox` in a child process; ``async with`` starts it, `collect` ends it."""

    def __init__(self, process: asyncio.subprocess.Process, records: Path) -> None:
        self.process = process
        self.records = records
        self.url = ""
        self.port = 0
        self.branch_guid = ""
        self.stats = SandboxStats()
        """The child's counters; empty until `collect`."""
        self.cpu_s: float | None = None
        """The child's own CPU seconds over its whole life; None until `collect`."""
        self._locations: list[AcceptedLocation] = []

    @classmethod
    async def start(
        cls, records: Path, *, max_recorded: int = 200_000, ready_timeout: float = 20.0
    ) -> RemoteSandbox:
        """Start the child and wait for its first JSON line (it is serving by then)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--records",
            str(records),
            "--max-recorded",
            str(max_recorded),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        remote = cls(process, records)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(ready_timeout):
                while (line := await process.stdout.readline()) and not line.startswith(b"{"):
                    pass
        except TimeoutError:
            await remote.stop()
            raise
        if not line:
            await remote.stop()
            msg = f"sandbox child exited before it was serving (rc={process.returncode})"
            raise RuntimeError(msg)
        hello = orjson.loads(line)
        remote.url, remote.port = str(hello["url"]), int(hello["port"])
        remote.branch_guid = str(hello["branch_guid"])
        return remote

    async def collect(self, limit_s: float = 120.0) -> None:
        """SIGTERM the child, then read back its stats and every accepted location."""
        assert self.process.stdout is not None
        if self.process.returncode is None:
            self.process.terminate()
        final = await final_json(self.process, "sandbox child", limit_s, self.stop)
        self.stats = stats_from_dict(final["stats"])
        self.cpu_s = float(final["cpu_s"])
        rows: list[dict[str, Any]] = orjson.loads(self.records.read_bytes())
        self._locations = [AcceptedLocation(**row) for row in rows]
        if len(self._locations) != int(final["recorded"]):
            msg = f"sandbox child wrote {final['recorded']} locations, read {len(rows)}"
            raise RuntimeError(msg)

    def locations(self, login: str | None = None) -> list[AcceptedLocation]:
        """Accepted locations in arrival order, as the child recorded them (after `collect`)."""
        return [loc for loc in self._locations if login is None or loc.login == login]

    async def stop(self) -> None:
        """Terminate this child (only this PID) if it still runs; kill it if it lingers."""
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(30):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    async def __aenter__(self) -> Self:
        """Already started by `start`."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Make sure the child is gone."""
        await self.stop()


def stats_from_dict(data: dict[str, Any]) -> SandboxStats:
    """`SandboxStats.as_dict` read back (status codes as int keys again)."""
    return SandboxStats(
        requests=int(data["requests"]),
        auth_calls=Counter({str(k): int(v) for k, v in data["auth_calls"].items()}),
        refresh_calls=int(data["refresh_calls"]),
        status_counts=Counter({int(k): int(v) for k, v in data["status_counts"].items()}),
        accepted=int(data["accepted"]),
        rejected_locations=int(data["rejected_locations"]),
        faults_injected=Counter({str(k): int(v) for k, v in data["faults_injected"].items()}),
    )


# -- child side ---------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> tuple[list[AcceptedLocation], dict[str, Any]]:
    """Serve until told to stop; the accepted locations and the last line's figures."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()
    sandbox = new_sandbox(max_recorded=args.max_recorded)
    async with sandbox:
        port = int(sandbox.url.rsplit(":", 1)[1])
        hello = {
            "url": sandbox.url,
            "port": port,
            "branch_guid": sandbox.branch_guid,
            "pid": os.getpid(),
        }
        print(orjson.dumps(hello).decode(), flush=True)
        deadline = time.monotonic() + _CHILD_HARD_LIMIT_S
        # Bounded: a parent that died without a SIGTERM (we are re-parented) ends us too.
        while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _PARENT_CHECK_S)
    # Leaving the context closed the server: nothing is accepted after this point.
    recorded = sandbox.locations()
    return recorded, {"stats": sandbox.stats.as_dict(), "recorded": len(recorded)}


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", required=True, help="write the accepted locations here")
    parser.add_argument("--max-recorded", type=int, default=200_000)
    args = parser.parse_args(argv)
    recorded, result = asyncio.run(_serve(args))
    Path(args.records).write_bytes(orjson.dumps(recorded))
    result["cpu_s"] = round(time.process_time(), 3)
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
