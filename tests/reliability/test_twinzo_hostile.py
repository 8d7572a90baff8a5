"""Hostile twinzo-side values through a real broker and the sandbox (issue 13, FAIL 2 and 3).

A non-ASCII API key (config validation bypassed, as a caller building a
`TwinzoClient` by hand could) used to raise `UnicodeEncodeError` inside httpx:
the key was printed in "Task exception was never retrieved", the device stayed
`refreshing` and `received != Σ outcomes`. A `Retry-After: 86400` used to hold a
plant's posting for a day. Both now end in counted, logged outcomes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest
from pydantic import SecretStr

from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.reliability.conftest import (
    TOPIC,
    StartBridge,
    ati,
    logins,
    plant_config,
    publish,
    until,
)
from tests.support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

#: A key with one pasted non-breaking space; `Zx81` must never be shown.
BAD_KEY = "tz-Key-Zx81\u00a0PqWv4"


async def test_non_ascii_api_key_fails_counted_and_never_echoed(
    mosquitto: MosquittoServer,
    sandbox: TwinzoSandbox,
    start_bridge: StartBridge,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    plant, twinzo = plant_config(mosquitto.port, devices=2)
    # model_copy skips validation: the client must survive what the config now refuses.
    twinzo = twinzo.model_copy(update={"api_key": SecretStr(BAD_KEY), "auth_backoff_s": 0.0})
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.mqtt == "connected", what="MQTT connected")
    vendors = list(logins(2))
    messages = [(TOPIC, ati(vendor, float(i), 1.0)) for i in range(3) for vendor in vendors]
    with caplog.at_level(logging.DEBUG):
        await publish(mosquitto.port, messages)
        counters = rig.state.counters
        await until(
            lambda: counters.received == len(messages) and counters.pending == 0,
            what="every message has an outcome",
        )
        gc.collect()  # an unretrieved task exception is reported when the task is collected
        await asyncio.sleep(0.05)
    assert counters.received == counters.outcomes.total() == len(messages)
    assert counters.outcomes["failed:auth"] >= 1, counters.outcomes
    assert counters.outcomes["forwarded"] == 0
    auth = rig.bridge.poster.client.state.auth
    for login in logins(2).values():
        assert auth[login].status == "failed", auth[login]
        assert auth[login].last_error == "internal error: UnicodeEncodeError"
    assert sandbox.stats.requests == 0, "nothing with a broken header went out"
    lines = rig.read()
    assert any("OAuth failed for tugger-001" in line for line in rig.lines), lines
    shown = "\n".join([*rig.lines, caplog.text, *capfd.readouterr()])
    assert "never retrieved" not in shown
    assert "Zx81" not in shown


@pytest.mark.parametrize("token", ["warm", "cold"])
async def test_retry_after_86400_is_capped_and_logged(
    mosquitto: MosquittoServer, sandbox: TwinzoSandbox, start_bridge: StartBridge, token: str
) -> None:
    """warm: the 429 answers the localization POST; cold: the device's authentication."""
    backoff_max = 0.5  # plant_config's backoff_max_s; retry_after_max_s defaults to it
    plant, twinzo = plant_config(mosquitto.port, devices=1, twinzo={"max_attempts": 10})
    assert twinzo.retry_after_cap_s == backoff_max
    rig = await start_bridge(plant, twinzo)
    await until(lambda: rig.state.mqtt == "connected", what="MQTT connected")
    vendor = next(iter(logins(1)))
    before = 0
    if token == "warm":
        await publish(mosquitto.port, [(TOPIC, ati(vendor, 1.0, 1.0))])
        await until(lambda: len(sandbox.locations()) == 1, what="first position forwarded")
        before = 1
    sandbox.set_faults(rate_429=1.0, retry_after_s=86400)
    await publish(mosquitto.port, [(TOPIC, ati(vendor, 2.0, 1.0))])
    await until(lambda: sandbox.stats.faults_injected["rate_429"] >= 1, what="one 429 answered")
    sandbox.set_faults(rate_429=0.0)
    answered = time.monotonic()
    took = await until(
        lambda: len(sandbox.locations()) == before + 1, timeout=5, what="retry went out"
    )
    # The hold is capped to backoff_max_s; the flush tick and loop add a little.
    assert took <= backoff_max + 0.5, f"posted {took:.2f}s after the 429"
    assert time.monotonic() - answered < 86400
    rig.read()
    warns = [line for line in rig.lines if line.startswith("WARN") and "Retry-After" in line]
    assert len(warns) == 1, rig.lines
    assert "Old Plant" in warns[0]
    assert "86400" in warns[0]
    assert "0.5s" in warns[0]
    assert ("(authentication)" in warns[0]) == (token == "cold")
    counters = rig.state.counters
    await until(lambda: counters.pending == 0, what="drained")
    assert counters.received == counters.outcomes.total() == before + 1
    assert counters.outcomes["forwarded"] == before + 1
