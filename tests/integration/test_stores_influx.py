"""InfluxDB 2 adapter against VictoriaMetrics (write path, ping, export read-back).

VictoriaMetrics has no Flux and no `/health` JSON: the Flux read-back is
exercised only against a real InfluxDB 2 (`DTP_TEST_INFLUX_URL`, with
`DTP_TEST_INFLUX_TOKEN`, `DTP_TEST_INFLUX_ORG`, `DTP_TEST_INFLUX_BUCKET`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from dtp_console.stores.config import InfluxConfig
from dtp_console.stores.influx import InfluxObservationStore
from dtp_console.stores.protocols import ObservationStore, StoreError
from dtp_console.stores.records import Observation, Signal
from tests.support.victoria import VICTORIA_METRICS, VictoriaMetricsServer, export_selector

pytestmark = pytest.mark.integration

# Recent (the stand-in keeps one month) and on a whole second.
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """One VictoriaMetrics for the module (a test may stop and restart it)."""
    if VICTORIA_METRICS is None:
        pytest.skip(
            "victoria-metrics is not installed (apt victoria-metrics; scripts/bootstrap.sh)"
        )
    with VictoriaMetricsServer(tmp_path_factory.mktemp("victoria")) as server:
        yield server


@pytest.fixture
async def store(victoria: VictoriaMetricsServer) -> AsyncIterator[InfluxObservationStore]:
    adapter = InfluxObservationStore(
        InfluxConfig(url=victoria.url, token=SecretStr("ignored-by-vm"), batch_size=3)
    )
    await adapter.open()
    yield adapter
    await adapter.close()


_attempts = itertools.count()


async def export(url: str, signal_id: uuid.UUID, metric: str = "observation_value") -> list[Any]:
    """All (timestamp ms, value) pairs VictoriaMetrics holds for the signal."""
    selector = export_selector(metric, next(_attempts), signal_id=str(signal_id))
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{url}/api/v1/export", params={"match[]": selector})
    response.raise_for_status()
    pairs: list[Any] = []
    for line in response.content.splitlines():
        series = orjson.loads(line)
        assert series["metric"]["signal_id"] == str(signal_id)
        pairs += zip(series["timestamps"], series["values"], strict=True)
    return sorted(pairs)


async def poll_export(
    url: str,
    signal_id: uuid.UUID,
    count: int,
    metric: str = "observation_value",
    timeout: float = 8.0,
) -> list[Any]:
    """Poll the export until `count` points are visible (≈1–2 s visibility lag)."""
    deadline = time.monotonic() + timeout
    while True:
        pairs = await export(url, signal_id, metric)
        if len(pairs) >= count or time.monotonic() > deadline:
            return pairs
        await asyncio.sleep(0.1)


def test_adapter_satisfies_the_protocol() -> None:
    adapter: ObservationStore = InfluxObservationStore(InfluxConfig(url="http://127.0.0.1:1"))
    assert adapter.name == "influx"
    with pytest.raises(ValueError, match="no url"):
        InfluxObservationStore(InfluxConfig())


async def test_ping(store: InfluxObservationStore) -> None:
    await store.ping()


async def test_write_then_read_back_through_export(
    store: InfluxObservationStore, victoria: VictoriaMetricsServer
) -> None:
    signal = uuid.uuid4()
    batch = [
        Observation(signal, T0 + dt.timedelta(seconds=i), value_double=20.0 + i) for i in range(7)
    ]
    skipped = [
        Observation(signal, T0 + dt.timedelta(minutes=1), value_double=math.nan),
        Observation(signal, T0 + dt.timedelta(minutes=2)),
    ]
    await store.write_observations([*batch, *skipped])  # batch_size 3: three requests
    pairs = await poll_export(victoria.url, signal, len(batch))
    expected = [(int(o.ts.timestamp() * 1000), o.value_double) for o in batch]
    assert pairs == expected

    # Idempotent on (signal_id, ts): rewriting overwrites, no duplicates.
    await store.write_observations(batch[:2])
    await asyncio.sleep(2)
    assert await export(victoria.url, signal) == expected


async def test_text_values_go_to_a_text_field(
    store: InfluxObservationStore, victoria: VictoriaMetricsServer
) -> None:
    signal = uuid.uuid4()
    await store.write_observations([Observation(signal, T0, value_text="open")])
    # VictoriaMetrics keeps a string field as 0 (a real InfluxDB keeps the text).
    pairs = await poll_export(victoria.url, signal, 1, metric="observation_text")
    assert pairs == [(int(T0.timestamp() * 1000), 0)]
    assert await export(victoria.url, signal) == []  # no `value` field was written


async def test_write_signals_is_a_no_op(store: InfluxObservationStore) -> None:
    await store.write_signals([Signal(uuid.uuid4(), "room temp", "°C")])


async def test_probe_reads_back_through_export(store: InfluxObservationStore) -> None:
    started = time.monotonic()
    await store.probe()
    assert store.probe_read_path == "export"
    assert time.monotonic() - started < 4


async def test_http_error_is_a_store_error(victoria: VictoriaMetricsServer) -> None:
    adapter = InfluxObservationStore(InfluxConfig(url=f"{victoria.url}/no-such-prefix"))
    await adapter.open()
    try:
        with pytest.raises(StoreError, match=r"^influx ping: HTTP 400: .*unsupported path"):
            await adapter.ping()
    finally:
        await adapter.close()


async def test_not_open_is_a_store_error() -> None:
    adapter = InfluxObservationStore(InfluxConfig(url="http://127.0.0.1:1"))
    with pytest.raises(StoreError, match="not open"):
        await adapter.ping()


async def test_server_down_then_back(
    store: InfluxObservationStore, victoria: VictoriaMetricsServer
) -> None:
    signal = uuid.uuid4()
    victoria.stop()
    try:
        with pytest.raises(
            StoreError, match=r"^influx ping: cannot reach http://127\.0\.0\.1"
        ) as e:
            await store.ping()
        assert "\n" not in str(e.value)
        with pytest.raises(StoreError, match=r"^influx write: cannot reach"):
            await store.write_observations([Observation(signal, T0, value_double=1.0)])
        with pytest.raises(StoreError, match=r"^influx ping: cannot reach"):
            await store.probe()
    finally:
        victoria.start()
    await store.ping()
    await store.write_observations([Observation(signal, T0, value_double=2.0)])
    assert await poll_export(victoria.url, signal, 1) == [(int(T0.timestamp() * 1000), 2.0)]
    await store.probe()


@pytest.mark.skipif(
    not os.environ.get("DTP_TEST_INFLUX_URL"),
    reason="needs a real InfluxDB 2 (set DTP_TEST_INFLUX_URL): VictoriaMetrics has no Flux",
)
async def test_real_influxdb2_probe_reads_back_with_flux() -> None:
    env = os.environ
    adapter = InfluxObservationStore(
        InfluxConfig(
            url=env["DTP_TEST_INFLUX_URL"],
            token=SecretStr(env.get("DTP_TEST_INFLUX_TOKEN", "")),
            org=env.get("DTP_TEST_INFLUX_ORG", "dtp"),
            bucket=env.get("DTP_TEST_INFLUX_BUCKET", "signals"),
        )
    )
    await adapter.open()
    try:
        await adapter.ping()
        await adapter.probe()
        assert adapter.probe_read_path == "flux"
    finally:
        await adapter.close()
