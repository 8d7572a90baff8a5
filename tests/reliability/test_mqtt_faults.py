"""MQTT faults: a broker that crashes under load, is absent at start-up, or speaks the wrong TLS.

Each test runs a real `Bridge` against a private mosquitto and counts the
bridge's connect attempts by wrapping `aiomqtt.Client` (only clients whose id
is the bridge's `dtp-console-…` are counted, not the test's publishers).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from dtp_console.mqtt import client as mqtt_client
from dtp_console.mqtt import source as mqtt_source
from tests.reliability.conftest import (
    TOPIC,
    StartBridge,
    at_least,
    ati,
    plant_config,
    publish,
    until,
)
from tests.support.mosquitto import MosquittoServer, TlsFiles, free_port

pytestmark = pytest.mark.integration

RESTARTS = 10
#: How long each outage lasts (the broker is down; the bridge keeps trying).
DOWN_S = 1.0
#: Reconnect backoff of these tests: 0.1 s doubling to a 0.4 s cap, jittered ×[0.5, 1].
INITIAL_S, CAP_S = 0.1, 0.4


class Attempts:
    """Connect attempts of the bridge: one `aiomqtt.Client` is built per attempt."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def between(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t < end)


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> Attempts:
    seen = Attempts()
    real = aiomqtt.Client

    class _Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if str(kwargs.get("identifier", "")).startswith("dtp-console-"):
                seen.times.append(time.monotonic())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(aiomqtt, "Client", _Counting)
    return seen


class LoadPublisher:
    """Publishes positions of two robots at ~200 msg/s, reconnecting whenever it can."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.paused = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="load-publisher")

    async def _run(self) -> None:
        seq = 0
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, timeout=2) as client:
                    while True:
                        if self.paused.is_set():
                            await asyncio.sleep(0.02)
                            continue
                        seq += 1
                        robot = f"ati_amr_00{1 + seq % 2}"
                        await client.publish(TOPIC, ati(robot, float(seq % 500), 1.0), qos=0)
                        self.sent += 1
                        await asyncio.sleep(0.005)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _mqtt_warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("WARN MQTT Old Plant")]


async def test_broker_killed_and_restarted_ten_times_under_load(
    tmp_path: Path, start_bridge: StartBridge, attempts: Attempts
) -> None:
    server = MosquittoServer(tmp_path / "crashing").start()
    load: LoadPublisher | None = None
    try:
        plant, twinzo = plant_config(
            server.port, broker={"reconnect_initial_s": INITIAL_S, "reconnect_max_s": CAP_S}
        )
        # A repeat window shorter than the gap between outages: each outage gets its line.
        rig = await start_bridge(plant, twinzo, repeat_window_s=0.9 * DOWN_S)
        state = rig.state
        await until(lambda: state.connects == 1, what="first connect")
        load = LoadPublisher(server.port)
        await until(lambda: state.counters.received >= 50, what="intake under load")
        for outage in range(1, RESTARTS + 1):
            rig.read()
            server.kill()
            down_at = time.monotonic()
            await until(lambda: state.mqtt != "connected", what=f"outage {outage} noticed")
            await asyncio.sleep(DOWN_S - (time.monotonic() - down_at))
            tried = attempts.between(down_at, time.monotonic())
            # Backoff, not a busy loop: delays ≥ 0.05, 0.1, 0.2, 0.2 … s fit ≤ 6 in 1 s.
            assert 2 <= tried <= 6, f"outage {outage}: {tried} connect attempts in {DOWN_S}s"
            server.start()
            await until(at_least(lambda: state.connects, outage + 1), what=f"reconnect {outage}")
            assert state.connects == outage + 1
            # Intake resumes: the publisher reconnects and its messages arrive again.
            await until(
                at_least(lambda: state.counters.received, state.counters.received + 20),
                what=f"intake after restart {outage}",
            )
            said = _mqtt_warnings(rig.read())
            assert 1 <= len(said) <= 3, f"outage {outage}: {said}"
            for line in said:
                assert re.search(r"\(127\.0\.0\.1:\d+\): .+; retrying in \d+\.\ds", line), line
            reasons = " ".join(said)
            assert "Disconnected" in reasons or "connection refused" in reasons, said
        assert state.connects == RESTARTS + 1
        assert rig.task is not None and not rig.task.done(), "the bridge is still running"

        # One subscription, not eleven: a single message is received exactly once.
        load.paused.set()
        await asyncio.sleep(0.2)
        before = state.counters.received
        await publish(server.port, [(TOPIC, ati("ati_amr_001", 9.0, 9.0))])
        await until(lambda: state.counters.received > before, what="the single message")
        await asyncio.sleep(0.3)
        assert state.counters.received == before + 1
    finally:
        if load is not None:
            await load.close()
        server.stop()


async def test_broker_down_at_start_up_retries_with_capped_jittered_backoff(
    tmp_path: Path, start_bridge: StartBridge, attempts: Attempts
) -> None:
    port = free_port()
    server = MosquittoServer(tmp_path / "late", port=port)
    try:
        plant, twinzo = plant_config(
            port, broker={"reconnect_initial_s": INITIAL_S, "reconnect_max_s": CAP_S}
        )
        rig = await start_bridge(plant, twinzo)
        state = rig.state
        await asyncio.sleep(2.0)
        assert state.connects == 0
        assert state.mqtt in ("disconnected", "connecting")
        gaps = [b - a for a, b in zip(attempts.times, attempts.times[1:], strict=False)]
        # ~0.05-0.1, 0.1-0.2, then capped at 0.2-0.4 s: about 7 attempts in 2 s, never a spin.
        assert 4 <= len(attempts.times) <= 12, attempts.times
        assert all(gap <= CAP_S + 0.15 for gap in gaps), gaps
        capped = gaps[3:]
        assert capped, gaps
        assert all(gap >= CAP_S / 2 - 0.02 for gap in capped), gaps
        assert max(capped) - min(capped) > 0.005, f"no jitter: {gaps}"
        said = _mqtt_warnings(rig.read())
        assert said, "the outage is logged"
        assert "connection refused" in said[0]
        assert len(said) == 1, f"repeats are folded: {said}"
        server.start()
        took = await until(lambda: state.connects == 1, timeout=CAP_S + 2.0, what="connect")
        assert took <= CAP_S + 1.0
        await publish(port, [(TOPIC, ati("ati_amr_001", 1.0, 1.0))])
        await until(lambda: state.counters.received == 1, what="intake")
    finally:
        server.stop()


@pytest.fixture
def short_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiomqtt waits 10 s for a CONNACK; 1 s keeps the plain-vs-TLS test short."""
    real = mqtt_client.client_kwargs

    def _short(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**real(*args, **kwargs), "timeout": 1.0}

    monkeypatch.setattr(mqtt_source, "client_kwargs", _short)


@pytest.mark.usefixtures("short_connect_timeout")
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("plain client, TLS port", "if this port expects TLS, set tls: true"),
        ("TLS client, plain port", "TLS handshake failed"),
    ],
)
async def test_tls_mismatch_says_why_and_keeps_retrying(
    tmp_path: Path,
    tls_mosquitto: MosquittoServer,
    tls_files: TlsFiles,
    start_bridge: StartBridge,
    attempts: Attempts,
    case: str,
    expected: str,
) -> None:
    if case.startswith("plain"):
        port = tls_mosquitto.port
        broker: dict[str, Any] = {"username": "bridge", "password": "test-pass"}
        plain = None
    else:
        plain = MosquittoServer(tmp_path / "plain").start()
        port = plain.port
        broker = {"tls": True, "ca_file": str(tls_files.ca)}
    try:
        plant, twinzo = plant_config(
            port, broker={**broker, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.3}
        )
        rig = await start_bridge(plant, twinzo)
        state = rig.state
        await until(lambda: state.mqtt == "disconnected", timeout=5, what="first failure")
        assert expected in state.mqtt_detail, state.mqtt_detail
        said = _mqtt_warnings(rig.read())
        assert said and expected in said[0], said
        assert "retrying in" in said[0]
        first = len(attempts.times)
        await until(lambda: len(attempts.times) >= first + 2, timeout=5, what="more attempts")
        assert state.connects == 0
        assert rig.task is not None and not rig.task.done(), "no crash"
    finally:
        if plain is not None:
            plain.stop()
