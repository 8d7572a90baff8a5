"""The console UI in a real terminal (tmux) under ~5,000 msg/s, against headless, same load.

The load comes from outside the console, so the console process holds only what
an operator's would: a private mosquitto on a free loopback port,
`dtp-console simulate` in its own process publishing 2 plants × ROBOTS robots ×
RATE Hz. The twinzo sandbox stays inside the console as in the demo config
(`--sandbox-process` moves it to a process of its own, where twinzo is for a
real console; on 2 cores that third process costs the console more CPU than
it saves).
The console runs twice on that same load, each for SECONDS:

1. headless: `dtp-console run --no-ui` — the engine's own CPU;
2. UI: the same engine under the console App in a tmux pane of COLS×ROWS, with a
   plant tab (table and floor map) visible. The App is the product's, plus a
   probe that records event→screen latency: for every robot shown on the
   visible tab whose message was new this tick, the time from the bridge
   handling that message to the end of the screen refresh that drew it
   (`call_after_refresh`, i.e. after the frame was written to the terminal).

UI CPU = CPU(2) − CPU(1), both read from /proc over the same window length.
Figures only; nothing asserts on time.

Usage: `.venv/bin/python bench/ui_terminal.py [--seconds 20] [--robots 100] [--rate 25]`
(internally also `... app CONFIG OUT SECONDS`, the child run inside tmux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import BenchBroker, free_port, percentile  # noqa: E402

VENV = ROOT / ".venv" / "bin"
WARMUP_S = 8.0


def _config(
    port: int, robots: int, rate_hz: float, work: Path, twinzo_url: str | None = None
) -> dict[str, Any]:
    plants = []
    for index, (name, fmt, prefix, topic) in enumerate(
        [
            ("Old Plant", "ati_sherpa", "ati_amr_", "ati_fm/sherpa/status"),
            ("HiTech Plant", "hitech", "hitech-amr-", "hitech/amr/+/position"),
        ]
    ):
        plants.append(
            {
                "name": name,
                "format": fmt,
                "broker": {"host": "127.0.0.1", "port": port, "topics": [topic], "qos": 0},
                "device_map": {
                    f"{prefix}{n:03d}": f"tugger-{index}-{n:03d}" for n in range(1, robots + 1)
                },
                "twinzo": {"sector_id": index + 1},
                "bounds": {"x_min": 0, "x_max": 200000, "y_min": 0, "y_max": 120000},
                "min_post_interval_ms": 1000,
                "simulator": {
                    "robots": robots,
                    "unmapped": 0,
                    "rate_hz": rate_hz,
                    "seed": index + 5,
                    "fault_rate": 0.0,
                    "speed_mm_s": 2000,
                },
            }
        )
    twinzo: dict[str, Any] = {"client": "demo", "password": "change-me", "api_key": "change-me"}
    if twinzo_url is not None:
        twinzo["base_url"] = twinzo_url
    return {
        "twinzo": twinzo,
        "sandbox": {"enabled": twinzo_url is None},
        "simulator": {"enabled": False, "generators": {"enabled": False}},
        "registry": {"enabled": False},
        "stores": {"sqlite_path": str(work / "p.sqlite3"), "blob_dir": str(work / "blobs")},
        "logging": {"file": str(work / "console.log")},
        "plants": plants,
    }


def _cpu_ticks(stat: str) -> int:
    """utime + stime (fields 14, 15) of `/proc/<stat>/stat`: a pid, or `self/task/<tid>`."""
    fields = Path(f"/proc/{stat}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _machine() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return fields[7], sum(fields)


#: Per measured window: % of the machine's CPU time the hypervisor took, and
#: the simulator's CPU (% of a core) — it shares the cores with the console.
STEAL: list[float] = []
SIMULATOR_CPU: list[float] = []
_SIMULATOR: list[int] = []


def _cpu_percent(pid: int, seconds: float) -> float:
    hz = os.sysconf("SC_CLK_TCK")
    pids = [pid, *_SIMULATOR]
    (s0, m0), t0, w0 = _machine(), [_cpu_ticks(str(p)) for p in pids], time.monotonic()
    time.sleep(seconds)
    (s1, m1), t1, w1 = _machine(), [_cpu_ticks(str(p)) for p in pids], time.monotonic()
    STEAL.append(100.0 * (s1 - s0) / max(1, m1 - m0))
    cpu = [100.0 * (b - a) / hz / (w1 - w0) for a, b in zip(t0, t1, strict=True)]
    if _SIMULATOR:
        SIMULATOR_CPU.append(cpu[1])
    return cpu[0]


def _received(stats: Path) -> int:
    data = json.loads(stats.read_text())
    return sum(int(p["received"]) for p in data["plants"].values())


def _wait_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout}s")
        time.sleep(0.05)


def _headless(config: Path, work: Path, seconds: float) -> dict[str, float]:
    stats = work / "headless.json"
    total = WARMUP_S + seconds + 2
    process = subprocess.Popen(
        [
            *(str(VENV / "dtp-console"), "-c", str(config), "run", "--no-ui"),
            *("--for", f"{total}s", "--stats-json", str(stats)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(WARMUP_S)
        cpu = _cpu_percent(process.pid, seconds)
        process.wait(timeout=total + 30)
    finally:
        if process.poll() is None:
            process.kill()
    return {"cpu": cpu, "msg_s": _received(stats) / total}


def _ui(config: Path, work: Path, seconds: float, cols: int, rows: int) -> dict[str, Any]:
    out, pidfile = work / "ui.json", work / "ui.pid"
    total = WARMUP_S + seconds + 2
    session = f"dtp-bench-{os.getpid()}"
    command = (
        f"cd {ROOT} && exec {VENV / 'python'} {Path(__file__).resolve()} app "
        f"{config} {out} {total} {pidfile}"
    )
    subprocess.run(
        [
            *("tmux", "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows)),
            *("-e", "COLORTERM=truecolor", "-e", "TERM=xterm-256color", command),
        ],
        check=True,
    )
    try:
        _wait_file(pidfile, 30)
        pid = int(pidfile.read_text())
        time.sleep(WARMUP_S)
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout
        cpu = _cpu_percent(pid, seconds)
        _wait_file(out, total + 60)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    result: dict[str, Any] = json.loads(out.read_text())
    result["cpu"] = cpu
    result["msg_s"] = result["received"] / total
    result["screen"] = screen
    return result


def _is_ui_code(filename: str) -> bool:
    return "/textual/" in filename or "/dtp_console/ui/" in filename or "ui_terminal" in filename


def _callback_file(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        code = getattr(owner.get_coro(), "cr_code", None)
        return code.co_filename if code is not None else ""
    function = getattr(callback, "__func__", callback)
    code = getattr(function, "__code__", None)
    return code.co_filename if code is not None else ""


def _thread_cpu_s(native_id: int) -> float:
    return _cpu_ticks(f"self/task/{native_id}") / os.sysconf("SC_CLK_TCK")


class _CpuAccount:
    """CPU of the UI's own work in the console process, apart from the engine's.

    Every event-loop callback is timed with the main thread's CPU clock and
    charged to the UI when its code (or its task's coroutine) lives in Textual
    or `dtp_console.ui`, else to the engine; Textual's output and input threads
    are read from /proc. The timing itself adds ~1 µs per callback to both sides.
    """

    def __init__(self) -> None:
        self.cpu = {"ui": 0.0, "engine": 0.0}
        self.on = False
        self._threads: dict[str, tuple[int, float]] = {}
        self.wall_s = 0.0
        original = asyncio.events.Handle._run
        cpu = self.cpu
        clock = time.thread_time

        def timed_run(handle: asyncio.events.Handle) -> None:
            if not self.on:
                original(handle)
                return
            callback = getattr(handle, "_callback", None)
            side = "ui" if _is_ui_code(_callback_file(callback)) else "engine"
            started = clock()
            try:
                original(handle)
            finally:
                cpu[side] += clock() - started

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]

    def start(self) -> None:
        self.on = True
        self.wall_s = time.monotonic()
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and thread.native_id is not None:
                self._threads[thread.name] = (thread.native_id, _thread_cpu_s(thread.native_id))

    def stop(self) -> None:
        self.on = False
        self.wall_s = time.monotonic() - self.wall_s
        for name, (tid, before) in list(self._threads.items()):
            try:
                self.cpu[f"thread {name}"] = _thread_cpu_s(tid) - before
            except FileNotFoundError:
                del self._threads[name]

    def figures(self) -> dict[str, float]:
        """Percent of one core per side and per thread over the measured window."""
        return {k: 100.0 * v / self.wall_s for k, v in self.cpu.items()}


def _app_child(config_path: Path, out: Path, seconds: float, pidfile: Path) -> None:
    """Inside tmux: the product's engine and App, plus the latency probe."""
    from dtp_console.config.loader import load_config
    from dtp_console.oplog import configure_library_logging
    from dtp_console.runtime import Engine
    from dtp_console.ui.app import DtpConsoleApp

    class ProbedApp(DtpConsoleApp):
        def __init__(self, engine: Engine) -> None:
            super().__init__(engine, duration=seconds)
            self.latencies_ms: list[float] = []
            self.tick_ms: list[float] = []
            self._seen: dict[str, float] = {}

        def refresh_now(self) -> None:
            started = time.perf_counter()
            fresh: list[float] = []
            plant = self.main.active_plant if self.is_screen_installed("main") else None
            state = self.engine.state.plants.get(plant.name) if plant is not None else None
            if state is not None:
                for vid, device in state.devices.items():
                    at = device.last_message_at
                    if at is not None and self._seen.get(vid) != at:
                        self._seen[vid] = at
                        fresh.append(at)
            super().refresh_now()
            self.tick_ms.append((time.perf_counter() - started) * 1000)

            def painted() -> None:
                now = time.monotonic()
                self.latencies_ms.extend((now - at) * 1000 for at in fresh)

            self.call_after_refresh(painted)

    pidfile.write_text(str(os.getpid()))
    configure_library_logging(out.with_suffix(".log"))
    engine = Engine(load_config(config_path), config_path=config_path)
    from textual.screen import Screen

    layouts = [0]
    original_layout = Screen._refresh_layout

    def counted_layout(screen: Screen[Any], *args: Any, **kwargs: Any) -> None:
        layouts[0] += account.on
        original_layout(screen, *args, **kwargs)

    Screen._refresh_layout = counted_layout  # type: ignore[method-assign,assignment]
    account = _CpuAccount()
    app = ProbedApp(engine)
    app.call_later(lambda: app.set_timer(WARMUP_S, account.start))
    app.call_later(lambda: app.set_timer(seconds - 2, account.stop))
    app.run()
    received = sum(p.counters.received for p in engine.state.plants.values())
    out.write_text(
        json.dumps(
            {
                "received": received,
                "latencies_ms": app.latencies_ms[len(app.latencies_ms) // 4 :],
                "tick_ms": app.tick_ms[len(app.tick_ms) // 4 :],
                "account": account.figures(),
                "layouts_per_s": layouts[0] / account.wall_s,
            }
        )
    )


def _sandbox_child(port: int, robots: int) -> None:
    """The twinzo sandbox on its own (as twinzo is, for a real console): until SIGTERM."""
    import signal

    from dtp_console.config.model import SandboxConfig
    from dtp_console.twinzo.sandbox import TwinzoSandbox

    logins = {f"tugger-{i}-{n:03d}" for i in (0, 1) for n in range(1, robots + 1)}

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        config = SandboxConfig(enabled=True, port=port)
        async with TwinzoSandbox(
            config, client="demo", password="change-me", api_key="change-me", logins=logins
        ):
            print("READY", flush=True)
            await asyncio.wait_for(stop.wait(), 900)

    asyncio.run(serve())


def main() -> None:
    """Run the load, then headless and UI phases; print the figures."""
    if len(sys.argv) > 1 and sys.argv[1] == "app":
        _app_child(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "sandbox":
        _sandbox_child(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--rate", type=float, default=25.0, help="Hz per robot")
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--show-screen", action="store_true")
    parser.add_argument(
        "--sandbox-process",
        action="store_true",
        help="run the twinzo sandbox in its own process (where twinzo is for a real console)"
        " instead of inside the console (the demo's layout)",
    )
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("tmux is not installed (apt-get install tmux)")
    import yaml

    with tempfile.TemporaryDirectory(prefix="dtp-ui-term-") as tmp:
        work = Path(tmp)
        sandbox: subprocess.Popen[str] | None = None
        twinzo_url = None
        if args.sandbox_process:
            port = free_port()
            sandbox = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "sandbox",
                    str(port),
                    str(args.robots),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert sandbox.stdout is not None
            if sandbox.stdout.readline().strip() != "READY":
                sys.exit("the twinzo sandbox did not start")
            twinzo_url = f"http://127.0.0.1:{port}"
        with BenchBroker(work / "broker") as broker:
            config = work / "load.yaml"
            settings = _config(broker.port, args.robots, args.rate, work, twinzo_url)
            config.write_text(yaml.safe_dump(settings))
            both = 2 * (WARMUP_S + args.seconds + 2) + 40.0
            sim_out = (work / "simulate.out").open("w")
            simulator = subprocess.Popen(
                [
                    *(str(VENV / "dtp-console"), "-c", str(config), "simulate"),
                    *("--no-generators", "--for", f"{both}s"),
                ],
                stdout=sim_out,
                stderr=subprocess.STDOUT,
            )
            try:
                time.sleep(3)
                sim_cpu = _cpu_percent(simulator.pid, 2)
                _SIMULATOR.append(simulator.pid)
                headless = _headless(config, work, args.seconds)
                ui = _ui(config, work, args.seconds, args.cols, args.rows)
            finally:
                simulator.terminate()
                simulator.wait(timeout=10)
                sim_out.close()
                summary = (work / "simulate.out").read_text()
                if sandbox is not None:
                    sandbox.terminate()
                    sandbox.wait(timeout=10)
    offered = 2 * args.robots * args.rate
    lat, ticks = ui["latencies_ms"], ui["tick_ms"]
    print(f"load: {offered:,.0f} msg/s offered by `simulate` ({sim_cpu:.0f}% of a core)")
    totals = [line.strip() for line in summary.splitlines() if " messages on " in line]
    ran = [line for line in summary.splitlines() if line.startswith("simulated for")]
    print(f"  simulate published ({ran[0] if ran else 'run time unknown'}): " + "; ".join(totals))
    steal = ", ".join(f"{v:.0f}%" for v in STEAL)
    print(f"CPU stolen by the hypervisor per window (sim, headless, UI): {steal}")
    sim = ", ".join(f"{v:.0f}%" for v in SIMULATOR_CPU)
    print(f"simulator's CPU while the console ran (headless, UI): {sim} of a core")
    where = "in its own process" if args.sandbox_process else "inside the console"
    print(f"twinzo sandbox: {where}")
    print(f"headless:      {headless['cpu']:5.1f}% of a core, {headless['msg_s']:7,.0f} msg/s in")
    size = f"{args.cols}x{args.rows}"
    print(f"UI {size} tmux: {ui['cpu']:5.1f}% of a core, {ui['msg_s']:7,.0f} msg/s in")
    # Not scaled by intake: most of the engine's CPU is posting (one POST per robot
    # per second, whatever the message rate), so it does not shrink with intake.
    print(f"UI share:      {ui['cpu'] - headless['cpu']:5.1f}% of a core (target ≤ 40%)")
    print(
        f"event→screen:  p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms "
        f"over {len(lat):,} robot updates (target p99 ≤ 250 ms)"
    )
    for key, value in sorted(ui["account"].items()):
        if value >= 0.05:
            print(f"  in-process:  {key:<22} {value:5.1f}% of a core")
    print(f"layouts:       {ui['layouts_per_s']:.1f}/s (a full reflow and repaint each)")
    print(f"App tick:      p50 {percentile(ticks, 50):.1f} ms, p99 {percentile(ticks, 99):.1f} ms")
    if args.show_screen:
        print(ui["screen"])


if __name__ == "__main__":
    main()
