"""`make bench`: every benchmark once, in short mode, one after the other (figures only).

Each script prints its own figures and ratios against the baseline it runs in
the same invocation; nothing here compares against a stored number or fails
on a figure. A script that cannot run (tmux missing for the terminal bench,
say) is reported and the rest still run; the exit code is the count of
scripts that failed to run.

Usage: `.venv/bin/python bench/run_all.py [NAME ...]` (names as below).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name → arguments (short runs; each script's --help lists the long ones).
BENCHES: dict[str, list[str]] = {
    "bench_bridge": ["--quick"],
    "bench_stores": [],
    "bench_platform": ["--seconds", "10"],
    "bench_registry_scan": ["--repeat", "1"],
    "bench_metrics": ["--repeat", "20"],
    "bench_sse": ["--seconds", "5"],
    "bench_attach": ["--seconds", "5"],
    "bench_attach_ui": ["--rounds", "1", "--seconds", "6"],
    "bench_ui": ["--seconds", "10"],
    "ui_terminal": ["--seconds", "15"],
    "bench_fuzz": ["--count", "20000"],
    "soak": ["--minutes", "1"],
}


def main() -> int:
    """Run the chosen (default: all) benchmarks; the number that failed to run."""
    chosen = sys.argv[1:] or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(f"unknown bench: {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== {name} {' '.join(BENCHES[name])}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *BENCHES[name]])
        print(f"=== {name}: exit {result.returncode} after {time.monotonic() - started:.0f}s")
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\ndid not run to the end: {', '.join(failed)}")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
