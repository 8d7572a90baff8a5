"""Compare two source trees on the same benches, runs alternating: before, after, before, …

Each bench runs as a subprocess of the tree under test (its own copy of the bench
script, cwd = that tree, ``PYTHONPATH`` = that tree), so a refactor's imports and
code are what is measured. Before and after alternate within every round, so a
neighbour's load or the hypervisor's steal hits both trees alike. Around every run
the driver reads /proc/stat (CPU stolen by the hypervisor, the share of all CPU
time in that window) and the 1-minute load average, and prints them with the run.

Benches and the figures parsed from them:

- ``ui``: ``bench/bench_ui.py --seconds S`` (headless App, 5,000 msg/s): the UI's
  share of a core (CPU with the App − engine alone, same process) and event→screen
  p50/p99;
- ``bridge``: ``bench/bench_bridge.py --phases raw,intake``: raw aiomqtt receive
  and pipeline intake, msg/s (median of the bench's own ``--repeat`` runs), and
  intake / raw within the same run (the least noisy figure);
- ``http``: ``bench/bench_http.py``: req/s of httpx's default transport and of
  the aiohttp one, and their ratio.

Prints a line per run, then a table: each round, the median per tree and
after / before. Figures only: the exit status is 0 whenever every bench ran.

    .venv/bin/python bench/compare_trees.py --before ../wt-before --after . --rounds 3
    .venv/bin/python bench/compare_trees.py --before A --after B --benches bridge --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCHES = ("ui", "bridge", "http")

Figures = dict[str, float]


@dataclass
class Run:
    bench: str
    tree: str  # "before" or "after"
    round: int
    figures: Figures
    steal: float  # fraction of all CPU time stolen during the run
    load_before: float
    load_after: float
    wall_s: float


@dataclass
class Options:
    ui_seconds: float
    bridge_messages: int
    bridge_repeat: int
    http_posts: int
    timeout_s: float
    runs: list[Run] = field(default_factory=list)


def read_stat() -> tuple[int, int]:
    """(steal, total) jiffies from the aggregate ``cpu`` line of /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    values = [int(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]:
    # guest time is already counted in user/nice, so leave it out of the total.
    total = sum(values[:8])
    return values[7], total


def read_load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise ValueError(f"bench output lacks {pattern!r}:\n{text[-2000:]}")
    return float(found.group(1).replace(",", ""))


def ui_command(opts: Options, _out: Path) -> list[str]:
    return ["bench/bench_ui.py", "--seconds", f"{opts.ui_seconds:g}"]


def ui_parse(stdout: str, _out: Path) -> Figures:
    return {
        "ui_share_pct": _number(r"UI share\s*:\s*(-?\d+)%", stdout),
        "ui_cpu_pct": _number(r"engine \+ UI\s*:.*CPU (\d+)%", stdout),
        "engine_cpu_pct": _number(r"engine alone:.*CPU (\d+)%", stdout),
        "msg_s": _number(r"engine \+ UI\s*:\s*(\d+) msg/s", stdout),
        "p50_ms": _number(r"event→screen: p50 (\d+) ms", stdout),
        "p99_ms": _number(r"event→screen:.*p99 (\d+) ms", stdout),
    }


def bridge_command(opts: Options, out: Path) -> list[str]:
    return [
        "bench/bench_bridge.py",
        "--phases",
        "raw,intake",
        "--messages",
        str(opts.bridge_messages),
        "--repeat",
        str(opts.bridge_repeat),
        "--output",
        str(out),
    ]


def bridge_parse(_stdout: str, out: Path) -> Figures:
    data = json.loads(out.read_text())
    raw = float(data["raw"]["rate"])
    intake = float(data["intake"]["rate"])
    return {
        "raw_msg_s": raw,
        "intake_msg_s": intake,
        "intake_raw_pct": 100 * intake / raw,
        # POSTs during the intake burst: the poster is meant to yield while intake runs.
        "intake_posts": float(data["intake"]["localization_requests"]),
    }


def http_command(opts: Options, out: Path) -> list[str]:
    return [
        "bench/bench_http.py",
        "--posts",
        str(opts.http_posts),
        "--rounds",
        "1",
        "--output",
        str(out),
    ]


def http_parse(_stdout: str, out: Path) -> Figures:
    data = json.loads(out.read_text())
    return {
        "httpx_req_s": float(data["httpx"]["req_s"]),
        "aiohttp_req_s": float(data["aiohttp"]["req_s"]),
        "aiohttp_httpx_x": float(data["capacity_ratio"]),
    }


COMMANDS: dict[str, Callable[[Options, Path], list[str]]] = {
    "ui": ui_command,
    "bridge": bridge_command,
    "http": http_command,
}
PARSERS: dict[str, Callable[[str, Path], Figures]] = {
    "ui": ui_parse,
    "bridge": bridge_parse,
    "http": http_parse,
}


def run_one(bench: str, tree_name: str, tree: Path, round_no: int, opts: Options) -> Run:
    with tempfile.TemporaryDirectory(prefix="compare_trees_") as tmp:
        out = Path(tmp) / f"{bench}.json"
        cmd = [sys.executable, *COMMANDS[bench](opts, out)]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        load0 = read_load()
        steal0, total0 = read_stat()
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=opts.timeout_s,
            check=False,
        )
        wall = time.monotonic() - t0
        steal1, total1 = read_stat()
        load1 = read_load()
        if proc.returncode != 0:
            raise RuntimeError(
                f"{bench} in {tree} exited {proc.returncode}:\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        figures = PARSERS[bench](proc.stdout, out)
    steal = (steal1 - steal0) / max(1, total1 - total0)
    return Run(bench, tree_name, round_no, figures, steal, load0, load1, wall)


def fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def print_run(run: Run) -> None:
    figs = "  ".join(f"{k}={fmt(v)}" for k, v in run.figures.items())
    print(
        f"  round {run.round} {run.bench:<6} {run.tree:<6} steal {run.steal:5.1%}  "
        f"load {run.load_before:.2f}→{run.load_after:.2f}  {run.wall_s:5.1f} s  {figs}",
        flush=True,
    )


def table(runs: list[Run], bench: str) -> list[str]:
    mine = [r for r in runs if r.bench == bench]
    if not mine:
        return []
    keys = list(mine[0].figures)
    head = ["round", "tree", "steal", "load 1m", *keys]
    rows = [
        [str(r.round), r.tree, f"{r.steal:.1%}", f"{r.load_before:.2f}→{r.load_after:.2f}"]
        + [fmt(r.figures[k]) for k in keys]
        for r in mine
    ]
    medians: dict[str, Figures] = {}
    for tree in ("before", "after"):
        of_tree = [r for r in mine if r.tree == tree]
        medians[tree] = {k: statistics.median(r.figures[k] for r in of_tree) for k in keys}
        steal = statistics.median(r.steal for r in of_tree)
        rows.append(["median", tree, f"{steal:.1%}", ""] + [fmt(medians[tree][k]) for k in keys])
    rows.append(
        ["", "after/before", "", ""]
        + [
            f"{medians['after'][k] / medians['before'][k]:.2f}" if medians["before"][k] else "—"
            for k in keys
        ]
    )
    lines = [f"### {bench}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="tree measured first")
    parser.add_argument("--after", type=Path, required=True, help="tree measured second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--benches", default="ui,bridge", help=f"comma-separated subset of {','.join(BENCHES)}"
    )
    parser.add_argument("--ui-seconds", type=float, default=10.0)
    parser.add_argument("--bridge-messages", type=int, default=70_000)
    parser.add_argument("--bridge-repeat", type=int, default=3)
    parser.add_argument("--http-posts", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=600.0, help="per bench run, seconds")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args(argv)
    benches = [b for b in args.benches.split(",") if b]
    unknown = set(benches) - set(BENCHES)
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        if not (tree / "bench").is_dir():
            parser.error(f"--{name} {tree} has no bench/ directory")
    opts = Options(
        ui_seconds=args.ui_seconds,
        bridge_messages=args.bridge_messages,
        bridge_repeat=args.bridge_repeat,
        http_posts=args.http_posts,
        timeout_s=args.timeout,
    )
    print(f"before: {trees['before']}\nafter : {trees['after']}\n{os.cpu_count()} CPUs")
    for round_no in range(1, args.rounds + 1):
        for bench in benches:
            for name in ("before", "after"):
                run = run_one(bench, name, trees[name], round_no, opts)
                opts.runs.append(run)
                print_run(run)
    print()
    for bench in benches:
        print("\n".join(table(opts.runs, bench)))
        print()
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ for r in opts.runs], indent=2, ensure_ascii=False)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
