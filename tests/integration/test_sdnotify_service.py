"""`dtp-console run --no-ui` under a stand-in for systemd's notify socket (Type=notify).

A real process, started as the unit starts it, with `$NOTIFY_SOCKET` and
`$WATCHDOG_USEC` set the way systemd sets them: READY after start-up, pings at
half the watchdog timeout, none while the process is frozen (a stuck loop),
STOPPING on SIGTERM and a clean exit.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import statistics
import sys
from pathlib import Path

import pytest

from tests.support.notify_socket import NotifySocket

pytestmark = pytest.mark.integration

CONFIG = """
twinzo: {client: demo, password: change-me, api_key: change-me}
sandbox: {enabled: true}
simulator: {enabled: false}
registry: {enabled: false}
stores: {enabled: false}
logging: {stats_interval_s: 60}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {host: embedded}
    device_map: {ati_amr_001: tugger-05-old}
    twinzo: {sector_id: 2}
"""

WATCHDOG_USEC = 1_000_000
PING_S = WATCHDOG_USEC / 1e6 / 2


def _env(notify_socket: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "ATI_", "AFFINE_"))}
    env.pop("WATCHDOG_PID", None)
    env.update(NOTIFY_SOCKET=notify_socket, WATCHDOG_USEC=str(WATCHDOG_USEC))
    return env


async def test_ready_watchdog_cadence_frozen_loop_and_stopping(tmp_path: Path) -> None:
    config = tmp_path / "console.yaml"
    config.write_text(CONFIG)
    async with NotifySocket() as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dtp_console",
            "run",
            "--no-ui",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_env(server.env_value),
        )
        try:
            ready = await server.wait_for("READY", timeout=30)
            assert ready.fields["STATUS"].startswith("running: 1 plants"), ready.fields
            # Nothing claimed readiness before: the first datagram is the "starting" status.
            assert server.received[0].fields == {"STATUS": "starting"}

            await asyncio.sleep(PING_S * 8)
            pings = [t for t in server.times("WATCHDOG") if t >= ready.at]
            assert len(pings) >= 4, server.received
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            # Half the timeout, with room for a loaded 2-core machine; never near the timeout.
            assert PING_S * 0.5 <= statistics.median(gaps) <= PING_S * 1.5, gaps

            # A frozen process (what a stuck event loop looks like from outside) sends nothing.
            proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(PING_S * 5)
            count = len(server.received)
            await asyncio.sleep(PING_S * 2)
            assert len(server.received) == count, "datagrams from a stopped process"
            proc.send_signal(signal.SIGCONT)
            resumed = len(server.times("WATCHDOG"))
            await asyncio.sleep(PING_S * 4)
            assert len(server.times("WATCHDOG")) > resumed, "pings did not resume"

            proc.send_signal(signal.SIGTERM)
            stopping = await server.wait_for("STOPPING", timeout=20)
            assert stopping.fields["STATUS"].startswith("stopping")
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "systemd notified: READY; watchdog ping every 0.5s" in text
    assert "event loop was blocked" in text  # the frozen stretch is reported once it resumes
    assert "not healthy" not in text
    assert "datagrams not sent" not in text
