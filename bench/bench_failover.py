"""Failover benchmark: the gap a `kill -9` of the active console leaves on the twinzo map.

One invocation starts a private PostgreSQL (the tests' `PgCluster`: needs root and
PostgreSQL 15), a private mosquitto, the twinzo sandbox (in this process) and two
`dtp-console run --no-ui` processes with `ha` on for one HiTech plant of 50 devices,
fed 1,000 msg/s by a paced publisher (a child process). Then, `--kills` times:

1. steady    from an arbitrary instant while the active posts, the time until every
             device has been posted again (the map's own refresh floor: a device is
             posted at most every `min_post_interval_ms`, flushed every 100 ms);
2. failover  `kill -9` of the active → the time until every device has been posted
             again by the other console (tokens tell the consoles apart); then the
             killed console is started again and waits as the standby.

Figures: p50 / max of both, and failover / steady. Target (issue 19): failover ≤ 3 s
at `poll_s: 1`. Reported, never enforced. This machine is shared (2 cores, other
work running, CPU steal is printed): compare figures within one run only.

    .venv/bin/python bench/bench_failover.py              # 10 kills, poll_s 1
    .venv/bin/python bench/bench_failover.py --kills 3 --poll 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BenchBroker, device_ids, percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.pgcluster import PgCluster
from devtools.postlog import PostLog
from dtp_console.config.model import SandboxConfig
from dtp_console.twinzo.sandbox import TwinzoSandbox

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEVICES = 50
RATE = 1_000.0
PLANT = "Bench Plant"

CONFIG = """\
twinzo: {{client: demo, password: test-device-pw, api_key: test-api-key, base_url: "{url}"}}
sandbox: {{enabled: false}}
# Two consoles run at once: the API (default 127.0.0.1:8470) would make the second fail.
api: {{enabled: false}}
registry: {{enabled: false}}
stores: {{enabled: false}}
logging: {{stats_interval_s: 60, log_every_n: 100000}}
ha: {{enabled: true, dsn: "${{HA_PG_DSN}}", poll_s: {poll}}}
plants:
  - name: {plant}
    format: hitech
    broker: {{host: 127.0.0.1, port: {port}, reconnect_initial_s: 0.1, reconnect_max_s: 0.5}}
    twinzo: {{sector_id: 1}}
    device_map: {devices}
"""


def _steal_share() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat (0, 1 where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 1
    return (fields[7] if len(fields) > 7 else 0), max(1, sum(fields))


class Console:
    """One console process; stdout goes to a file that is searched for role lines."""

    def __init__(self, config: Path, dsn: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "HA_"))}
        env["HA_PG_DSN"] = dsn
        env["PYTHONPATH"] = str(ROOT)
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dtp_console", "-c", str(config), "run", "--no-ui"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        pid = f":{self.proc.pid}"
        self.identity = socket.gethostname()[: 63 - len(pid)] + pid

    def said(self, needle: str) -> bool:
        try:
            return needle in self.log.read_text(errors="replace")
        except OSError:
            return False

    async def wait_for(self, needle: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not self.said(needle):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{needle!r} not seen from {self.identity}:\n{tail}")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


async def _all_fresh(posts: PostLog, since: float, logins: set[str], old: set[str]) -> float:
    """Seconds from `since` until every login was posted after it by a token not in `old`."""
    deadline = time.time() + 60
    while time.time() < deadline:
        seen = {p[1] for p in posts.since(since) if p[2] not in old}
        if seen >= logins:
            firsts: dict[str, float] = {}
            for t, login, token in posts.since(since):
                if token not in old and login not in firsts:
                    firsts[login] = t
            return max(firsts.values()) - since
        await asyncio.sleep(0.01)
    return float("inf")


async def run(kills: int, poll: float, tmp: Path) -> dict[str, Any]:
    ids = device_ids(DEVICES)
    mapping = {vendor: f"bench-{i:03d}" for i, vendor in enumerate(ids)}
    logins = set(mapping.values())
    steady: list[float] = []
    failover: list[float] = []
    with PgCluster() as pg, BenchBroker(tmp / "broker") as broker:
        async with TwinzoSandbox(
            SandboxConfig(), client="demo", password="test-device-pw", api_key="test-api-key"
        ) as sandbox:
            posts = PostLog.attach(sandbox)
            config = tmp / "console.yaml"
            config.write_text(
                CONFIG.format(
                    url=sandbox.url,
                    poll=poll,
                    plant=PLANT,
                    port=broker.port,
                    devices=json.dumps(mapping),
                )
            )
            seconds = 60 + kills * 20
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, str(BENCH_DIR / "_common.py"), "publish",
                "--port", str(broker.port), "--devices", str(DEVICES),
                "--rate", str(RATE), "--seconds", str(seconds),
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            consoles: list[Console] = []
            try:
                n = 0

                def start() -> Console:
                    nonlocal n
                    n += 1
                    console = Console(config, pg.dsn, tmp / f"console-{n}.log")
                    consoles.append(console)
                    return console

                active = start()
                await active.wait_for(f"ACTIVE as {active.identity}")
                standby = start()
                await standby.wait_for(f"STANDBY as {standby.identity}")
                await _all_fresh(posts, time.time(), logins, set())
                steal0 = _steal_share()
                for k in range(kills):
                    await asyncio.sleep(2.0)
                    steady.append(await _all_fresh(posts, time.time(), logins, set()))
                    old = {p[2] for p in posts.posts}
                    killed_at = time.time()
                    active.kill()
                    gap = await _all_fresh(posts, killed_at, logins, old)
                    failover.append(gap)
                    print(f"kill {k + 1}/{kills}: every device fresh after {gap:.3f}s", flush=True)
                    await standby.wait_for(f"ACTIVE as {standby.identity}")
                    active, standby = standby, start()
                    await standby.wait_for(f"STANDBY as {standby.identity}")
                steal1 = _steal_share()
            finally:
                for console in consoles:
                    console.stop()
                publisher.kill()
                await asyncio.wait_for(publisher.wait(), 10)
    steal = (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])
    return {
        "kills": kills,
        "poll_s": poll,
        "devices": DEVICES,
        "rate_msg_s": RATE,
        "steady_s": {"p50": percentile(steady, 50), "max": max(steady), "all": steady},
        "failover_s": {"p50": percentile(failover, 50), "max": max(failover), "all": failover},
        "ratio_p50": percentile(failover, 50) / max(1e-9, percentile(steady, 50)),
        "cpu_steal_share": round(steal, 3),
        "cores": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--poll", type=float, default=1.0, help="ha.poll_s")
    parser.add_argument(
        "--output", type=Path, default=BENCH_DIR / "results" / "bench_failover.json"
    )
    args = parser.parse_args()
    reason = PgCluster.unavailable()
    if reason:
        print(f"bench_failover: skipped ({reason})")
        return 0
    with tempfile.TemporaryDirectory(prefix="dtp-failover-") as tmp:
        results = asyncio.run(run(args.kills, args.poll, Path(tmp)))
    s, f = results["steady_s"], results["failover_s"]
    print(
        f"failover ({results['kills']} kills, poll_s {results['poll_s']}, {DEVICES} devices, "
        f"{RATE:,.0f} msg/s): p50 {f['p50']:.3f}s max {f['max']:.3f}s | steady refresh "
        f"p50 {s['p50']:.3f}s max {s['max']:.3f}s | failover/steady p50 "
        f"{results['ratio_p50']:.1f}x | target <= 3 s | CPU steal "
        f"{results['cpu_steal_share']:.0%} on {results['cores']} cores (a busy machine)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
