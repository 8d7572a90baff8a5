"""Soak: the console under steady load with a fault injected every minute.

One invocation starts a private mosquitto (127.0.0.1, free port), a twinzo sandbox
on loopback and the real `Engine` with one HiTech plant of `--devices` robots
(registry, stores and simulator off), then a paced publisher child process at
`--rate` msg/s. Every `--fault-every` seconds one fault is injected, in rotation:

1. broker   mosquitto SIGKILLed, restarted on the same port 2 s later;
2. 503      the sandbox answers every request with 503 for `--fault-s` seconds;
3. tokens   every device token expires at once;
4. 429      every request gets 429 with `Retry-After: 2` for `--fault-s` seconds;
5. latency  every request takes `timeout_s + 1 s` for `--fault-s` seconds.

Every `--sample-every` seconds it samples the process's RSS (``/proc/self/status``),
asyncio task count, open file descriptors (``/proc/self/fd``) and the bridge's
counters. At the end it stops the publisher, lets the engine drain, checks that
``received == sum(outcomes)``, and prints a table plus, for RSS, tasks and fds,
whether the last third of the post-warm-up samples is flat against the first
third. Figures go to stdout and ``bench/results/soak.json``; nothing is enforced
(exit 0 whenever the soak itself ran).

    .venv/bin/python bench/soak.py                      # 10 minutes, 1,000 msg/s, 100 devices
    .venv/bin/python bench/soak.py --minutes 1 --fault-every 10   # a quick look

The publisher child (``bench/soak.py publish ...``) reconnects by itself after a
broker restart; it counts what it could not send while the broker was down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from _common import TOPIC_FILTER, BenchBroker, device_ids, hitech_payload
from paho.mqtt.enums import CallbackAPIVersion

from dtp_console.config.model import ConsoleConfig, SandboxConfig
from dtp_console.events import LogLine, Subscription
from dtp_console.runtime import Engine
from dtp_console.twinzo.sandbox import TwinzoSandbox

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "soak.json"
PLANT = "Soak"
# Placeholders: the sandbox accepts whatever it is started with.
CLIENT, PASSWORD, API_KEY = "soak-client", "change-me", "change-me"
FAULTS = ("broker", "503", "tokens", "429", "latency")
#: Flat means: last-third median ≤ first-third median + max(absolute, relative · first).
TOLERANCE = {"rss_mb": (8.0, 0.10), "tasks": (10.0, 0.20), "fds": (5.0, 0.20)}
#: The publisher child stops by itself after this long whatever it was asked.
_CHILD_HARD_LIMIT_S = 3_600.0


# -- child: a paced publisher that survives broker restarts ---------------------------


def _publisher_main(args: argparse.Namespace) -> int:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"soak-pub-{os.getpid()}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.on_disconnect = lambda *_a: connected.clear()
    client.connect("127.0.0.1", args.port, keepalive=30)
    client.loop_start()  # its thread reconnects after a broker restart
    if not connected.wait(10):
        raise TimeoutError("publisher could not connect")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    devices = device_ids(args.devices)
    topics = [f"hitech/amr/{d}/position" for d in devices]
    last_ts = [0] * len(devices)
    print("READY", flush=True)
    started = time.monotonic()
    deadline = started + min(args.seconds, _CHILD_HARD_LIMIT_S)
    sent = unsent = seq = 0
    while not stop.is_set() and time.monotonic() < deadline:
        due = int((time.monotonic() - started) * args.rate)
        while seq < due:
            k = seq % len(devices)
            ts = max(last_ts[k] + 1, int(time.time() * 1000))
            last_ts[k] = ts
            info = client.publish(topics[k], hitech_payload(devices[k], ts, seq), qos=0)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                sent += 1
            else:
                unsent += 1
            seq += 1
        time.sleep(0.005)
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"sent": sent, "unsent": unsent}), flush=True)
    return 0


# -- the soak ---------------------------------------------------------------------------


@dataclass
class Sample:
    """One sampling instant."""

    t: float
    rss_mb: float
    tasks: int
    fds: int
    received: int
    forwarded: int
    coalesced: int
    failed: int
    dropped: int
    pending: int
    outbox: int
    mqtt: str


@dataclass
class FaultRecord:
    """One injected fault and how the console came out of it."""

    kind: str
    at_s: float
    lasted_s: float
    recovered_s: float | None
    """Seconds after the fault ended until every device had a fresh position in twinzo."""
    detail: dict[str, Any] = field(default_factory=dict)


def rss_mb() -> float:
    """Resident set size of this process, MB (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def soak_config(opts: argparse.Namespace, port: int, twinzo_url: str) -> ConsoleConfig:
    """The console under test: one HiTech plant, the external sandbox as twinzo."""
    return ConsoleConfig.model_validate(
        {
            "twinzo": {
                "base_url": twinzo_url,
                "client": CLIENT,
                "password": PASSWORD,
                "api_key": API_KEY,
                "timeout_s": opts.timeout_s,
            },
            "sandbox": {"enabled": False},
            "registry": {"enabled": False},
            "stores": {"enabled": False},
            "simulator": {"enabled": False},
            "logging": {"log_every_n": 10**9},
            "plants": [
                {
                    "name": PLANT,
                    "format": "hitech",
                    "broker": {
                        "host": "127.0.0.1",
                        "port": port,
                        "topics": [TOPIC_FILTER],
                        "qos": 0,
                        "reconnect_initial_s": 0.2,
                        "reconnect_max_s": 2.0,
                    },
                    "device_map": {d: d.replace("amr-", "soak-") for d in device_ids(opts.devices)},
                    "twinzo": {"sector_id": 1},
                    "min_post_interval_ms": 500,
                }
            ],
        }
    )


class Soak:
    """The running pieces and what they measured."""

    def __init__(self, opts: argparse.Namespace, broker: BenchBroker) -> None:
        self.opts = opts
        self.broker = broker
        # Keep the stand-in's own records small: its memory is not the console's.
        self.sandbox = TwinzoSandbox(
            SandboxConfig(), client=CLIENT, password=PASSWORD, api_key=API_KEY,
            max_recorded=2_000, seed=3,
        )  # fmt: skip
        self.engine: Engine | None = None
        self.samples: list[Sample] = []
        self.faults: list[FaultRecord] = []
        self.log_levels: Counter[str] = Counter()
        self.mqtt_warnings: list[str] = []
        self.started = time.monotonic()
        self._lines: Subscription | None = None

    @property
    def logins(self) -> list[str]:
        """Every mapped twinzo login."""
        return [d.replace("amr-", "soak-") for d in device_ids(self.opts.devices)]

    def elapsed(self) -> float:
        """Seconds since the load started."""
        return time.monotonic() - self.started

    def sample(self) -> Sample:
        """Take one sample of the process and the bridge."""
        assert self.engine is not None
        plant = self.engine.state.plants[PLANT]
        counters = plant.counters
        taken = Sample(
            t=round(self.elapsed(), 1),
            rss_mb=round(rss_mb(), 1),
            tasks=len(asyncio.all_tasks()),
            fds=open_fds(),
            received=counters.received,
            forwarded=counters.outcomes["forwarded"],
            coalesced=counters.outcomes["coalesced"],
            failed=counters.group("failed:"),
            dropped=counters.group("dropped:"),
            pending=counters.pending,
            outbox=len(self.engine.bridges[PLANT].outbox),
            mqtt=plant.mqtt,
        )
        self.samples.append(taken)
        return taken

    async def inject(self, kind: str) -> FaultRecord:
        """Inject one fault, end it, and wait until every device is fresh in twinzo again."""
        assert self.engine is not None
        at = self.elapsed()
        detail: dict[str, Any] = {}
        sandbox, fault_s = self.sandbox, self.opts.fault_s
        if kind == "broker":
            process = self.broker.process
            assert process is not None
            process.kill()
            process.wait(timeout=5)
            self.broker.process = None
            await asyncio.sleep(2.0)
            await asyncio.to_thread(self.broker.start)
            connects = self.engine.state.plants[PLANT].connects
            await wait_for(lambda: self.engine is not None and self._connects() > connects, 30)
            detail["connects"] = self._connects()
        elif kind == "503":
            sandbox.set_faults(error_rate=1.0)
            await asyncio.sleep(fault_s)
            sandbox.set_faults(error_rate=0.0)
        elif kind == "tokens":
            before = Counter(sandbox.stats.auth_calls)
            sandbox.expire_all_tokens()
            await asyncio.sleep(min(fault_s, 5.0))
            grew = Counter(sandbox.stats.auth_calls)
            grew.subtract(before)
            per_login = Counter(grew[login] for login in self.logins)
            detail["reauth_per_device"] = {str(k): v for k, v in sorted(per_login.items())}
        elif kind == "429":
            sandbox.set_faults(rate_429=1.0, retry_after_s=2.0)
            await asyncio.sleep(fault_s)
            sandbox.set_faults(rate_429=0.0)
        elif kind == "latency":
            sandbox.set_faults(latency_ms=(self.opts.timeout_s + 1.0) * 1000.0)
            await asyncio.sleep(fault_s)
            sandbox.set_faults(latency_ms=0.0)
        ended = time.time()
        lasted = self.elapsed() - at
        recovered: float | None = None
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: self._all_fresh_since(ended), 30)
            recovered = round(time.time() - ended, 2)
        record = FaultRecord(kind, round(at, 1), round(lasted, 1), recovered, detail)
        self.faults.append(record)
        return record

    def _connects(self) -> int:
        assert self.engine is not None
        return self.engine.state.plants[PLANT].connects

    def _all_fresh_since(self, since: float) -> bool:
        latest = self.sandbox.latest()
        return all(
            (loc := latest.get(login)) is not None and loc.received_at > since
            for login in self.logins
        )

    def read_log(self) -> None:
        """Count operator lines by level; keep the MQTT warnings (the outages' reasons)."""
        if self._lines is None:
            return
        for event in self._lines.drain():
            if isinstance(event, LogLine):
                self.log_levels[event.level] += 1
                if event.level == "WARN" and event.text.startswith("MQTT "):
                    self.mqtt_warnings.append(event.text)

    async def run(self) -> dict[str, Any]:
        """The whole soak; returns the JSON-ready figures."""
        opts = self.opts
        await self.sandbox.start()
        try:
            config = soak_config(opts, self.broker.port, self.sandbox.url)
            self.engine = engine = Engine(config)
            self._lines = engine.bus.subscribe(maxsize=100_000)
            stop = asyncio.Event()
            engine_task = asyncio.create_task(engine.run(stop), name="soak-engine")
            async with asyncio.timeout(20):
                await engine.ready.wait()
                # Polled: the state is plain data the engine updates, with no event to await.
                while engine.state.plants[PLANT].mqtt != "connected":  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            duration = opts.minutes * 60.0
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "publish", "--port", str(self.broker.port),
                "--devices", str(opts.devices), "--rate", str(opts.rate),
                "--seconds", str(duration + 30),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert publisher.stdout is not None
            async with asyncio.timeout(20):
                while (await publisher.stdout.readline()).strip() != b"READY":
                    pass
            self.started = time.monotonic()
            published: dict[str, Any] = {}
            try:
                published = await self._load_phase(duration)
            finally:
                if publisher.returncode is None:
                    publisher.send_signal(signal.SIGTERM)
                out, _ = await asyncio.wait_for(publisher.communicate(), 30)
                with contextlib.suppress(ValueError, IndexError):
                    published = json.loads(out.decode().strip().splitlines()[-1])
            # Intake settles, then a clean stop drains the outbox.
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.wait_for(engine_task, 60)
            self.read_log()
            return self._figures(published)
        finally:
            await self.sandbox.stop()

    async def _load_phase(self, duration: float) -> dict[str, Any]:
        opts = self.opts
        next_sample = 0.0
        next_fault = opts.fault_every
        fault_task: asyncio.Task[FaultRecord] | None = None
        index = 0
        while self.elapsed() < duration:
            now = self.elapsed()
            if now >= next_sample:
                self.read_log()
                s = self.sample()
                print(
                    f"  t={s.t:6.0f}s rss={s.rss_mb:6.1f}MB tasks={s.tasks:4d} fds={s.fds:3d} "
                    f"rx={s.received:8d} fwd={s.forwarded:7d} pend={s.pending:4d} mqtt={s.mqtt}",
                    flush=True,
                )
                next_sample += opts.sample_every
            if now >= next_fault and (fault_task is None or fault_task.done()):
                if fault_task is not None:
                    print(f"  fault done: {fault_task.result()}", flush=True)
                kind = FAULTS[index % len(FAULTS)]
                index += 1
                print(f"  t={now:6.0f}s injecting fault: {kind}", flush=True)
                fault_task = asyncio.create_task(self.inject(kind), name=f"fault:{kind}")
                next_fault += opts.fault_every
            await asyncio.sleep(0.2)
        if fault_task is not None:
            record = await fault_task
            print(f"  fault done: {record}", flush=True)
        self.read_log()
        self.sample()
        return {}

    def _figures(self, published: dict[str, Any]) -> dict[str, Any]:
        assert self.engine is not None
        plant = self.engine.state.plants[PLANT]
        counters = plant.counters
        total = counters.outcomes.total()
        flat = flatness(self.samples, self.opts.warmup_s)
        return {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "options": {
                "minutes": self.opts.minutes,
                "rate": self.opts.rate,
                "devices": self.opts.devices,
                "fault_every_s": self.opts.fault_every,
                "fault_s": self.opts.fault_s,
                "timeout_s": self.opts.timeout_s,
                "warmup_s": self.opts.warmup_s,
            },
            "published": published,
            "samples": [s.__dict__ for s in self.samples],
            "faults": [f.__dict__ for f in self.faults],
            "flat": flat,
            "counters": {
                "received": counters.received,
                "sum_outcomes": total,
                "pending": counters.pending,
                "adds_up": counters.received == total and counters.pending == 0,
                "outcomes": dict(sorted(counters.outcomes.items())),
                "connects": plant.connects,
            },
            "log_lines": dict(self.log_levels),
            "mqtt_warnings": self.mqtt_warnings,
            "sandbox": self.sandbox.stats.as_dict()
            | {"auth_calls": self.sandbox.stats.auth_calls.total()},
        }


async def wait_for(check: Callable[[], bool], limit_s: float) -> None:
    """Poll `check` every 50 ms; TimeoutError after `limit_s` seconds."""
    async with asyncio.timeout(limit_s):
        while not check():  # noqa: ASYNC110 - polls plain state, there is no event to await
            await asyncio.sleep(0.05)


def flatness(samples: list[Sample], warmup_s: float) -> dict[str, Any]:
    """Compare the first and last thirds of the post-warm-up samples, per resource.

    Medians, so a sample that happens to fall inside a fault (a burst of retry
    tasks, a reconnect's sockets) does not decide the verdict; the max is shown too.
    """
    steady = [s for s in samples if s.t >= warmup_s]
    third = len(steady) // 3
    result: dict[str, Any] = {}
    for key, (absolute, relative) in TOLERANCE.items():
        if third < 1:
            result[key] = {"flat": None, "reason": "too few samples after warm-up"}
            continue
        first = statistics.median(float(getattr(s, key)) for s in steady[:third])
        last = statistics.median(float(getattr(s, key)) for s in steady[-third:])
        allowed = max(absolute, relative * first)
        result[key] = {
            "first_third": round(first, 1),
            "last_third": round(last, 1),
            "growth": round(last - first, 1),
            "allowed": round(allowed, 1),
            "max": max(float(getattr(s, key)) for s in steady),
            "flat": last - first <= allowed,
        }
    return result


def render(figures: dict[str, Any]) -> str:
    """The human-readable report."""
    opts = figures["options"]
    lines = [
        f"soak: {opts['minutes']} min at {opts['rate']:g} msg/s over {opts['devices']} devices, "
        f"a fault every {opts['fault_every_s']:g} s",
        "",
        f"{'t (s)':>7} {'RSS MB':>8} {'tasks':>6} {'fds':>5} {'received':>10} "
        f"{'forwarded':>10} {'coalesced':>10} {'failed':>7} {'dropped':>8} {'pending':>8}  mqtt",
    ]
    for s in figures["samples"]:
        lines.append(
            f"{s['t']:>7.0f} {s['rss_mb']:>8.1f} {s['tasks']:>6} {s['fds']:>5} "
            f"{s['received']:>10} {s['forwarded']:>10} {s['coalesced']:>10} {s['failed']:>7} "
            f"{s['dropped']:>8} {s['pending']:>8}  {s['mqtt']}"
        )
    lines += [
        "",
        f"flat after {opts['warmup_s']:g} s warm-up (median of the first vs the last third):",
    ]
    for key, verdict in figures["flat"].items():
        if verdict["flat"] is None:
            lines.append(f"  {key:7} n/a ({verdict['reason']})")
            continue
        word = "FLAT" if verdict["flat"] else "GROWING"
        lines.append(
            f"  {key:7} {verdict['first_third']:>8} -> {verdict['last_third']:>8} "
            f"(growth {verdict['growth']:+}, allowed {verdict['allowed']}, "
            f"max {verdict['max']:g}) {word}"
        )
    lines += ["", "faults (recovered = every device fresh in twinzo, s after the fault ended):"]
    for f in figures["faults"]:
        extra = f" {f['detail']}" if f["detail"] else ""
        lines.append(
            f"  t={f['at_s']:>6.0f}s {f['kind']:8} lasted {f['lasted_s']:>5.1f}s "
            f"recovered {f['recovered_s']}{extra}"
        )
    c = figures["counters"]
    lines += [
        "",
        f"publisher: {figures['published']}",
        f"counters: received {c['received']} = sum(outcomes) {c['sum_outcomes']}, "
        f"pending {c['pending']}: {'ADDS UP' if c['adds_up'] else 'DOES NOT ADD UP'}",
        f"  outcomes: {c['outcomes']}",
        f"  MQTT connects: {c['connects']}; log lines by level: {figures['log_lines']}",
    ]
    lines.extend(f"  {w}" for w in figures["mqtt_warnings"][:12])
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options of the soak (and of its publisher child)."""
    if argv[:1] == ["publish"]:
        child = argparse.ArgumentParser(prog="soak.py publish")
        child.add_argument("--port", type=int, required=True)
        child.add_argument("--devices", type=int, default=100)
        child.add_argument("--rate", type=float, default=1000.0)
        child.add_argument("--seconds", type=float, default=600.0)
        args = child.parse_args(argv[1:])
        args.mode = "publish"
        return args
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="msg/s offered")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--fault-s", type=float, default=10.0, help="how long a fault lasts")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--timeout-s", type=float, default=2.0, help="twinzo client timeout")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.mode = "soak"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak (or, as a child, the publisher)."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.mode == "publish":
        return _publisher_main(opts)
    import tempfile

    # The stand-in logs every request a client abandoned during the latency fault.
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        broker = BenchBroker(Path(scratch) / "mosquitto").start()
        try:
            figures = asyncio.run(Soak(opts, broker).run())
        finally:
            broker.stop()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(render(figures))
    print(f"\nwritten: {opts.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
