"""A private VictoriaMetrics (the InfluxDB v2 write-path stand-in) on 127.0.0.1.

VictoriaMetrics accepts `/api/v2/write` and `/ping` like InfluxDB 2 but has no
Flux; tests read back through its `/api/v1/export` (≈1–2 s visibility lag). Ask
it about a new series too early and it caches the empty answer for ~10 s:
`export_selector` varies a never-matching matcher per poll to dodge that.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from devtools.ports import free_port

__all__ = ["VICTORIA_METRICS", "VictoriaMetricsServer", "export_selector"]

VICTORIA_METRICS = shutil.which("victoria-metrics")


def export_selector(metric: str, attempt: int, **labels: str) -> str:
    """A series selector with a per-attempt cache key (see the module docstring)."""
    matchers = [f'{k}="{v}"' for k, v in labels.items()] + [f'dtp_poll!="{attempt}"']
    return f"{metric}{{{','.join(matchers)}}}"


class VictoriaMetricsServer:
    """One `victoria-metrics` process owned by a test; stopped by PID, never by name."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The base URL the InfluxDB client and `/api/v1/export` use."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> VictoriaMetricsServer:
        """Start (same port and data dir on a restart) and wait for `/health`."""
        if VICTORIA_METRICS is None:
            raise FileNotFoundError("victoria-metrics is not installed (apt victoria-metrics)")
        log = (self.directory / "victoria.log").open("ab")
        self.process = subprocess.Popen(
            [
                VICTORIA_METRICS,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.directory / 'data'}",
                "-retentionPeriod=1",
                "-search.latencyOffset=0s",
                # Keep one sample per (series, ts), as InfluxDB overwrites a rewritten point.
                "-dedup.minScrapeInterval=1ms",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"victoria-metrics not healthy on {self.url} after {timeout}s")

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL) the process this object started."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> VictoriaMetricsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
