"""Twin registry: scan 1,000 twin files, register them into SQLite, and watch latency.

Prints figures only; nothing here asserts on wall-clock time. Run:
`.venv/bin/python bench/bench_registry_scan.py [--files 1000] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from dtp_console.events import Bus
from dtp_console.registry.discovery import TwinCatalog
from dtp_console.registry.service import RegistryService
from dtp_console.registry.sqlite_repo import SqliteRepository
from dtp_console.registry.watch import TwinWatcher

_TWIN = """\
"@id": dt:Bench_{i:04d}
name: Bench twin {i}
tenant: tenant-{tenant}
metadata:
  domain: [manufacturing, bench]
  status: active
  serial: SN-{i:06d}
  installed: 2024-05-01
interfaces:
  data_streams:
    - MQTT:dtp/bench/{i}/value
    - MQTT:dtp/bench/{i}/alerts
dependencies:
  static: [dt:Bench_{dep:04d}]
  dynamic: []
"""
_COMPOSE = "services:\n  ui:\n    image: example.invalid/ui\n    ports: ['{port}:80']\n"


def generate(root: Path, count: int) -> None:
    """`count` twin folders, one in ten with a compose file whose `ui` port gives the API."""
    for i in range(count):
        folder = root / f"area{i % 10}" / f"twin{i:04d}"
        folder.mkdir(parents=True)
        text = _TWIN.format(i=i, tenant=i % 4, dep=(i + 1) % count)
        (folder / ("twin.json" if i % 50 == 0 else "twin.yaml")).write_text(
            text if i % 50 else _as_json(text), encoding="utf-8"
        )
        if i % 10 == 0:
            (folder / "compose.yaml").write_text(_COMPOSE.format(port=20000 + i))


def _as_json(yaml_text: str) -> str:
    import yaml

    return json.dumps(yaml.safe_load(yaml_text), default=str)


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


async def bench(count: int, repeat: int) -> dict[str, object]:
    """Run every measurement; print the figures and return them."""
    with tempfile.TemporaryDirectory(prefix="dtp-bench-registry-") as tmp:
        root = Path(tmp) / "twins"
        generate(root, count)

        scans: list[float] = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = TwinCatalog(root).scan()
            scans.append(time.perf_counter() - start)
        assert len(result.twins) == count, result.problems[:3]

        registers: list[float] = []
        rescans: list[float] = []
        for run in range(repeat):
            repo = SqliteRepository(Path(tmp) / f"registry-{run}.sqlite3")
            await repo.open()
            service = RegistryService(repo, Bus())
            start = time.perf_counter()
            report = await service.sync(TwinCatalog(root).scan())
            registers.append(time.perf_counter() - start)
            assert len(report.created) == count
            start = time.perf_counter()
            report = await service.sync(TwinCatalog(root).scan())
            rescans.append(time.perf_counter() - start)
            assert report.unchanged == count
            await repo.close()

        latency = await _watch_latency(root, Path(tmp) / "watch.sqlite3", samples=10)

    figures = {
        "files": count,
        "repeat": repeat,
        "python": platform.python_version(),
        "scan_ms": round(statistics.median(scans) * 1000, 1),
        "scan_register_sqlite_ms": round(statistics.median(registers) * 1000, 1),
        "rescan_unchanged_ms": round(statistics.median(rescans) * 1000, 1),
        "watch_latency_median_ms": round(statistics.median(latency) * 1000, 1),
        "watch_latency_max_ms": round(max(latency) * 1000, 1),
    }
    per_file = statistics.median(scans) / count * 1e6
    print(f"registry bench: {count} twin files, median of {repeat}")
    print(
        f"  scan (read + parse + normalise):        {_median_ms(scans)}  ({per_file:.0f} µs/file)"
    )
    print(f"  scan + register into a new SQLite file: {_median_ms(registers)}")
    print(f"  re-scan + sync, nothing changed:        {_median_ms(rescans)}")
    print(
        f"  watch: file written → registered:       {_median_ms(latency)}"
        f"  (max {max(latency) * 1000:.1f} ms, debounce 200 ms, {count} files watched)"
    )
    ratio = statistics.median(registers) / statistics.median(scans)
    print(f"  scan+register / scan: {ratio:.1f}x")
    return figures


async def _watch_latency(root: Path, db: Path, samples: int) -> list[float]:
    repo = SqliteRepository(db)
    await repo.open()
    service = RegistryService(repo, Bus())
    watcher = TwinWatcher(service, root, Bus(), debounce_ms=200)
    task = asyncio.create_task(watcher.run())
    await watcher.ready.wait()
    took: list[float] = []
    try:
        for i in range(samples):
            twin_id = f"dt:Watched_{i:03d}"
            path = root / "watched" / f"w{i}" / "twin.yaml"
            path.parent.mkdir(parents=True)
            start = time.perf_counter()
            path.write_text(f'"@id": {twin_id}\n', encoding="utf-8")
            while await service.find(twin_id) is None:  # noqa: ASYNC110 - polling is the measurement
                await asyncio.sleep(0.005)
            took.append(time.perf_counter() - start)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await repo.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    figures = asyncio.run(bench(args.files, args.repeat))
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
