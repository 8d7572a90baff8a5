"""Bridge benchmark: raw MQTT ceiling, pipeline intake, the replaced design, latency.

One invocation starts a private mosquitto on a free 127.0.0.1 port and, for the
bridge phases, the in-package twinzo sandbox, then measures:

1. raw       a bare aiomqtt subscriber's receive rate for a QoS 0 burst (the ceiling);
2. intake    the same burst into a real `Bridge` (HiTech, 50 mapped devices, sandbox
             as twinzo in the same event loop): messages handled per second;
3. baseline  paho-mqtt callbacks calling `requests.post` per message (the design the
             bridge replaces) at a fixed offered load: forwarded msg/s and lag growth;
4. latency   1,000 msg/s over 50 devices: publish → sandbox latency of the forwarded
             positions, p99 per 10 s window, publish → visible (every message, until a
             position as new is accepted), and the bridge's counters after drain.

The sandbox shares the bridge's event loop, as in the demo; its cost is part of the
figures. With ``--sandbox-process`` the latency phase runs the same sandbox in a child
process instead (``bench/sandbox_child.py``; real twinzo is remote), computes the same
figures from the accepted locations the child hands back, and the bridge process's CPU
then counts the bridge only. The baseline runs in its own process, so it gets a core
the bridge does not: the intake / baseline ratio is conservative.

Publishers (paho-mqtt) and the baseline run as child processes (``bench/_common.py``)
so they never compete for the event loop under test. Figures go to stdout and to
``bench/results/bench_bridge.json``. Targets are reported, never enforced: the exit
status is 0 whenever the benchmark itself ran.

raw and intake run `--repeat` times (default 3), alternating, and the median is kept.

    .venv/bin/python bench/bench_bridge.py            # full: 100k burst, 60 s latency
    .venv/bin/python bench/bench_bridge.py --quick    # 10 s latency run
    .venv/bin/python bench/bench_bridge.py --batch    # plant in /v3/localization/batch mode
    .venv/bin/python bench/bench_bridge.py --phases intake --profile   # cProfile intake
    .venv/bin/python bench/bench_bridge.py --phases latency --sandbox-process   # remote-like
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import httpx
from _common import (
    TOPIC_FILTER,
    BenchBroker,
    device_ids,
    percentile,
)
from sandbox_child import (
    SANDBOX_API_KEY,
    SANDBOX_PASSWORD,
    TWINZO_CLIENT,
    RemoteSandbox,
    final_json,
    new_sandbox,
)

from dtp_console.bridge import poster as poster_module
from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import ConsoleConfig, TwinzoConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient
from dtp_console.twinzo.http import twinzo_http_client
from dtp_console.twinzo.sandbox import AcceptedLocation, SandboxStats, TwinzoSandbox

BENCH_DIR = Path(__file__).resolve().parent
COMMON = BENCH_DIR / "_common.py"
RESULTS = BENCH_DIR / "results" / "bench_bridge.json"

#: A phase gives up when nothing new arrived for this long after its publisher ended.
IDLE_GIVE_UP_S = 3.0
SAMPLE_EVERY_S = 0.25


# -- child processes ----------------------------------------------------------------------


class Child:
    """A `_common.py` child: waits for READY, then for its final JSON line. Stopped by PID."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name

    @classmethod
    async def start(cls, name: str, *args: str, ready_timeout: float = 20.0) -> Child:
        """Start ``python bench/_common.py ARGS`` and wait until it prints READY."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(COMMON), *args, stdout=asyncio.subprocess.PIPE
        )
        child = cls(process, name)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(ready_timeout):
                while (line := await process.stdout.readline()) and line.strip() != b"READY":
                    pass
        except TimeoutError:
            await child.stop()
            raise
        if not line:
            await child.stop()
            msg = f"{name} exited before it was ready (rc={process.returncode})"
            raise RuntimeError(msg)
        return child

    async def result(self, limit_s: float) -> dict[str, Any]:
        """The child's JSON result; stops it (by PID) if it overruns `limit_s`."""
        return await final_json(self.process, self.name, limit_s, self.stop)

    async def stop(self) -> None:
        """Terminate this child (only this PID), then kill it if it lingers."""
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(5):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def publisher_args(
    port: int, devices: int, *, messages: int = 0, rate: float = 0.0, seconds: float = 0.0
) -> list[str]:
    """Arguments of a burst (`messages`) or paced (`rate` for `seconds`) publisher child."""
    args = ["publish", "--port", str(port), "--devices", str(devices)]
    if rate > 0:
        return [*args, "--rate", str(rate), "--seconds", str(seconds)]
    return [*args, "--messages", str(messages)]


# -- tallies ------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """How many messages were seen, and when the first and last one were."""

    count: int = 0
    first: float = 0.0
    last: float = 0.0

    def hit(self) -> None:
        """Count one message now."""
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.last = now
        self.count += 1

    @property
    def rate(self) -> float:
        """Messages per second from the first to the last one."""
        span = self.last - self.first
        return (self.count - 1) / span if self.count > 1 and span > 0 else 0.0


class TimedBridge(Bridge):
    """A `Bridge` that also counts when each message got its outcome or outbox place."""

    tally: Tally

    def handle(self, topic: str, payload: bytes, now: float | None = None) -> str:
        """`Bridge.handle`, then one tick of the tally."""
        outcome = super().handle(topic, payload, now)
        self.tally.hit()
        return outcome


@dataclass
class Samples:
    """Periodic samples of a phase: elapsed seconds and named counters."""

    rows: list[dict[str, float]] = field(default_factory=list)

    async def run(self, probe: Callable[[], dict[str, float]]) -> None:
        """Sample `probe` every `SAMPLE_EVERY_S` until cancelled."""
        started = time.perf_counter()
        while True:
            self.rows.append({"t": round(time.perf_counter() - started, 3), **probe()})
            await asyncio.sleep(SAMPLE_EVERY_S)


async def wait_until_idle(
    tally: Tally, target: Callable[[], int | None], deadline_s: float
) -> None:
    """Wait until `tally` reaches `target()` (None while unknown), stalls, or the deadline."""
    deadline = time.monotonic() + deadline_s
    seen, seen_at = -1, time.monotonic()
    while time.monotonic() < deadline:
        goal = target()
        if goal is not None and tally.count >= goal:
            return
        if tally.count != seen:
            seen, seen_at = tally.count, time.monotonic()
        elif goal is not None and time.monotonic() - seen_at > IDLE_GIVE_UP_S:
            return
        await asyncio.sleep(0.05)


# -- broker helpers -----------------------------------------------------------------------


class DropWatch:
    """Follows mosquitto's ``$SYS/broker/publish/messages/dropped`` for the whole run.

    One subscriber from start to end: mosquitto publishes the counter only when it
    changes, and its retained copy expires after 60 s, so a late one-off read can
    find nothing.
    """

    TOPIC = "$SYS/broker/publish/messages/dropped"

    def __init__(self, port: int) -> None:
        self.port = port
        self.value: int | None = None
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._heard = asyncio.Event()

    async def start(self) -> None:
        """Subscribe and wait (briefly) for the current value."""
        self._task = asyncio.create_task(self._follow(), name="drop-watch")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await self._heard.wait()

    async def stop(self) -> None:
        """Wait for one more $SYS interval so a late drop is seen, then unsubscribe."""
        await asyncio.sleep(1.5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        try:
            async with aiomqtt.Client(
                "127.0.0.1", self.port, identifier=f"bench-sys-{os.getpid()}"
            ) as client:
                await client.subscribe(self.TOPIC)
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes | bytearray | str):
                        self.value = int(payload)
                        self._heard.set()
        except (aiomqtt.MqttError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._heard.set()


def mosquitto_version() -> str:
    """``mosquitto version X`` as the broker reports it."""
    try:
        done = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "mosquitto"
    return (
        (done.stdout or done.stderr).splitlines()[0].strip()
        if (done.stdout or done.stderr)
        else "mosquitto"
    )


# -- configuration ------------------------------------------------------------------------


def bench_config(opts: argparse.Namespace, port: int, sandbox: Sandbox) -> ConsoleConfig:
    """The console config of the bridge phases: one HiTech plant of `opts.devices` robots."""
    # Batch mode has no device token to learn the branch from: name the sandbox's.
    branch = sandbox.branch_guid if opts.batch else None
    devices = device_ids(opts.devices)
    return ConsoleConfig.model_validate(
        {
            "twinzo": {
                "client": TWINZO_CLIENT,
                "password": SANDBOX_PASSWORD,
                "api_key": SANDBOX_API_KEY,
                "flush_interval_ms": opts.flush_interval_ms,
            },
            "plants": [
                {
                    "name": "Bench",
                    "format": "hitech",
                    "broker": {
                        "host": "127.0.0.1",
                        "port": port,
                        "topics": [TOPIC_FILTER],
                        "qos": 0,
                        "queue_size": 200_000,
                    },
                    "device_map": {d: d.replace("amr-", "bench-") for d in devices},
                    "twinzo": {"sector_id": 1, "batch": opts.batch, "branch": branch},
                    "min_post_interval_ms": opts.min_post_interval_ms,
                }
            ],
        }
    )


class Sandbox(Protocol):
    """What the phases read of a sandbox: `TwinzoSandbox` in-process, or `RemoteSandbox`."""

    @property
    def url(self) -> str:
        """The base URL."""
        ...

    @property
    def branch_guid(self) -> str:
        """The branch GUID authenticate returns."""
        ...

    @property
    def stats(self) -> SandboxStats:
        """The endpoint counters (a `RemoteSandbox`'s once collected)."""
        ...

    def locations(self, login: str | None = None) -> list[AcceptedLocation]:
        """Accepted locations in arrival order (a `RemoteSandbox`'s once collected)."""
        ...


@dataclass
class BridgeRig:
    """A running `TimedBridge` against a sandbox, plus what the phase needs to stop it."""

    bridge: TimedBridge
    config: ConsoleConfig
    stop: asyncio.Event
    task: asyncio.Task[None]


def http_client(opts: argparse.Namespace, twinzo: TwinzoConfig) -> httpx.AsyncClient:
    """The shared client of the transport under test: the runtime's (aiohttp) or httpcore's."""
    if opts.current_transport == "aiohttp":
        return twinzo_http_client(twinzo, user_agent="dtp-console/bench")
    # httpcore's pool, as the runtime had it: max_connections = 2 x max_concurrency.
    limits = httpx.Limits(max_connections=opts.http_max_connections or twinzo.max_concurrency * 2)
    return httpx.AsyncClient(timeout=twinzo.timeout_s, limits=limits)


@contextlib.asynccontextmanager
async def running_bridge(
    opts: argparse.Namespace, sandbox: Sandbox, port: int
) -> AsyncIterator[BridgeRig]:
    """Start a bridge like the runtime does (shared httpx client, warm tokens); stop + drain."""
    config = bench_config(opts, port, sandbox)
    plant, twinzo = config.plants[0], config.twinzo
    async with http_client(opts, twinzo) as http:
        client = TwinzoClient(http, twinzo, base_url=sandbox.url)
        # A long-running console holds valid tokens; keep 50 first logins out of the figures.
        # One at a time: 50 concurrent logins would leave 50 pooled connections behind,
        # and httpcore's pool costs grow with its size (see the report).
        password = twinzo.password.get_secret_value()
        for login in plant.device_map.values():
            await client.tokens.get(login, password)
        bridge = TimedBridge(
            plant,
            twinzo,
            client,
            PlantState(plant.name),
            OpsLog(Bus()),
            address=("127.0.0.1", port),
            log_every_n=10**9,
        )
        bridge.tally = Tally()
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop), name="bench-bridge")
        try:
            async with asyncio.timeout(10):
                while bridge.state.mqtt != "connected":
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
            yield BridgeRig(bridge, config, stop, task)
        finally:
            stop.set()
            await task


def counters_check(state: PlantState) -> dict[str, Any]:
    """The bridge's accounting after drain: received == sum(outcomes), nothing pending."""
    counters = state.counters
    total = counters.outcomes.total()
    return {
        "received": counters.received,
        "sum_outcomes": total,
        "pending": counters.pending,
        "adds_up": counters.received == total and counters.pending == 0,
        "outcomes": dict(sorted(counters.outcomes.items())),
    }


# -- phases -------------------------------------------------------------------------------


async def phase_raw(opts: argparse.Namespace, port: int) -> dict[str, Any]:
    """A bare aiomqtt subscriber counting a burst: the ceiling."""
    tally = Tally()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-raw-{os.getpid()}") as client:
        await client.subscribe(TOPIC_FILTER, qos=0)

        async def consume() -> None:
            async for _message in client.messages:
                tally.hit()
                if tally.count >= opts.messages:
                    return

        consumer = asyncio.create_task(consume(), name="raw-consumer")
        try:
            publisher = await Child.start(
                "raw publisher", *publisher_args(port, opts.devices, messages=opts.messages)
            )
            pub = await publisher.result(limit_s=300)
            published = int(pub["published"])
            await wait_until_idle(tally, lambda: published, deadline_s=300)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
    return {
        "published": pub["published"],
        "publisher_rate": pub["rate"],
        "received": tally.count,
        "seconds": round(tally.last - tally.first, 3),
        "rate": round(tally.rate, 1),
    }


async def phase_intake(opts: argparse.Namespace, port: int) -> dict[str, Any]:
    """The same burst into a real bridge; intake = handled / (last handled - first handled)."""
    samples = Samples()
    profiler = cProfile.Profile() if opts.profile else None
    async with new_sandbox() as sandbox, running_bridge(opts, sandbox, port) as rig:
        bridge = rig.bridge
        counters = bridge.state.counters

        def probe() -> dict[str, float]:
            return {
                "received": counters.received,
                "handled": bridge.tally.count,
                "outcomes": counters.outcomes.total(),
                "sandbox_accepted": sandbox.stats.accepted,
            }

        sampler = asyncio.create_task(samples.run(probe), name="intake-sampler")
        if profiler is not None:
            profiler.enable()
        try:
            publisher = await Child.start(
                "intake publisher", *publisher_args(port, opts.devices, messages=opts.messages)
            )
            pub = await publisher.result(limit_s=300)
            published = int(pub["published"])
            await wait_until_idle(bridge.tally, lambda: published, deadline_s=300)
        finally:
            if profiler is not None:
                profiler.disable()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        tally = bridge.tally
    # Leaving the context stopped the bridge and drained its outbox.
    backlog = max((row["received"] - row["handled"] for row in samples.rows), default=0)
    result: dict[str, Any] = {
        "published": pub["published"],
        "publisher_rate": pub["rate"],
        "handled": tally.count,
        "seconds": round(tally.last - tally.first, 3),
        "rate": round(tally.rate, 1),
        "max_mqtt_backlog": int(backlog),
        "localization_requests": localization_requests(sandbox),
        "sandbox_accepted": sandbox.stats.accepted,
        "counters": counters_check(bridge.state),
        "samples": samples.rows,
    }
    if profiler is not None:
        result["profile_top"] = profile_summary(profiler)
    return result


async def phase_intake_nodefer(opts: argparse.Namespace, port: int) -> dict[str, Any]:
    """`intake` with the poster's burst deferral switched off (flushes never skipped)."""
    saved = poster_module.INTAKE_BACKLOG_DEFER, poster_module.MAX_DEFER_S
    poster_module.INTAKE_BACKLOG_DEFER, poster_module.MAX_DEFER_S = 10**12, 0.0
    try:
        return await phase_intake(opts, port)
    finally:
        poster_module.INTAKE_BACKLOG_DEFER, poster_module.MAX_DEFER_S = saved


def localization_requests(sandbox: Sandbox) -> int:
    """Requests the sandbox served other than authentication and token refresh."""
    stats = sandbox.stats
    return stats.requests - stats.auth_calls.total() - stats.refresh_calls


def profile_summary(profiler: cProfile.Profile, top: int = 30) -> str:
    """The top functions by own time, as pstats prints them."""
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    profile_path = RESULTS.with_name("bench_bridge_intake.pstats")
    profile_path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(profile_path)
    return out.getvalue()


async def phase_baseline(opts: argparse.Namespace, port: int) -> dict[str, Any]:
    """paho-mqtt + requests.post per message, fed `baseline_rate` msg/s for `baseline_seconds`."""
    logins = ",".join(d.replace("amr-", "bench-") for d in device_ids(opts.devices))
    async with new_sandbox() as sandbox:
        baseline = await Child.start(
            "baseline",
            "baseline",
            "--port", str(port),
            "--devices", str(opts.devices),
            "--url", sandbox.url,
            "--client", TWINZO_CLIENT,
            "--password", SANDBOX_PASSWORD,
            "--api-key", SANDBOX_API_KEY,
            "--logins", logins,
            # Room for the publisher to start; the run is bounded, the backlog never drained.
            "--seconds", str(opts.baseline_seconds + 1.5),
        )  # fmt: skip
        try:
            publisher = await Child.start(
                "baseline publisher",
                *publisher_args(
                    port, opts.devices, rate=opts.baseline_rate, seconds=opts.baseline_seconds
                ),
            )
            pub = await publisher.result(limit_s=opts.baseline_seconds + 60)
            base = await baseline.result(limit_s=opts.baseline_seconds + 60)
        finally:
            await baseline.stop()
        accepted = sandbox.stats.accepted
    windows = [w for w in base["windows"] if w["lag_p50_ms"] is not None]
    return {
        "offered_rate": opts.baseline_rate,
        "offered_seconds": opts.baseline_seconds,
        "published": pub["published"],
        "publisher_rate": pub["rate"],
        "handled": base["handled"],
        "forwarded": base["forwarded"],
        "sandbox_accepted": accepted,
        "backlog_at_stop": pub["published"] - base["handled"],
        "rate": base["rate"],
        "lag_first_window_ms": windows[0]["lag_p50_ms"] if windows else None,
        "lag_last_window_ms": windows[-1]["lag_p50_ms"] if windows else None,
        "lag_growth_s_per_s": lag_growth(windows),
        "failures": base["failures"],
        "windows": base["windows"],
    }


def lag_growth(windows: list[dict[str, Any]]) -> float | None:
    """How many seconds of lag each second adds, from the first to the last 1-s window."""
    if len(windows) < 2:
        return None
    first, last = windows[0], windows[-1]
    elapsed = float(last["second"] - first["second"])
    return round((float(last["lag_p50_ms"]) - float(first["lag_p50_ms"])) / 1000 / elapsed, 2)


@contextlib.asynccontextmanager
async def latency_sandbox(
    opts: argparse.Namespace, directory: Path, max_recorded: int
) -> AsyncIterator[TwinzoSandbox | RemoteSandbox]:
    """The latency phase's sandbox: in the bridge's event loop, or a child process."""
    if opts.sandbox_process:
        records = directory / "accepted.json"
        async with await RemoteSandbox.start(records, max_recorded=max_recorded) as remote:
            yield remote
        return
    async with new_sandbox(max_recorded=max_recorded) as sandbox:
        yield sandbox


async def phase_latency(opts: argparse.Namespace, port: int) -> dict[str, Any]:
    """Paced load into a bridge; publish → sandbox latency from the sandbox's own records."""
    seconds = opts.duration
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        sent_file = Path(tmp) / "sent.json"
        async with latency_sandbox(opts, Path(tmp), max_recorded=2_000_000) as sandbox:
            async with running_bridge(opts, sandbox, port) as rig:
                bridge, config = rig.bridge, rig.config
                plant = config.plants[0]
                args = publisher_args(port, opts.devices, rate=opts.latency_rate, seconds=seconds)
                # This process's CPU under load: warm-up logins before, analysis after, left out.
                load_cpu = time.process_time()
                publisher = await Child.start(
                    "latency publisher", *args, "--record", str(sent_file)
                )
                pub = await publisher.result(limit_s=seconds + 120)
                published = int(pub["published"])
                await wait_until_idle(bridge.tally, lambda: published, deadline_s=30)
                # Let the last positions go out at the normal cadence; what the drain at
                # stop still posts is shutdown, not load, and is left out of the figures.
                cadence_ms = config.twinzo.flush_interval_ms + plant.min_post_interval_ms
                await asyncio.sleep(max(1.0, 5 * cadence_ms / 1000))
                stopped_at = time.time()
            # The bridge has stopped and drained, and its HTTP client is closed.
            load_cpu = time.process_time() - load_cpu
            if isinstance(sandbox, RemoteSandbox):
                await sandbox.collect()
            everything = sandbox.locations()
            locations = [loc for loc in everything if loc.received_at < stopped_at]
            requests = localization_requests(sandbox)
            poster_ms = list(bridge.poster.latencies_ms)
        sent: list[list[int]] = json.loads(sent_file.read_text())
    visible, never_visible = visibility(sent, locations, plant.device_map)
    coverage = per_robot_coverage(sent, locations, plant.device_map)
    latencies = [(loc.received_at * 1000.0 - loc.timestamp) for loc in locations]
    start_ms = min((loc.timestamp for loc in locations), default=0)
    # Each robot's final positions have no newer one to replace them, so they wait out
    # the whole post cadence: the end of the load, not growth. The windows (and so the
    # growth verdict) leave out the last 2 cadences; the overall figures keep them.
    tail_from = max((ts for _, ts in sent), default=0) - 2 * cadence_ms
    tail: list[float] = []
    by_window: dict[int, list[float]] = {}
    for loc, lat in zip(locations, latencies, strict=True):
        if loc.timestamp > tail_from:
            tail.append(lat)
            continue
        index = int((loc.timestamp - start_ms) // (opts.window * 1000))
        by_window.setdefault(index, []).append(lat)
    windows = [
        {
            "window": index,
            "from_s": index * opts.window,
            "count": len(values),
            "p50_ms": round(percentile(values, 50), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1),
        }
        for index, values in sorted(by_window.items())
    ]
    target = config.twinzo.flush_interval_ms + 100
    return {
        "rate": opts.latency_rate,
        "seconds": seconds,
        "devices": opts.devices,
        "sandbox": sandbox_text(opts),
        "sandbox_cpu_s": sandbox.cpu_s if isinstance(sandbox, RemoteSandbox) else None,
        "load_cpu_s": round(load_cpu, 2),
        "flush_interval_ms": config.twinzo.flush_interval_ms,
        "min_post_interval_ms": plant.min_post_interval_ms,
        "published": pub["published"],
        "publisher_rate": pub["rate"],
        "accepted": len(locations),
        "accepted_in_drain": len(everything) - len(locations),
        "localization_requests": requests,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else math.nan,
        "target_p99_ms": target,
        "visible_p50_ms": round(percentile(visible, 50), 1),
        "visible_p99_ms": round(percentile(visible, 99), 1),
        "visible_max_ms": round(max(visible), 1) if visible else math.nan,
        "never_visible": never_visible,
        "per_robot": coverage,
        "receive_to_accept_p50_ms": round(percentile(poster_ms, 50), 1),
        "receive_to_accept_p99_ms": round(percentile(poster_ms, 99), 1),
        "windows": windows,
        "tail_ms": 2 * cadence_ms,
        "tail_count": len(tail),
        "tail_p99_ms": round(percentile(tail, 99), 1) if tail else None,
        "p99_slope_ms_per_min": round(slope_per_minute(windows, opts.window), 2),
        "counters": counters_check(bridge.state),
    }


def sandbox_text(opts: argparse.Namespace) -> str:
    """Where the latency phase's sandbox ran, as the header and the JSON say it."""
    if opts.sandbox_process:
        return "child process (the bridge's CPU figures exclude its server)"
    return "same event loop as the bridge (its server CPU counts as the bridge's)"


def per_robot_coverage(
    sent: list[list[int]], locations: list[AcceptedLocation], device_map: dict[str, str]
) -> dict[str, Any]:
    """Per robot: reports published vs positions accepted.

    A robot reporting slower than flush + min post interval should have every report
    posted; `all_posted` counts the robots for which that held, `worst_ratio` is the
    lowest accepted/published share of any robot (coalescing lowers it at high rates).
    """
    logins = [device_map[vendor] for vendor in device_ids(len(device_map))]
    published: dict[str, int] = {}
    for index, _ts in sent:
        published[logins[index]] = published.get(logins[index], 0) + 1
    accepted: dict[str, int] = {}
    for loc in locations:
        accepted[loc.login] = accepted.get(loc.login, 0) + 1
    ratios = [accepted.get(login, 0) / count for login, count in published.items()]
    return {
        "robots": len(published),
        "all_posted": sum(1 for login, n in published.items() if accepted.get(login, 0) >= n),
        "worst_ratio": round(min(ratios), 3) if ratios else None,
    }


def visibility(
    sent: list[list[int]], locations: list[AcceptedLocation], device_map: dict[str, str]
) -> tuple[list[float], int]:
    """Publish → visible latency of every message, coalesced ones included.

    A message is visible once twinzo accepted a position of its device at least as
    new; that is what an operator watching twinzo sees. Returns the latencies (ms)
    and how many messages never became visible before the stop.
    """
    logins = [device_map[vendor] for vendor in device_ids(len(device_map))]
    accepted: dict[str, list[tuple[int, float]]] = {}
    for loc in locations:
        accepted.setdefault(loc.login, []).append((loc.timestamp, loc.received_at))
    # One request in flight per device: a device's acceptances arrive in timestamp order.
    stamps = {login: [ts for ts, _ in rows] for login, rows in accepted.items()}
    latencies: list[float] = []
    missing = 0
    for index, ts in sent:
        login = logins[index]
        found = bisect.bisect_left(stamps.get(login, []), ts)
        if found == len(stamps.get(login, [])):
            missing += 1
            continue
        latencies.append(accepted[login][found][1] * 1000.0 - ts)
    return latencies, missing


def slope_per_minute(windows: list[dict[str, Any]], window_s: float) -> float:
    """Least-squares slope of the per-window p99, in ms per minute (0 with < 2 windows)."""
    # A last window with less than half the usual count is a partial one: leave it out.
    counts = sorted(w["count"] for w in windows)
    partial = len(windows) > 2 and windows[-1]["count"] < counts[len(counts) // 2] / 2
    full = windows[:-1] if partial else windows
    if len(full) < 2:
        return 0.0
    xs = [w["window"] * window_s / 60.0 for w in full]
    ys = [float(w["p99_ms"]) for w in full]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


# -- report -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """What a row says about its target."""
    return "OK" if ok else "MISSED"


def render(results: dict[str, Any]) -> str:
    """The human table."""
    rows: list[tuple[str, str, str, str]] = []
    raw, intake = results.get("raw"), results.get("intake")
    base, lat = results.get("baseline"), results.get("latency")
    if raw:
        rows.append((
            "raw aiomqtt receive",
            f"{raw['rate']:,.0f} msg/s ({raw['received']:,}/{raw['published']:,} arrived; "
            f"publisher {raw['publisher_rate'] / 1000:.0f}k msg/s{runs_text(raw)})",
            "ceiling",
            "",
        ))  # fmt: skip
    if intake:
        rows.append((
            "pipeline intake",
            f"{intake['rate']:,.0f} msg/s ({intake['handled']:,}/{intake['published']:,} handled; "
            f"{intake['localization_requests']:,} POSTs; max backlog "
            f"{intake['max_mqtt_backlog']:,}{runs_text(intake)})",
            "",
            "",
        ))  # fmt: skip
        if raw and raw["rate"] > 0:
            ratio = intake["rate"] / raw["rate"]
            rows.append(("intake / raw", f"{ratio:.0%}", "≥ 75%", verdict(ratio >= 0.75)))
        c = intake["counters"]
        rows.append((
            "intake counters after drain",
            f"received {c['received']:,} = outcomes {c['sum_outcomes']:,}, pending {c['pending']}",
            "exact",
            verdict(c["adds_up"]),
        ))  # fmt: skip
    if base:
        rows.append((
            "baseline forwarded",
            f"{base['rate']:,.0f} msg/s at {base['offered_rate']:,.0f} offered for "
            f"{base['offered_seconds']:g} s; backlog {base['backlog_at_stop']:,} at stop",
            "< 1,000",
            "",
        ))  # fmt: skip
        rows.append((
            "baseline lag (p50, 1st → last s)",
            f"{fmt_ms(base['lag_first_window_ms'])} → {fmt_ms(base['lag_last_window_ms'])}"
            f"{growth_text(base['lag_growth_s_per_s'])}",
            "",
            "",
        ))  # fmt: skip
        if intake and base["rate"] > 0:
            times = intake["rate"] / base["rate"]
            rows.append(("intake / baseline", f"{times:.1f}×", "≥ 15×", verdict(times >= 15)))
    if lat:
        rows.append((
            "latency publish → sandbox",
            f"p50 {lat['p50_ms']:.0f} / p99 {lat['p99_ms']:.0f} / max {lat['max_ms']:.0f} ms "
            f"({lat['accepted']:,} accepted of {lat['published']:,} published, "
            f"{lat['accepted_in_drain']} in the drain; "
            f"{lat['rate']:g} msg/s, {lat['seconds']:g} s)",
            f"p99 ≤ {lat['target_p99_ms']} ms",
            verdict(lat["p99_ms"] <= lat["target_p99_ms"]),
        ))  # fmt: skip
        rows.append((
            "publish → visible in twinzo",
            f"p50 {lat['visible_p50_ms']:.0f} / p99 {lat['visible_p99_ms']:.0f} / "
            f"max {lat['visible_max_ms']:.0f} ms (every message, coalesced ones included: "
            f"until a position as new is accepted; {lat['never_visible']} never)",
            "",
            "",
        ))  # fmt: skip
        robots = lat["per_robot"]
        rows.append((
            "robots with every report posted",
            f"{robots['all_posted']:,} of {robots['robots']:,} "
            f"(worst robot: {robots['worst_ratio']} of its reports accepted)",
            "",
            "",
        ))  # fmt: skip
        p99s = " ".join(f"{w['p99_ms']:.0f}" for w in lat["windows"])
        growing = (
            lat["p99_slope_ms_per_min"] > 10
            and max((w["p99_ms"] for w in lat["windows"]), default=0) > lat["target_p99_ms"]
        )
        rows.append((
            "p99 per 10 s window (ms)",
            f"{p99s}  (slope {lat['p99_slope_ms_per_min']:+.1f} ms/min; final "
            f"{lat['tail_ms']} ms left out: {lat['tail_count']} positions, "
            f"p99 {fmt_ms(lat['tail_p99_ms'])})",
            "not growing",
            verdict(not growing),
        ))  # fmt: skip
        rows.append((
            "flush / min post interval",
            f"{lat['flush_interval_ms']} ms / {lat['min_post_interval_ms']} ms "
            f"(receive → accepted p50 {lat['receive_to_accept_p50_ms']:.0f} / "
            f"p99 {lat['receive_to_accept_p99_ms']:.0f} ms)",
            "",
            "",
        ))  # fmt: skip
        c = lat["counters"]
        rows.append((
            "latency counters after drain",
            f"received {c['received']:,} = outcomes {c['sum_outcomes']:,}, pending {c['pending']}",
            "exact",
            verdict(c["adds_up"] and c["received"] == lat["published"]),
        ))  # fmt: skip
        outcomes = ", ".join(f"{k} {v:,}" for k, v in c["outcomes"].items())
        rows.append(("latency outcomes", outcomes, "", ""))
    dropped = results.get("broker_dropped")
    rows.append(
        (
            "mosquitto dropped ($SYS)",
            f"n/a ({results.get('broker_dropped_error')})" if dropped is None else f"{dropped:,}",
            "0",
            "" if dropped is None else verdict(dropped == 0),
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    widths[1] = min(widths[1], 96)
    head = results["environment"]
    lines = [
        f"dtp-console bridge benchmark — {head['mosquitto']}, {head['cpus']} CPUs, "
        f"Python {head['python']}, {head['devices']} devices",
        f"bridge: {'batch' if head['batch'] else 'single'} posting, flush "
        f"{head['flush_interval_ms']} ms, min post interval {head['min_post_interval_ms']} ms, "
        f"httpx pool {head['http_max_connections']}",
        f"latency phase sandbox: {head['latency_sandbox']}; other phases: in the bridge's loop",
        "",
    ]
    for name, figure, target, mark in rows:
        lines.append(
            f"{name:<{widths[0]}}  {figure:<{widths[1]}}  {target:<{widths[2]}}  {mark}".rstrip()
        )
    return "\n".join(lines)


def growth_text(growth: float | None) -> str:
    """` (+0.55 s per s)`, or nothing when unknown."""
    return "" if growth is None else f" ({growth:+.2f} s per s)"


def runs_text(result: dict[str, Any]) -> str:
    """`; runs a/b/c` (the median is shown) when a phase ran more than once."""
    rates = result.get("runs_rate") or []
    if len(rates) < 2:
        return ""
    return "; runs " + "/".join(f"{r / 1000:.1f}k" for r in rates)


def fmt_ms(value: float | None) -> str:
    """Milliseconds in a human unit."""
    if value is None:
        return "n/a"
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


# -- main ---------------------------------------------------------------------------------


PHASES = ("raw", "intake", "intake_nodefer", "baseline", "latency")
#: What runs unless --phases says otherwise (`intake_nodefer` is the deferral A/B).
DEFAULT_PHASES = ("raw", "intake", "baseline", "latency")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000, help="burst size for raw/intake")
    parser.add_argument("--duration", type=float, default=60.0, help="latency run, seconds")
    parser.add_argument("--quick", action="store_true", help="latency run of 10 s")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument(
        "--repeat", type=int, default=3, help="raw/intake runs (alternating); the median is kept"
    )
    parser.add_argument("--latency-rate", type=float, default=1_000.0, help="msg/s")
    parser.add_argument("--window", type=float, default=10.0, help="latency window, seconds")
    parser.add_argument("--baseline-rate", type=float, default=2_000.0, help="offered msg/s")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--flush-interval-ms", type=int, default=100)
    parser.add_argument("--min-post-interval-ms", type=int, default=100)
    parser.add_argument("--batch", action="store_true", help="post with /v3/localization/batch")
    parser.add_argument(
        "--http-max-connections",
        type=int,
        default=0,
        help="httpx pool size (default: the runtime's, 2 x twinzo.max_concurrency)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(DEFAULT_PHASES),
        help=f"comma-separated subset of {','.join(PHASES)}",
    )
    parser.add_argument(
        "--transport",
        choices=["both", "aiohttp", "httpx"],
        default="both",
        help="twinzo HTTP transport of the latency phase: aiohttp's (the runtime's), "
        "httpcore's (the old one), or both side by side (default)",
    )
    parser.add_argument(
        "--sandbox-process",
        action="store_true",
        help="latency phase: run the twinzo sandbox in a child process (bench/sandbox_child.py), "
        "as real twinzo is remote, so its server CPU is not charged to the bridge; "
        "default: in the bridge's event loop, as older figures were measured",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the intake phase")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results path")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.duration = 10.0
    opts.repeat = max(1, opts.repeat)
    opts.current_transport = "httpx" if opts.transport == "httpx" else "aiohttp"
    opts.phases = [p.strip() for p in opts.phases.split(",") if p.strip()]
    unknown = sorted(set(opts.phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(unknown)}")
    return opts


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    """Every chosen phase against one private broker."""
    results: dict[str, Any] = {
        "environment": {
            "mosquitto": mosquitto_version(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiomqtt": aiomqtt.__version__,
            "devices": opts.devices,
            "messages": opts.messages,
            "batch": opts.batch,
            "http_max_connections": opts.http_max_connections or "2 x max_concurrency",
            "flush_interval_ms": opts.flush_interval_ms,
            "min_post_interval_ms": opts.min_post_interval_ms,
            "latency_sandbox": sandbox_text(opts),
        },
        "started_at": time.time(),
    }
    phases: dict[str, Callable[[argparse.Namespace, int], Any]] = {
        "raw": phase_raw,
        "intake": phase_intake,
        "intake_nodefer": phase_intake_nodefer,
        "baseline": phase_baseline,
        "latency": phase_latency,
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp,
        BenchBroker(Path(tmp)) as broker,
    ):
        results["environment"]["broker_port"] = broker.port
        drops = DropWatch(broker.port)
        await drops.start()
        # raw and intake alternate `repeat` times so drift and neighbours' load hit both alike.
        bursts = [name for name in ("raw", "intake", "intake_nodefer") if name in opts.phases]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in bursts}
        for attempt in range(opts.repeat):
            for name in bursts:
                print(f"… {name} {attempt + 1}/{opts.repeat}", file=sys.stderr, flush=True)
                runs[name].append(await timed(phases[name], opts, broker.port))
        for name in bursts:
            results[name] = median_run(runs[name])
        for name in (p for p in PHASES if p in opts.phases and p not in bursts):
            if name == "latency" and opts.transport == "both":
                results["latency_by_transport"] = await latency_by_transport(opts, broker.port)
                results[name] = results["latency_by_transport"]["aiohttp"]
                continue
            print(f"… {name}", file=sys.stderr, flush=True)
            results[name] = await timed(phases[name], opts, broker.port)
        await drops.stop()
        results["broker_dropped"] = drops.value
        if drops.value is None:
            results["broker_dropped_error"] = drops.error or "no $SYS value received"
    results["targets"] = targets(results)
    return results


async def latency_by_transport(opts: argparse.Namespace, port: int) -> dict[str, Any]:
    """The latency phase once per twinzo transport, old first, in one run (same broker)."""
    out: dict[str, Any] = {}
    for transport in ("httpx", "aiohttp"):
        opts.current_transport = transport
        print(f"… latency ({transport} transport)", file=sys.stderr, flush=True)
        cpu = time.process_time()
        out[transport] = await timed(phase_latency, opts, port)
        used = time.process_time() - cpu
        requests = max(1, int(out[transport]["localization_requests"]))
        out[transport]["process_cpu_s"] = round(used, 2)
        out[transport]["cpu_ms_per_1000_posts"] = round(used * 1000 / requests * 1000, 1)
        load = float(out[transport]["load_cpu_s"])
        out[transport]["load_cpu_ms_per_1000_posts"] = round(load * 1000 / requests * 1000, 1)
    opts.current_transport = "aiohttp"
    return out


def render_transports(results: dict[str, Any]) -> str:
    """Old and new transport side by side (latency phase)."""
    both = results.get("latency_by_transport")
    if not both:
        return ""
    lines = [
        "\nlatency phase by twinzo transport (same run, same broker, same load):",
        f"{'transport':<10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'win p99 max':>12}"
        f" {'requests':>9} {'CPU ms/1k posts':>16} {'under load':>11} {'slope ms/min':>13}",
    ]
    for name in ("httpx", "aiohttp"):
        r = both[name]
        worst = max((w["p99_ms"] for w in r["windows"]), default=math.nan)
        lines.append(
            f"{name:<10} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {worst:>12}"
            f" {r['localization_requests']:>9} {r['cpu_ms_per_1000_posts']:>16}"
            f" {r['load_cpu_ms_per_1000_posts']:>11} {r['p99_slope_ms_per_min']:>13}"
        )
    old, new = both["httpx"], both["aiohttp"]
    if new["p99_ms"] and new["cpu_ms_per_1000_posts"]:
        lines.append(
            f"ratio httpx/aiohttp: p99 {old['p99_ms'] / new['p99_ms']:.2f}x, "
            f"CPU per post {old['cpu_ms_per_1000_posts'] / new['cpu_ms_per_1000_posts']:.2f}x"
        )
    lines.append(
        "CPU = this process over the whole phase (warm-up logins and analysis included); "
        "under load = publisher start to drained stop"
    )
    if old.get("sandbox_cpu_s") is not None:
        lines.append(
            f"sandbox child CPU, not in the figures above: httpx {old['sandbox_cpu_s']:.2f} s, "
            f"aiohttp {new['sandbox_cpu_s']:.2f} s (its whole life)"
        )
    return "\n".join(lines)


async def timed(
    phase: Callable[[argparse.Namespace, int], Any], opts: argparse.Namespace, port: int
) -> dict[str, Any]:
    """Run one phase and note its wall time."""
    started = time.perf_counter()
    result: dict[str, Any] = await phase(opts, port)
    result["wall_s"] = round(time.perf_counter() - started, 2)
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, with every run's rate beside it."""
    ordered = sorted(runs, key=lambda r: float(r["rate"]))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_rate"] = [r["rate"] for r in runs]
    return chosen


def targets(results: dict[str, Any]) -> dict[str, bool | None]:
    """Each target met (True), missed (False) or not measured (None)."""
    raw, intake = results.get("raw"), results.get("intake")
    base, lat = results.get("baseline"), results.get("latency")
    out: dict[str, bool | None] = {
        "intake_ge_75pct_raw": None,
        "intake_ge_15x_baseline": None,
        "latency_p99": None,
        "counters_add_up": None,
    }
    if raw and intake and raw["rate"]:
        out["intake_ge_75pct_raw"] = intake["rate"] >= 0.75 * raw["rate"]
    if base and intake and base["rate"]:
        out["intake_ge_15x_baseline"] = intake["rate"] >= 15 * base["rate"]
    if lat:
        out["latency_p99"] = lat["p99_ms"] <= lat["target_p99_ms"]
    checks = [r["counters"]["adds_up"] for r in (intake, lat) if r]
    if checks:
        out["counters_add_up"] = all(checks)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; 0 unless it could not run."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(run(opts))
    print(render(results))
    print(render_transports(results))
    nodefer, raw = results.get("intake_nodefer"), results.get("raw")
    if nodefer and raw and raw["rate"] and results.get("intake"):
        with_defer = results["intake"]
        print(
            f"\nburst deferral A/B: intake {with_defer['rate']:,.0f} msg/s "
            f"({with_defer['rate'] / raw['rate']:.0%} of raw, runs {with_defer['runs_rate']}) "
            f"with it, {nodefer['rate']:,.0f} msg/s ({nodefer['rate'] / raw['rate']:.0%} of raw, "
            f"runs {nodefer['runs_rate']}) without; raw {raw['rate']:,.0f} msg/s"
        )
    intake = results.get("intake") or {}
    if intake.get("profile_top"):
        print("\nintake phase, cProfile top functions by own time:\n")
        print(intake["profile_top"])
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults: {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
