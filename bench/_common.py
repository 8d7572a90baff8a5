"""Helpers shared by the bridge benchmark: a private mosquitto, payloads, child processes.

Besides being imported, this file runs as a child process so that load does not
compete with the event loop under test:

``python bench/_common.py publish --port P --devices 50 --messages N``
    publishes N HiTech positions as fast as paho-mqtt can (QoS 0);
``python bench/_common.py publish --port P --devices 50 --rate R --seconds S [--record F]``
    paces R msg/s for S seconds, stamping each message with its send time (unix ms)
    and optionally writing every (device index, timestamp) to F;
``python bench/_common.py baseline --port P --url URL ... --seconds S``
    the replaced design: paho-mqtt callbacks calling ``requests.post`` per message.

Each child prints ``READY`` when it is connected (the baseline: subscribed) and
one JSON line with its figures last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.ports import free_port, wait_port

__all__ = [
    "TOPIC_FILTER",
    "BenchBroker",
    "device_ids",
    "free_port",
    "hitech_payload",
    "percentile",
    "wait_port",
]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
TOPIC_FILTER = "hitech/amr/+/position"
#: Every child gives up after this long, whatever it was asked to do.
_CHILD_HARD_LIMIT_S = 900.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values` (0 < q ≤ 100); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class BenchBroker:
    """A mosquitto on a free loopback port that queues enough for a slow subscriber.

    The default ``max_queued_messages 1000`` makes mosquitto drop QoS 0 *and* 1
    messages once a subscriber is 1,000 behind (FIELD-NOTES); a burst benchmark
    would then measure the broker's dropping, not the client. ``sys_interval 1``
    keeps ``$SYS/broker/publish/messages/dropped`` fresh so drops can be reported.
    """

    def __init__(self, directory: Path, *, max_queued: int = 1_000_000) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "mosquitto.conf"
        lines = []
        if os.geteuid() == 0:
            lines.append("user root")  # keep root: the private directory stays readable
        lines += [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            f"max_queued_messages {max_queued}",
            "max_queued_bytes 0",  # 0 = no byte limit (the default, stated for the reader)
            "max_inflight_messages 0",  # QoS 1/2 only; unlimited so it can never throttle
            "sys_interval 1",
            f"log_dest file {directory / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> BenchBroker:
        """Start mosquitto and wait until its port accepts."""
        out = (self.directory / "mosquitto.out").open("ab")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=out)
        out.close()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) the process this object started, by its PID."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> BenchBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def hitech_bench_plant(
    name: str, robots: int, rate_hz: float, broker: dict[str, Any]
) -> dict[str, Any]:
    """The attach benches' plant: `robots` mapped HiTech robots simulated at `rate_hz` each."""
    return {
        "name": name,
        "format": "hitech",
        "broker": broker,
        "device_map": {f"hitech-amr-{n:03d}": f"bench-{n:03d}" for n in range(1, robots + 1)},
        "twinzo": {"sector_id": 2},
        "min_post_interval_ms": 0,
        "simulator": {
            "robots": robots,
            "unmapped": 0,
            "rate_hz": rate_hz,
            "seed": 5,
            "fault_rate": 0,
        },
    }


def device_ids(count: int) -> list[str]:
    """Vendor ids ``amr-000`` … of a fleet of `count`."""
    return [f"amr-{i:03d}" for i in range(count)]


def hitech_payload(device: str, timestamp_ms: int, seq: int) -> bytes:
    """A ~200-byte HiTech position; `seq` moves the robot along a loop on the floor."""
    angle = seq * 0.01
    body = {
        "device_id": device,
        "timestamp": timestamp_ms,
        "position": {
            "x": round(20_000.0 + 15_000.0 * math.cos(angle), 1),
            "y": round(12_000.0 + 9_000.0 * math.sin(angle), 1),
            "z": 0,
        },
        "battery": 85,
        "status": "moving",
        "speed": 500,
        "sector_id": 1,
        "heading": round(math.degrees(angle) % 360.0, 1),
        "seq": seq,
    }
    return json.dumps(body).encode()


# -- child: publisher ---------------------------------------------------------------


def _paho_client(client_id: str) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )


def _connect_blocking(client: mqtt.Client, port: int, timeout: float = 10.0) -> None:
    connected = threading.Event()

    def on_connect(*_args: Any) -> None:
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=60)
    deadline = time.monotonic() + timeout
    while not connected.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("publisher could not connect")
        client.loop(timeout=0.05)


def _publish_main(args: argparse.Namespace) -> dict[str, Any]:
    """Publish without a network thread: each `publish` writes to the socket directly."""
    client = _paho_client(f"bench-pub-{os.getpid()}")
    _connect_blocking(client, args.port)
    devices = device_ids(args.devices)
    topics = [f"hitech/amr/{d}/position" for d in devices]
    last_ts = [0] * len(devices)
    # (device index, timestamp) of every message, for publish → visible figures.
    sent_log: list[tuple[int, int]] | None = [] if args.record else None
    print("READY", flush=True)
    paced = args.rate > 0
    total = int(args.rate * args.seconds) if paced else args.messages
    started = time.monotonic()
    hard_deadline = started + _CHILD_HARD_LIMIT_S
    sent = 0
    while sent < total:
        now = time.monotonic()
        if now > hard_deadline:
            break
        due = min(total, int((now - started) * args.rate) + 1) if paced else total
        while sent < due:
            k = sent % len(devices)
            # Send time in unix ms, strictly increasing per device (a repeat is a duplicate).
            ts = max(last_ts[k] + 1, int(time.time() * 1000))
            last_ts[k] = ts
            if sent_log is not None:
                sent_log.append((k, ts))
            client.publish(topics[k], hitech_payload(devices[k], ts, sent), qos=0)
            sent += 1
            if not paced and sent % 5_000 == 0:
                client.loop_misc()
        if paced and sent < total:
            next_due = started + sent / args.rate
            # loop() doubles as the sleep and keeps the connection serviced.
            client.loop(timeout=max(0.0, next_due - time.monotonic()))
    finished = time.monotonic()
    while client.want_write() and time.monotonic() < finished + 30:
        client.loop(timeout=0.01)
    flushed = time.monotonic()
    client.disconnect()
    if sent_log is not None:
        Path(args.record).write_text(json.dumps(sent_log))
    seconds = max(flushed - started, 1e-9)
    return {
        "published": sent,
        "seconds": round(seconds, 4),
        "rate": round(sent / seconds, 1),
        "paced_rate": args.rate if paced else None,
    }


# -- child: the replaced design -------------------------------------------------------


def _baseline_main(args: argparse.Namespace) -> dict[str, Any]:
    """paho-mqtt `on_message` → `requests.post`, synchronously, one message at a time."""
    device_map = dict(zip(device_ids(args.devices), args.logins.split(","), strict=True))
    sessions: dict[str, dict[str, Any]] = {}
    stop = threading.Event()
    forwarded_at: list[float] = []
    lag_ms: list[float] = []
    failures: dict[str, int] = {}
    handled = [0]

    def authenticate(login: str) -> dict[str, Any]:
        response = requests.post(
            f"{args.url}/v3/authorization/authenticate",
            json={"client": args.client, "login": login, "password": args.password},
            headers={"Api-Key": args.api_key},
            timeout=5,
        )
        response.raise_for_status()
        token: dict[str, Any] = response.json()
        return token

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        if stop.is_set():
            return
        handled[0] += 1
        data = json.loads(message.payload)
        login = device_map.get(data["device_id"])
        if login is None:
            return
        auth = sessions.get(login)
        if auth is None:
            auth = sessions[login] = authenticate(login)
        position = data["position"]
        location = {
            "Timestamp": int(data["timestamp"]),
            "SectorId": 1,
            "X": float(position["x"]),
            "Y": float(position["y"]),
            "Z": 0.0,
            "Interval": 1000,
            # The replaced design sent `85.0`; the SDK-typed sandbox refuses a float for a
            # `byte?` (HTTP 400), which left this baseline with nothing forwarded to compare.
            "Battery": round(float(data["battery"])),
            "IsMoving": True,
            "LocalizationAreas": [],
            "NoGoAreas": [],
        }
        headers = {
            "Client": auth["Client"],
            "Branch": auth["Branch"],
            "Token": auth["Token"],
            "Api-Key": args.api_key,
        }
        try:
            response = requests.post(
                f"{args.url}/v3/localization", json=[location], headers=headers, timeout=5
            )
        except requests.RequestException as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return
        now = time.time()
        if response.status_code == 200:
            forwarded_at.append(now)
            lag_ms.append(now * 1000.0 - data["timestamp"])
        else:
            key = str(response.status_code)
            failures[key] = failures.get(key, 0) + 1

    subscribed = threading.Event()
    client = _paho_client(f"bench-baseline-{os.getpid()}")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(TOPIC_FILTER, qos=0)
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(10):
        raise TimeoutError("baseline could not subscribe")
    started = time.time()
    print("READY", flush=True)
    # Bounded: the backlog the design builds up is measured, never drained.
    time.sleep(min(args.seconds, _CHILD_HARD_LIMIT_S))
    stop.set()
    stopped = time.time()
    client.disconnect()
    client.loop_stop()
    windows: list[dict[str, Any]] = []
    for second in range(math.ceil(stopped - started)):
        lo, hi = started + second, started + second + 1
        lags = [lag for t, lag in zip(forwarded_at, lag_ms, strict=True) if lo <= t < hi]
        windows.append(
            {
                "second": second,
                "forwarded": len(lags),
                "lag_p50_ms": round(percentile(lags, 50), 1) if lags else None,
                "lag_max_ms": round(max(lags), 1) if lags else None,
            }
        )
    span = (forwarded_at[-1] - forwarded_at[0]) if len(forwarded_at) > 1 else 0.0
    return {
        "handled": handled[0],
        "forwarded": len(forwarded_at),
        "seconds": round(stopped - started, 3),
        "rate": round((len(forwarded_at) - 1) / span, 1) if span > 0 else 0.0,
        "failures": failures,
        "lag_first_s_ms": windows[0]["lag_p50_ms"] if windows else None,
        "lag_last_ms": round(lag_ms[-1], 1) if lag_ms else None,
        "windows": windows,
    }


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    pub = sub.add_parser("publish", help="publish HiTech positions")
    pub.add_argument("--port", type=int, required=True)
    pub.add_argument("--devices", type=int, default=50)
    pub.add_argument("--messages", type=int, default=100_000, help="burst size (unpaced)")
    pub.add_argument("--rate", type=float, default=0.0, help="msg/s; 0 = burst")
    pub.add_argument("--seconds", type=float, default=10.0, help="paced duration")
    pub.add_argument("--record", help="write [[device index, timestamp ms], ...] here")
    base = sub.add_parser("baseline", help="the replaced paho + requests design")
    base.add_argument("--port", type=int, required=True)
    base.add_argument("--devices", type=int, default=50)
    base.add_argument("--url", required=True)
    base.add_argument("--client", required=True)
    base.add_argument("--password", required=True)
    base.add_argument("--api-key", required=True)
    base.add_argument("--logins", required=True, help="comma-separated, one per device")
    base.add_argument("--seconds", type=float, default=11.0)
    args = parser.parse_args(argv)
    result = _publish_main(args) if args.mode == "publish" else _baseline_main(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
