"""A plant's intake never dies silently.

Before: an exception other than `MqttError` in the connect loop (a CA file gone
since load, a topic filter paho refuses) ended the source task; the plant showed
`connecting` forever, nothing was logged, and the process exited 0. Now the loop
logs it, shows `disconnected` with the reason and retries; and `Bridge.run`
restarts a source or poster task that died anyway, logged and counted.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dtp_console.bridge import worker
from dtp_console.bridge.poster import Poster
from dtp_console.mqtt import source as mqtt_source
from tests.reliability.conftest import (
    TOPIC,
    StartBridge,
    ati,
    plant_config,
    publish,
    until,
)
from tests.support.mosquitto import MosquittoServer, make_tls_files

pytestmark = pytest.mark.integration

FAST = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.1}


def _lines(lines: list[str], pattern: str) -> list[str]:
    return [line for line in lines if re.search(pattern, line)]


async def test_a_ca_file_gone_since_load_is_logged_and_retried(
    tmp_path: Path, start_bridge: StartBridge
) -> None:
    files = make_tls_files(tmp_path / "tls")
    plant, twinzo = plant_config(
        1, broker={"tls": True, "ca_file": str(files.ca), "port": 8883, **FAST}
    )
    files.ca.unlink()  # valid at load, gone when the bridge starts (a botched cert rotation)
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.mqtt == "disconnected", what="a visible failure, not connecting")
    assert "FileNotFoundError" in rig.state.mqtt_detail
    await until(lambda: bool(_lines(rig.read(), r"^WARN MQTT Old Plant")), what="a WARN line")
    said = _lines(rig.lines, r"^WARN MQTT Old Plant")
    assert len(said) == 1, f"one folded line, not one per attempt: {said}"
    assert "FileNotFoundError" in said[0] and "retrying in" in said[0]
    assert rig.task is not None and not rig.task.done()
    assert rig.state.source_restarts == 0, "the loop itself survived"


async def test_a_filter_the_client_refuses_is_logged_and_retried(
    mosquitto: MosquittoServer, start_bridge: StartBridge
) -> None:
    plant, twinzo = plant_config(mosquitto.port, broker=FAST)
    # Load refuses this filter now; bypass validation to reach the run-time path.
    broker = plant.broker.model_copy(update={"topics": ["hitech/#/position"]})
    plant = plant.model_copy(update={"broker": broker})
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.mqtt == "disconnected", what="a visible failure")
    assert "ValueError" in rig.state.mqtt_detail, rig.state.mqtt_detail
    await until(lambda: bool(_lines(rig.read(), r"^WARN MQTT Old Plant.*ValueError")))
    assert rig.task is not None and not rig.task.done()


def _dies_once(real: Callable[..., Awaitable[None]]) -> tuple[Callable[..., Any], list[int]]:
    calls: list[int] = []

    async def _flaky(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        await real(*args, **kwargs)

    return _flaky, calls


async def test_a_dead_source_task_is_reported_and_restarted(
    mosquitto: MosquittoServer, start_bridge: StartBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky, calls = _dies_once(mqtt_source.run_source)
    monkeypatch.setattr(worker, "run_source", flaky)
    plant, twinzo = plant_config(mosquitto.port)
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.connects == 1, what="connected after the restart")
    assert len(calls) == 2
    assert rig.state.source_restarts == 1
    failed = _lines(rig.read(), r"^FAIL MQTT source of Old Plant died")
    assert len(failed) == 1 and "RuntimeError: simulated crash" in failed[0], rig.lines
    await publish(mosquitto.port, [(TOPIC, ati("ati_amr_001", 1.0, 2.0))])
    await until(lambda: rig.state.counters.outcomes["forwarded"] == 1, what="forwarded")
    assert rig.state.as_dict()["source_restarts"] == 1


async def test_a_dead_poster_task_is_reported_and_restarted(
    mosquitto: MosquittoServer, start_bridge: StartBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky, calls = _dies_once(Poster.run)
    monkeypatch.setattr(Poster, "run", flaky)
    plant, twinzo = plant_config(mosquitto.port)
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.poster_restarts == 1, what="the poster restart")
    await until(lambda: rig.state.connects == 1, what="connected")
    await publish(mosquitto.port, [(TOPIC, ati("ati_amr_001", 1.0, 2.0))])
    await until(lambda: rig.state.counters.outcomes["forwarded"] == 1, what="posted again")
    assert len(calls) == 2
    failed = _lines(rig.read(), r"^FAIL poster of Old Plant died")
    assert len(failed) == 1 and "simulated crash" in failed[0]


async def test_a_source_that_keeps_dying_backs_off_and_still_stops(
    start_bridge: StartBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def _always(*_args: Any, **_kwargs: Any) -> None:
        calls.append(1)
        raise RuntimeError("broken")

    monkeypatch.setattr(worker, "run_source", _always)
    plant, twinzo = plant_config(1)
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.source_restarts >= 3, timeout=10, what="three restarts")
    assert len(calls) <= 5, "restarts back off, they do not spin"
    assert rig.state.mqtt == "disconnected" and "broken" in rig.state.mqtt_detail
    assert len(_lines(rig.read(), r"^FAIL MQTT source")) == 1, "repeats are folded"
    rig.stop.set()
    assert rig.task is not None
    await until(rig.task.done, timeout=3, what="a prompt stop during the backoff")
