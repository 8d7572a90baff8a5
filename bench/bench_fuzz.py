"""Fuzz bench: ≥ 100,000 generated payloads through every parser and `Bridge.handle`.

A seeded generator (repeatable: same `--seed`, same payloads) mixes

- near-valid payloads of the target's own format with 0-3 fields deleted or made
  hostile (NaN/Inf literals and strings, 1e400, 400- and 5,000-digit numbers,
  booleans, nested values, long strings, out-of-range timestamps),
- byte-level mutations of those (flips, cuts, insertions, repeats, truncation),
- arbitrary JSON values, arbitrary bytes, payloads of the other formats,
- hostile shapes: 10,000-level nesting, 1 MB payloads, huge numbers.

Each target — `parse_ati`, `parse_hitech`, `parse_generic`, `parse_vda5050` and one
`Bridge.handle`
per format (a bridge whose twinzo client is never called; `handle` does no I/O) —
gets `--count` payloads. Reported per target: outcomes and rejection reasons,
exceptions that escaped (must be 0; for the bridge also `rejected:internal_error`,
the exceptions its safety net caught), the accounting check (`received ==
outcomes + pending`), what reached the outbox and failed to serialise as twinzo
JSON (must be 0), and the throughput. Figures go to stdout and
`bench/results/bench_fuzz.json`; the exit status is 1 only when something escaped.

    .venv/bin/python bench/bench_fuzz.py                    # 100,000 per target
    .venv/bin/python bench/bench_fuzz.py --count 1000000 --seed 7
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson

from dtp_console.bridge.formats import parser_for
from dtp_console.bridge.parse import (
    Reading,
    Rejection,
    StatusOnly,
    parse_ati,
    parse_generic,
    parse_hitech,
)
from dtp_console.bridge.worker import Bridge
from dtp_console.config.model import GenericFields, PlantConfig, TwinzoConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.state import PlantState
from dtp_console.twinzo.client import TwinzoClient

RESULTS = Path(__file__).resolve().parent / "results" / "bench_fuzz.json"
IDS = ["r1", "r2", "r3", "ati_amr_001", "hitech-amr-001", "7", " r1 ", "", "ghost"]
DEVICE_MAP = {"r1": "tug-1", "r2": "tug-2", "r3": "tug-3", "ati_amr_001": "tug-4", "7": "tug-7"}
DEVICE_MAP["hitech-amr-001"] = "tug-5"
DEVICE_MAP["acme/AGV-1"] = "tug-8"
DEVICE_MAP["acme/AGV-2"] = "tug-9"
#: VDA 5050 serial numbers (the manufacturer is `acme`): mapped, unmapped, hostile.
VDA_SERIALS = ["AGV-1", "AGV-2", "AGV-3", " AGV-1", "", "ロボ\x1b[2J", "s" * 200]
VDA_TOPICS = ["visualization", "visualization", "state", "connection", "order"]
FORMATS = ("ati_sherpa", "hitech", "generic", "vda5050")
GENERIC = GenericFields(
    id="data.0.id", x="pos.x", y="pos.y", z="pos.z", battery="bat", timestamp="ts"
)
#: Raw JSON number literals spliced into payload text (JSON encoders cannot write them).
LITERALS = [b"1e400", b"-1e400", b"1" + b"0" * 400, b"9" * 5000, b"NaN", b"Infinity", b"1e-400"]
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    False,
    "",
    " ",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "1e400",
    "1" + "0" * 400,
    "9" * 5000,
    "١٢",
    "0x10",
    "\x00",
    1e300,
    -1e300,
    1e308,
    -1,
    0,
    2**53,
    2**63 - 1,
    [],
    {},
    [1, 2],
    {"x": 1},
    [[[[1]]]],
    "x" * 10_000,
]


class _NeverCalled:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Bridge.handle used the twinzo client ({name})")


class Generator:
    """Seeded payload generator for one format."""

    def __init__(self, fmt: str, seed: int) -> None:
        self.fmt = fmt
        self.rng = random.Random(f"{seed}:{fmt}")  # fuzzing, not security
        self.ts = 1_700_000_000_000
        self.header_id = 0
        self.serial = VDA_SERIALS[0]

    # -- valid bodies --------------------------------------------------------------

    def _number(self) -> Any:
        r = self.rng.random()
        value = self.rng.uniform(-100.0, 300.0)
        if r < 0.6:
            return round(value, 3)
        if r < 0.8:
            return int(value)
        return str(round(value, 2))

    def _valid(self, fmt: str) -> dict[str, Any]:
        rng = self.rng
        self.ts += rng.choice([0, 1, 500, 1000, 1000, 2000, -1000])
        if fmt == "ati_sherpa":
            size = rng.choice([3, 6])
            body: dict[str, Any] = {
                "sherpa_name": rng.choice(IDS),
                "mode": rng.choice(["fleet", "fleet", "Fleet", "manual"]),
                "pose": [self._number() for _ in range(size)],
                "battery_status": rng.uniform(0, 100),
            }
            if rng.random() < 0.1:
                body["disabled"] = rng.random() < 0.5
            return body
        if fmt == "hitech":
            body = {rng.choice(["device_id", "amr_id", "id"]): rng.choice(IDS)}
            coords = {"x": self._number() * 1000, "y": self._number() * 1000}
            layout = rng.random()
            if layout < 0.5:
                body["position"] = coords
            elif layout < 0.8:
                body.update(coords)
            else:
                body["status"] = rng.choice(["idle", "charging", "error"])
            body["battery"] = rng.uniform(0, 100)
            if rng.random() < 0.7:
                body["timestamp"] = self.ts
            return body
        if fmt == "vda5050":
            return self._vda()
        return {
            "data": [{"id": rng.choice(IDS)}],
            "pos": {"x": self._number(), "y": self._number(), "z": 0},
            "bat": rng.uniform(0, 100),
            "ts": self.ts,
        }

    def _vda(self) -> dict[str, Any]:
        """A VDA 5050 visualization/state/connection body (the topic decides which is read)."""
        rng = self.rng
        self.header_id += rng.choice([1, 1, 1, 1, 2, 0, -5, 1000])
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.ts / 1000))
        stamp += rng.choice(["Z", ".123Z", ".5+01:00", "", "-05:00", ".123456789Z"])
        body: dict[str, Any] = {
            "headerId": max(0, self.header_id),
            "timestamp": stamp,
            "version": "2.1.0",
            "manufacturer": "acme",
            "serialNumber": self.serial if rng.random() < 0.95 else rng.choice(VDA_SERIALS),
            "agvPosition": {
                "x": self._number(),
                "y": self._number(),
                "theta": rng.uniform(-3.2, 3.2),
                "mapId": rng.choice(["hall-1", "hall-2", ""]),
                "positionInitialized": rng.random() < 0.9,
                "localizationScore": rng.uniform(0, 1),
            },
            "connectionState": rng.choice(["ONLINE", "OFFLINE", "CONNECTIONBROKEN", "gone"]),
        }
        if rng.random() < 0.5:
            body.update(
                {
                    "driving": rng.random() < 0.5,
                    "operatingMode": rng.choice(["AUTOMATIC", "MANUAL", "SERVICE"]),
                    "batteryState": {"batteryCharge": rng.uniform(0, 100), "charging": False},
                    "errors": [
                        {"errorType": "e", "errorLevel": rng.choice(["WARNING", "FATAL"])}
                        for _ in range(rng.randint(0, 3))
                    ],
                    "safetyState": {"eStop": rng.choice(["NONE", "AUTOACK", "MANUAL"])},
                }
            )
        return body

    def _corrupt(self, node: Any) -> Any:
        """Delete or replace 1-3 random fields, nested ones included."""
        for _ in range(self.rng.randint(1, 3)):
            parents: list[tuple[Any, Any]] = []
            stack = [node]
            while stack:
                current = stack.pop()
                keys = list(current) if isinstance(current, dict) else range(len(current))
                for key in keys:
                    parents.append((current, key))
                    child = current[key]
                    if isinstance(child, dict | list):
                        stack.append(child)
            if not parents:
                break
            parent, key = self.rng.choice(parents)
            if isinstance(parent, dict) and self.rng.random() < 0.25:
                del parent[key]
            else:
                parent[key] = copy.deepcopy(self.rng.choice(HOSTILE_VALUES))
        return node

    # -- encodings and mutations ---------------------------------------------------

    def _encode(self, body: Any) -> bytes:
        r = self.rng.random()
        if r < 0.7:
            return orjson.dumps(body)
        text = json.dumps(body, allow_nan=True).encode()
        if r < 0.85:
            return text
        # Splice a raw literal over a number: what no encoder would write.
        digits = [i for i, c in enumerate(text) if 48 <= c <= 57]
        if not digits:
            return text
        at = self.rng.choice(digits)
        end = at
        while end < len(text) and text[end] in b"0123456789.eE+-":
            end += 1
        return text[:at] + self.rng.choice(LITERALS) + text[end:]

    def _mutate(self, data: bytes) -> bytes:
        buf = bytearray(data)
        rng = self.rng
        for _ in range(rng.randint(1, 4)):
            at = rng.randint(0, len(buf))
            op = rng.random()
            if op < 0.3 and buf:
                buf[min(at, len(buf) - 1)] ^= 1 << rng.randint(0, 7)
            elif op < 0.5:
                del buf[at : at + rng.randint(1, 8)]
            elif op < 0.7:
                buf[at:at] = rng.choice([b"[", b"{", b'"', b"\\", b"1e400", b"\xff", b"\x00", b","])
            elif op < 0.85:
                buf[at:at] = buf[at : at + rng.randint(1, 16)]
            else:
                del buf[at:]
        return bytes(buf)

    def _random_json(self, depth: int = 0) -> Any:
        rng = self.rng
        r = rng.random()
        if depth > 3 or r < 0.5:
            values = [*HOSTILE_VALUES, rng.random(), rng.randint(-(2**40), 2**40)]
            return copy.deepcopy(rng.choice(values))
        if r < 0.75:
            return [self._random_json(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(["x", "y", "id", "pose", "mode"]): self._random_json(depth + 1)}

    def _hostile(self) -> tuple[str, bytes]:
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            opener = rng.choice([b"[", b'{"a":', b'{"pose":'])
            n = rng.choice([100, 1_000, 1_025, 10_000])
            return "deep", opener * n + (b"]" * n if rng.random() < 0.5 else b"")
        # 1 MB payloads: rare, or the generated stream alone would take gigabytes.
        if r < 0.402:
            body = self._valid(self.fmt)
            body["pad"] = "x" * 1_000_000
            return "megabyte", orjson.dumps(body)
        if r < 0.404:
            return "megabyte", rng.randbytes(1_000_000)
        body = self._valid(self.fmt)
        text = orjson.dumps(body)
        return "huge_number", self._splice_all(text)

    def _splice_all(self, text: bytes) -> bytes:
        literal = self.rng.choice(LITERALS)
        out = bytearray()
        i = 0
        while i < len(text):
            c = text[i]
            if 48 <= c <= 57 or c == 45:
                while i < len(text) and text[i] in b"0123456789.eE+-":
                    i += 1
                out += literal
            else:
                out.append(c)
                i += 1
        return bytes(out)

    def next(self) -> tuple[str, str, bytes]:
        """(kind, topic, payload)."""
        rng = self.rng
        topics = ["ati_fm/sherpa/status", f"hitech/amr/{rng.choice(IDS)}/position", "", "a/b/c/d/e"]
        if self.fmt == "vda5050":
            self.serial = rng.choice(VDA_SERIALS)
            topics += [f"uagv/v2/acme/{self.serial}/{rng.choice(VDA_TOPICS)}"] * 8
        topic = rng.choice(topics)
        r = rng.random()
        if r < 0.3:
            return "valid", topic, self._encode(self._valid(self.fmt))
        if r < 0.55:
            return "corrupted", topic, self._encode(self._corrupt(self._valid(self.fmt)))
        if r < 0.75:
            return "mutated", topic, self._mutate(self._encode(self._valid(self.fmt)))
        if r < 0.83:
            return "random_json", topic, self._encode(self._random_json())
        if r < 0.9:
            return "random_bytes", topic, rng.randbytes(rng.randint(0, 300))
        if r < 0.95:
            other = rng.choice([f for f in FORMATS if f != self.fmt])
            return "other_format", topic, self._encode(self._valid(other))
        kind, payload = self._hostile()
        return kind, topic, payload


def _classify(result: object) -> str:
    if isinstance(result, Rejection):
        return f"rejected:{result.reason}"
    if isinstance(result, Reading):
        finite = all(math.isfinite(v) for v in (result.x, result.y, result.z))
        return "reading" if finite else "reading:NON_FINITE"
    if isinstance(result, StatusOnly):
        return "status_only"
    return f"UNEXPECTED:{type(result).__name__}"


def _plant(fmt: str) -> PlantConfig:
    return PlantConfig.model_validate(
        {
            "name": f"Bench {fmt}",
            "format": fmt,
            "device_map": DEVICE_MAP,
            "twinzo": {"sector_id": 1},
            "affine": {"A": 999.74, "B": 22.88, "C": 22.88, "D": -999.74, "TX": 95598.8},
            "bounds": {"x_min": -1e9, "x_max": 1e9, "y_min": -1e9, "y_max": 1e9},
            "drop_out_of_bounds": True,
            "min_post_interval_ms": 0,
            "max_payload_bytes": 2_000_000,
            "generic": GENERIC.model_dump(),
        }
    )


def run_parser(
    name: str, parse: Callable[[str, bytes], object], fmt: str, count: int, seed: int
) -> dict[str, Any]:
    """`count` generated payloads through one parser."""
    gen = Generator(fmt, seed)
    items = [gen.next() for _ in range(count)]
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter(kind for kind, _t, _p in items)
    escaped: Counter[str] = Counter()
    first: dict[str, str] = {}
    started = time.perf_counter()
    for _kind, topic, payload in items:
        try:
            outcomes[_classify(parse(topic, payload))] += 1
        except Exception as exc:  # counting what escapes is the point
            key = type(exc).__name__
            escaped[key] += 1
            first.setdefault(key, f"{payload[:120]!r}: {traceback.format_exc(limit=3)}")
    elapsed = time.perf_counter() - started
    return {
        "target": name,
        "payloads": count,
        "bytes": sum(len(p) for _k, _t, p in items),
        "kinds": dict(sorted(kinds.items())),
        "outcomes": dict(sorted(outcomes.items())),
        "escaped": sum(escaped.values()),
        "escaped_by_type": dict(escaped),
        "first_escape": first,
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed),
    }


def run_bridge(fmt: str, count: int, seed: int) -> dict[str, Any]:
    """`count` generated payloads through `Bridge.handle`, the outbox flushed as a poster would."""
    gen = Generator(fmt, seed)
    items = [gen.next() for _ in range(count)]
    plant = _plant(fmt)
    state = PlantState(plant.name)
    bridge = Bridge(
        plant,
        TwinzoConfig(),
        cast(TwinzoClient, _NeverCalled()),
        state,
        OpsLog(Bus(), 10.0),
        address=("127.0.0.1", 1),
    )
    counters = state.counters
    returned: Counter[str] = Counter()
    escaped: Counter[str] = Counter()
    unserialisable = 0
    flushed = 0
    started = time.perf_counter()
    for i, (_kind, topic, payload) in enumerate(items):
        counters.received += 1
        now = 1000.0 + i * 0.01
        try:
            returned[bridge.handle(topic, payload, now=now)] += 1
        except Exception as exc:  # counting what escapes is the point
            escaped[type(exc).__name__] += 1
        if i % 64 == 63 or i == count - 1:
            for location in bridge.outbox.take_all():
                try:
                    orjson.dumps([location.payload(plant.twinzo.sector_id)])
                except (orjson.JSONEncodeError, TypeError, ValueError):
                    unserialisable += 1
                bridge.outbox.done(location, now)
                counters.count("forwarded")  # what a successful poster would count
                flushed += 1
    elapsed = time.perf_counter() - started
    internal = counters.outcomes.get("rejected:internal_error", 0)
    return {
        "target": f"Bridge.handle[{fmt}]",
        "payloads": count,
        "outcomes": dict(sorted(counters.outcomes.items())),
        "returned": dict(sorted(returned.items())),
        "escaped": sum(escaped.values()) + internal,
        "escaped_by_type": {**escaped, **({"internal_error": internal} if internal else {})},
        "received": counters.received,
        "pending": counters.pending,
        "accounting_ok": counters.received == counters.outcomes.total() + len(bridge.outbox),
        "flushed_to_outbox_reader": flushed,
        "unserialisable": unserialisable,
        "unknown_ids_kept": len(state.unknown),
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed),
    }


def main() -> int:
    """Run every target and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="payloads per target")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    generic = parse_generic(GENERIC)
    for name, parse, fmt in (
        ("parse_ati", parse_ati, "ati_sherpa"),
        ("parse_hitech", parse_hitech, "hitech"),
        ("parse_generic", generic, "generic"),
        ("parse_vda5050", parser_for(_plant("vda5050")), "vda5050"),
    ):
        results.append(run_parser(name, parse, fmt, args.count, args.seed))
    for fmt in FORMATS:
        results.append(run_bridge(fmt, args.count, args.seed))

    total = sum(r["payloads"] for r in results)
    escaped = sum(r["escaped"] for r in results)
    bad = escaped + sum(r.get("unserialisable", 0) for r in results)
    bad += sum(0 if r.get("accounting_ok", True) else 1 for r in results)
    for r in results:
        print(
            f"{r['target']:<24} {r['payloads']:>9,} payloads  {r['per_second']:>9,}/s  "
            f"escaped {r['escaped']}"
            + (
                f"  accounting {'ok' if r['accounting_ok'] else 'BROKEN'}"
                f"  unserialisable {r['unserialisable']}"
                if "accounting_ok" in r
                else ""
            )
        )
        for outcome, n in r["outcomes"].items():
            print(f"    {outcome:<32} {n:>8,}")
    print(f"TOTAL {total:,} payloads, {escaped} exceptions escaped")
    report = {
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "seed": args.seed,
        "count_per_target": args.count,
        "total_payloads": total,
        "exceptions_escaped": escaped,
        "targets": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
