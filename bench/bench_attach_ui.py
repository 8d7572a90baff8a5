"""Attached UIs at 1,000 msg/s: the service's intake and CPU, event→screen, bytes per UI.

One invocation, side by side (issue 21's measurement):

* the service: `dtp-console run --no-ui` in its own process (the sandbox as
  twinzo, the API on a free loopback port) fed by 100 HiTech robots × 10 Hz =
  1,000 msg/s: by default through a private mosquitto from `dtp-console simulate`
  in a process of its own, as robots are outside the service (`--broker embedded`:
  the embedded Python broker and the simulator inside the service, which then
  spend most of its CPU);
* phases with 0, 1 and 5 attached UIs, in rounds whose order alternates
  (0,1,5 then 5,1,0 …): the first attached UI is a real `RemoteEngine` driving
  the real App headless (`run_test`, 200×60, the plant's tab visible) in a child
  process; the other four are bare `RemoteEngine`s (replica and bus, no App) in
  one more child;
* the in-process console (the same config, `Engine` + App headless in a child)
  before and after the service rounds, while the service is not running.

Per phase: the plant's intake (received/s and Σ outcomes/s, from `/metrics`),
the service's CPU (`/proc/<pid>/stat`), the machine's steal (`/proc/stat`),
bytes/s per attached UI counted off the socket (aiohttp's protocol
`data_received`, before any decompression) and event→screen p50/p99.

Event→screen: for each robot on the visible tab, the age of its newest message
at the end of the first screen refresh that drew it — `now − last_message_at`
where `last_message_at` is the service's monotonic time of handling the message
(the same clock in every process of one host). In-process the App reads it off
the engine's state; attached, off the raw frame (before the client moves it onto
its clock). A message superseded before a refresh is not drawn and not counted.

Figures only; targets are printed beside them, nothing asserts on time.

    .venv/bin/python bench/bench_attach_ui.py                     # 2 rounds, 8 s phases
    .venv/bin/python bench/bench_attach_ui.py --rounds 3 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchBroker, hitech_bench_plant, percentile

from devtools.ports import free_port, wait_port
from dtp_console.api.tokens import hash_token

RESULTS = Path(__file__).parent / "results" / "bench_attach_ui.json"
VIEWER, ADMIN = "test-bench-viewer", "test-bench-admin"
PLANT = "Bench Plant"
TARGET_LOSS = 0.05
TARGET_EXTRA_P99_MS = 150.0
TARGET_BYTES_PER_S = 50_000
#: Every child gives up after this long.
_CHILD_LIMIT_S = 300.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


#: The private mosquitto's port (`--broker mosquitto`), None: the embedded broker.
_BROKER_PORT: list[int] = []
#: When each simulator process started (monotonic), by PID.
_SIM_STARTED: dict[int, float] = {}


def _config(robots: int, rate: float, port: int) -> dict[str, Any]:
    broker: dict[str, Any] = {"host": "embedded", "topics": ["hitech/amr/+/position"]}
    if _BROKER_PORT:
        broker = {**broker, "host": "127.0.0.1", "port": _BROKER_PORT[0]}
    return {
        "twinzo": {"client": "demo", "password": "change-me", "api_key": "change-me"},
        "sandbox": {"enabled": True},
        "simulator": {"enabled": not _BROKER_PORT},
        "registry": {"enabled": False},
        "stores": {"enabled": False},
        "platform": {"enabled": False},
        "logging": {"stats_interval_s": 3600},
        "api": {
            "listen": f"127.0.0.1:{port}",
            "tokens": [
                {"label": "ui", "hash": hash_token(VIEWER), "role": "viewer", "tenants": ["*"]},
                {"label": "bench", "hash": hash_token(ADMIN), "role": "admin", "tenants": ["*"]},
            ],
        },
        "plants": [
            hitech_bench_plant(PLANT, robots, rate, broker),
        ],
    }


# -- /proc ----------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (and its reaped children), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / _CLK_TCK


def _machine() -> tuple[int, int, int]:
    """(steal, idle + iowait, total) jiffies of every CPU (`/proc/stat` first line)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return values[7] if len(values) > 7 else 0, values[3] + values[4], sum(values[:8])


class _Window:
    """CPU of a process and the machine's steal over one measurement window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = _proc_cpu_s(pid)
        self.steal0, self.idle0, self.total0 = _machine()
        self.t0 = time.monotonic()

    def close(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        steal, idle, total = _machine()
        jiffies = max(1, total - self.total0)
        return {
            "seconds": round(wall, 2),
            "cpu_pct": round(100 * (_proc_cpu_s(self.pid) - self.cpu0) / wall, 1),
            "steal_pct": round(100 * (steal - self.steal0) / jiffies, 2),
            "machine_busy_pct": round(100 - 100 * (idle - self.idle0) / jiffies, 1),
        }


# -- the service ----------------------------------------------------------------------


def _intake(url: str) -> tuple[float, float]:
    """(received, Σ outcomes) of the plant, from `/metrics`."""
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    received = outcomes = 0.0
    for line in text.splitlines():
        if line.startswith("dtp_plant_received_total{"):
            received += float(line.rsplit(" ", 1)[1])
        elif line.startswith("dtp_plant_outcomes_total{"):
            outcomes += float(line.rsplit(" ", 1)[1])
    return received, outcomes


def _pin(pid: int) -> None:
    """The attached UIs on the last core: they would run on other machines, here they
    must not take more than one core from the service (which may use every core)."""
    cpus = os.cpu_count() or 1
    if cpus >= 2:
        os.sched_setaffinity(pid, {cpus - 1})


def _child(*args: str, pin: bool = True, nice: int = 0) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    if pin:
        _pin(child.pid)
    if nice:
        os.setpriority(os.PRIO_PROCESS, child.pid, nice)
    return child


def _ready(child: subprocess.Popen[str], what: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "READY":
        child.kill()
        raise RuntimeError(f"{what} did not start: {line!r}")


def _result(child: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = child.communicate(timeout=120)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _service_phase(url: str, pid: int, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    children: list[subprocess.Popen[str]] = []
    window = ["--url", url, "--seconds", str(args.seconds), "--skip", str(args.settle)]
    if clients:
        children.append(_child("--role", "ui", *window, nice=args.client_nice))
    if clients > 1:
        children.append(
            _child(
                "--role", "engines", "--count", str(clients - 1), *window,
                nice=args.client_nice,
            )
        )  # fmt: skip
    for child in children:
        _ready(child, "an attached client")
    time.sleep(args.settle)  # past the snapshots; the children count from here too
    received0, outcomes0 = _intake(url)
    win = _Window(pid)
    time.sleep(args.seconds)
    phase: dict[str, Any] = win.close()
    received1, outcomes1 = _intake(url)
    phase.update(
        attached=clients,
        received_per_s=round((received1 - received0) / phase["seconds"], 1),
        outcomes_per_s=round((outcomes1 - outcomes0) / phase["seconds"], 1),
    )
    # What one message costs the service whatever CPU share the scheduler gave it (the
    # machine is shared: a starved service handles fewer messages at the same cost each).
    phase["service_cpu_us_per_msg"] = round(
        1e4 * phase["cpu_pct"] / max(1.0, phase["received_per_s"]), 1
    )
    results = [_result(child) for child in children]
    if results:
        ui = results[0]
        phase["ui"] = ui
        per_client = [ui["socket_bytes_per_s"]]
        if len(results) > 1:
            per_client += [results[1]["socket_bytes_per_s"]] * (clients - 1)
            phase["engines"] = results[1]
        phase["bytes_per_s_per_ui"] = round(sum(per_client) / len(per_client))
        # Per message received: an upper bound at the nominal rate (a device's changes are
        # folded into one delta per tick, so more messages cost less each).
        phase["bytes_per_msg_per_ui"] = round(
            phase["bytes_per_s_per_ui"] / max(1.0, phase["received_per_s"]), 1
        )
    return phase


def _start_service(folder: Path, robots: int, rate: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    path = folder / "service.yaml"
    path.write_text(json.dumps(_config(robots, rate, port)))
    log = (folder / "service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "dtp_console", "run", "--no-ui", "--config", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        cwd=folder,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    wait_port(port, timeout=60)
    deadline = time.monotonic() + 60
    first = _intake(url)[0]
    while _intake(url)[0] - first < 5 * robots * rate and time.monotonic() < deadline:
        time.sleep(0.5)  # every robot reporting, every login authenticated
    return service, url


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _inproc_phase(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = folder / "inproc.json"
    path.write_text(json.dumps(_config(args.robots, args.rate, free_port())))
    child = _child(
        "--role", "inproc", "--config", str(path), "--seconds", str(args.seconds),
        "--skip", str(args.settle + 3), pin=False,
    )  # fmt: skip
    _ready(child, "the in-process console")
    time.sleep(args.settle + 3)  # its start: logins, every robot reporting
    win = _Window(child.pid)
    time.sleep(args.seconds)
    phase: dict[str, Any] = win.close()
    phase.update(_result(child))
    return phase


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "robots": args.robots,
        "rate_hz_per_robot": args.rate,
        "nominal_msg_per_s": args.robots * args.rate,
        "client_nice": args.client_nice,
        "in_process": [],
        "service": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-attach-ui-") as name:
        folder = Path(name)
        if args.broker == "mosquitto":
            with BenchBroker(folder / "broker") as broker:
                _BROKER_PORT.append(broker.port)
                simulator = _start_simulator(folder, args)
                try:
                    _rounds(out, folder, args)
                finally:
                    out["simulator_cpu_pct"] = _stop_simulator(simulator)
                    _BROKER_PORT.clear()
            print(f"simulate (own process): {out['simulator_cpu_pct']:.0f}% of a core")
        else:
            _rounds(out, folder, args)
    _summary(out)
    return out


def _start_simulator(folder: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """`dtp-console simulate` publishing the plant's robots to the private mosquitto."""
    path = folder / "simulate.json"
    path.write_text(json.dumps(_config(args.robots, args.rate, free_port())))
    log = (folder / "simulate.log").open("wb")
    simulator = subprocess.Popen(
        [sys.executable, "-m", "dtp_console", "-c", str(path), "simulate", "--no-generators",
         "--for", f"{_CHILD_LIMIT_S * 3:.0f}s"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=folder,
    )  # fmt: skip
    log.close()
    _SIM_STARTED[simulator.pid] = time.monotonic()
    return simulator


def _stop_simulator(simulator: subprocess.Popen[bytes]) -> float:
    """Stop it; its CPU (% of a core) over its run, read just before it stops."""
    started = _SIM_STARTED.pop(simulator.pid)
    cpu = 100 * _proc_cpu_s(simulator.pid) / max(1e-9, time.monotonic() - started)
    _stop(simulator)
    return round(cpu, 1)


def _rounds(out: dict[str, Any], folder: Path, args: argparse.Namespace) -> None:
    """The in-process console, the service rounds (0, 1, 5 UIs …), in-process again."""
    out["in_process"].append(_inproc_phase(folder, args))
    _print_inproc(out["in_process"][-1])
    service, url = _start_service(folder, args.robots, args.rate)
    try:
        for round_no in range(args.rounds):
            order = [0, 1, 5] if round_no % 2 == 0 else [5, 1, 0]
            for clients in order:
                phase = _service_phase(url, service.pid, clients, args)
                phase["round"] = round_no + 1
                out["service"].append(phase)
                _print_service(phase)
    finally:
        _stop(service)
    out["in_process"].append(_inproc_phase(folder, args))
    _print_inproc(out["in_process"][-1])


# -- printing -------------------------------------------------------------------------


def _print_inproc(p: dict[str, Any]) -> None:
    print(
        f"in-process      : {p['received_per_s']:7.1f} rx/s {p['outcomes_per_s']:7.1f} out/s"
        f"  CPU {p['cpu_pct']:5.1f}% (engine+UI)  steal {p['steal_pct']:.1f}%"
        f" machine busy {p['machine_busy_pct']:.0f}%"
        f"  event→screen p50 {p['p50_ms']:.0f} ms p99 {p['p99_ms']:.0f} ms"
        f" ({p['samples']} samples)",
        flush=True,
    )


def _print_service(p: dict[str, Any]) -> None:
    line = (
        f"round {p['round']} {p['attached']} UI(s): {p['received_per_s']:7.1f} rx/s"
        f" {p['outcomes_per_s']:7.1f} out/s  service CPU {p['cpu_pct']:5.1f}%"
        f" ({p['service_cpu_us_per_msg']:.0f} µs/msg)"
        f"  steal {p['steal_pct']:.1f}% machine busy {p['machine_busy_pct']:.0f}%"
    )
    if p["attached"]:
        ui = p["ui"]
        line += (
            f"  {p['bytes_per_s_per_ui'] / 1000:.1f} kB/s per UI"
            f" ({ui['inflated_bytes_per_s'] / 1000:.0f} kB/s inflated,"
            f" {p['bytes_per_msg_per_ui']:.0f} B/msg)"
            f"  event→screen p50 {ui['p50_ms']:.0f} ms p99 {ui['p99_ms']:.0f} ms"
            f"  UI CPU {ui['cpu_pct']:.0f}%"
        )
    print(line, flush=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _summary(out: dict[str, Any]) -> None:
    service = out["service"]
    base = [p for p in service if p["attached"] == 0]
    base_rx = _mean([p["received_per_s"] for p in base])
    base_out = _mean([p["outcomes_per_s"] for p in base])
    base_cpu = _mean([p["cpu_pct"] for p in base])
    base_us = _mean([p["service_cpu_us_per_msg"] for p in base])
    inproc = out["in_process"]
    in_p99 = _mean([p["p99_ms"] for p in inproc])
    in_p50 = _mean([p["p50_ms"] for p in inproc])
    summary: dict[str, Any] = {
        "baseline_received_per_s": round(base_rx, 1),
        "baseline_outcomes_per_s": round(base_out, 1),
        "baseline_cpu_pct": round(base_cpu, 1),
        "in_process_p50_ms": round(in_p50, 1),
        "in_process_p99_ms": round(in_p99, 1),
    }
    print(
        f"\nbaseline (0 attached, mean of {len(base)}): {base_rx:.1f} rx/s, {base_out:.1f} out/s,"
        f" CPU {base_cpu:.1f}% (nominal {out['nominal_msg_per_s']:.0f} msg/s)"
    )
    print(
        f"in-process event→screen (mean of {len(inproc)}): p50 {in_p50:.0f} ms p99 {in_p99:.0f} ms"
    )
    for clients in (1, 5):
        phases = [p for p in service if p["attached"] == clients]
        if not phases:
            continue
        rx = _mean([p["received_per_s"] for p in phases])
        done = _mean([p["outcomes_per_s"] for p in phases])
        cpu = _mean([p["cpu_pct"] for p in phases])
        p99 = _mean([p["ui"]["p99_ms"] for p in phases])
        p50 = _mean([p["ui"]["p50_ms"] for p in phases])
        per_ui = _mean([p["bytes_per_s_per_ui"] for p in phases])
        us = _mean([p["service_cpu_us_per_msg"] for p in phases])
        at_nominal = _mean([p["bytes_per_msg_per_ui"] for p in phases]) * out["nominal_msg_per_s"]
        loss = 1 - min(rx, done) / base_rx if base_rx else float("nan")
        row = {
            "received_ratio_vs_baseline": round(rx / base_rx, 3),
            "outcomes_ratio_vs_baseline": round(done / base_out, 3),
            "intake_loss": round(loss, 3),
            "cpu_ratio_vs_baseline": round(cpu / base_cpu, 2) if base_cpu else None,
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "p99_minus_in_process_ms": round(p99 - in_p99, 1),
            "bytes_per_s_per_ui": round(per_ui),
            "bytes_per_s_per_ui_at_nominal_bound": round(at_nominal),
            "service_cpu_us_per_msg_ratio_vs_baseline": round(us / base_us, 2),
            "within_targets": {
                "loss": loss <= TARGET_LOSS,
                "p99": p99 - in_p99 <= TARGET_EXTRA_P99_MS,
                "bytes": per_ui <= TARGET_BYTES_PER_S,
            },
        }
        summary[f"attached_{clients}"] = row
        print(
            f"{clients} attached (mean of {len(phases)}):"
            f" intake ×{row['received_ratio_vs_baseline']} rx,"
            f" ×{row['outcomes_ratio_vs_baseline']} outcomes (loss {100 * loss:.1f}%,"
            f" target ≤ {100 * TARGET_LOSS:.0f}%); CPU ×{row['cpu_ratio_vs_baseline']};"
            f" event→screen p50 {p50:.0f} p99 {p99:.0f} ms = in-process {p99 - in_p99:+.0f} ms"
            f" (target ≤ +{TARGET_EXTRA_P99_MS:.0f}); {per_ui / 1000:.1f} kB/s per UI"
            f" (target ≤ {TARGET_BYTES_PER_S / 1000:.0f}; ≤ {at_nominal / 1000:.1f} at"
            f" {out['nominal_msg_per_s']:.0f} msg/s); service CPU per message ×{us / base_us:.2f}"
        )
    out["summary"] = summary


# -- children -------------------------------------------------------------------------


class _SocketBytes:
    """Bytes aiohttp's client protocols read off their sockets in this process."""

    total = 0
    inflated = 0
    """Bytes of SSE text the streams carried (what they would cost uncompressed)."""

    @classmethod
    def install(cls) -> None:
        from aiohttp.client_proto import ResponseHandler

        original = ResponseHandler.data_received

        def counted(self: ResponseHandler, data: bytes) -> None:
            cls.total += len(data)
            original(self, data)

        ResponseHandler.data_received = counted  # type: ignore[method-assign]

        from dtp_console.attach.sse import SseParser

        feed = SseParser.feed

        def inflated(self: SseParser, chunk: bytes) -> Any:
            cls.inflated += len(chunk)
            return feed(self, chunk)

        SseParser.feed = inflated  # type: ignore[method-assign]


def _latency_app(engine: Any, raw_times: dict[str, float] | None) -> Any:
    """The real App, recording per refresh the age of each newly drawn robot's message.

    `raw_times` (attached): vendor id → the service's `last_message_at` as the frames
    carried it since the last refresh; None (in-process): read off the engine's state.
    """
    from dtp_console.ui.app import DtpConsoleApp
    from dtp_console.ui.display import UiClock

    class LatencyApp(DtpConsoleApp):
        def __init__(self) -> None:
            super().__init__(engine, clock=UiClock(), refresh_s=0.1)
            self.latencies_ms: list[float] = []
            self.recording = False
            self._last: dict[str, float] = {}

        def refresh_now(self) -> None:
            if raw_times is not None:
                drawn = dict(raw_times)
                raw_times.clear()
            else:
                plant = self.engine.state.plants.get(PLANT)
                devices = {} if plant is None else plant.devices
                drawn = {}
                for vid, device in devices.items():
                    at = device.last_message_at
                    if at is not None and self._last.get(vid) != at:
                        self._last[vid] = drawn[vid] = at
            super().refresh_now()
            if not self.recording or not drawn:
                return

            def painted() -> None:
                now = time.monotonic()
                self.latencies_ms.extend((now - at) * 1000 for at in drawn.values())

            self.call_after_refresh(painted)

    return LatencyApp()


def _record_raw(raw_times: dict[str, float]) -> None:
    """Wrap the client's frame decoder: keep each device's raw `last_message_at`."""
    import dtp_console.attach.client as client_module

    original = client_module.apply_frame  # type: ignore[attr-defined]

    def recording(target: Any, body: Any, *, now: float) -> None:
        original(target, body, now=now)
        plant = (body.get("plants") or {}).get(PLANT) or {}
        for vid, device in (plant.get("devices") or {}).items():
            if isinstance(device, dict) and device.get("last_message_at") is not None:
                raw_times[vid] = float(device["last_message_at"])

    client_module.apply_frame = recording  # type: ignore[attr-defined,assignment]


def _window_figures(
    app: Any, cpu0: float, counts0: tuple[int, int], wall: float, clients: int = 1
) -> dict[str, Any]:
    lat = app.latencies_ms if app is not None else []
    return {
        "cpu_pct": round(100 * (time.process_time() - cpu0) / wall, 1),
        "socket_bytes_per_s": round((_SocketBytes.total - counts0[0]) / wall / clients),
        "inflated_bytes_per_s": round((_SocketBytes.inflated - counts0[1]) / wall / clients),
        "p50_ms": round(percentile(lat, 50), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "samples": len(lat),
    }


async def _ui_child(args: argparse.Namespace) -> dict[str, Any]:
    from dtp_console.attach.client import RemoteEngine

    _SocketBytes.install()
    raw: dict[str, float] = {}
    _record_raw(raw)
    engine = await RemoteEngine.open(args.url, VIEWER, tls=False)
    app = _latency_app(engine, raw)
    async with app.run_test(size=(200, 60)) as pilot:
        async with asyncio.timeout(60):
            while engine.snapshots < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        print("READY", flush=True)
        await asyncio.sleep(args.skip)
        app.recording = True
        cpu0, bytes0, t0 = (
            time.process_time(),
            (_SocketBytes.total, _SocketBytes.inflated),
            time.monotonic(),
        )
        await asyncio.sleep(args.seconds)
        figures = _window_figures(app, cpu0, bytes0, time.monotonic() - t0)
        app.recording = False
        figures["frames"] = engine.frames
        figures["reconnects"] = engine.reconnects
        await pilot.press("q")
        await pilot.pause(0.3)
    return figures


async def _engines_child(args: argparse.Namespace) -> dict[str, Any]:
    from dtp_console.attach.client import RemoteEngine

    _SocketBytes.install()
    engines = [await RemoteEngine.open(args.url, VIEWER, tls=False) for _ in range(args.count)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(e.run(stop)) for e in engines]
    async with asyncio.timeout(60):
        while min(e.snapshots for e in engines) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    print("READY", flush=True)
    await asyncio.sleep(args.skip)
    cpu0, bytes0, t0 = (
        time.process_time(),
        (_SocketBytes.total, _SocketBytes.inflated),
        time.monotonic(),
    )
    await asyncio.sleep(args.seconds)
    figures = _window_figures(None, cpu0, bytes0, time.monotonic() - t0, args.count)
    figures["reconnects"] = sum(e.reconnects for e in engines)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return figures


async def _inproc_child(args: argparse.Namespace) -> dict[str, Any]:
    from dtp_console.config.model import ConsoleConfig
    from dtp_console.runtime import Engine

    text = await asyncio.to_thread(Path(args.config).read_text)
    config = ConsoleConfig.model_validate(json.loads(text))
    engine = Engine(config)
    app = _latency_app(engine, None)
    async with app.run_test(size=(200, 60)) as pilot:
        await asyncio.wait_for(engine.ready.wait(), 60)
        print("READY", flush=True)
        await asyncio.sleep(args.skip)
        app.recording = True
        plant = engine.state.plants[PLANT]
        rx0, out0 = plant.counters.received, sum(plant.counters.outcomes.values())
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        wall = time.monotonic() - t0
        figures = _window_figures(app, cpu0, (0, 0), wall)
        app.recording = False
        figures.pop("socket_bytes_per_s")
        figures.pop("inflated_bytes_per_s")
        figures["received_per_s"] = round((plant.counters.received - rx0) / wall, 1)
        figures["outcomes_per_s"] = round((sum(plant.counters.outcomes.values()) - out0) / wall, 1)
        await pilot.press("q")
        await pilot.pause(1.0)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="reports per second per robot")
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--settle", type=float, default=2.0, help="before each phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="niceness of the attached UIs' processes (on a saturated box: 10 lets them take"
        " only what the service leaves, as on another machine; their latency then suffers)",
    )
    parser.add_argument(
        "--broker",
        choices=["mosquitto", "embedded"],
        default="mosquitto",
        help="mosquitto: a private mosquitto fed by `simulate` in its own process (default);"
        " embedded: the service's embedded broker and simulator",
    )
    parser.add_argument("--role", choices=["ui", "engines", "inproc"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--skip", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role is not None:
        child = {"ui": _ui_child, "engines": _engines_child, "inproc": _inproc_child}[args.role]

        async def bounded() -> dict[str, Any]:
            async with asyncio.timeout(_CHILD_LIMIT_S):
                return await child(args)

        print(json.dumps(asyncio.run(bounded())), flush=True)
        return 0
    results = _bench(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
