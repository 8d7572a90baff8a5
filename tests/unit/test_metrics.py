"""`/metrics` over a real engine (sandbox, private mosquitto, registry, embedded stores).

The output is read back with the Prometheus client's own parser: names and
types, labels, counters that add up to the `--stats-json` numbers, hostile
names that come out escaped, and a scrape that never waits on a slow registry.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dtp_console import __version__, metrics
from dtp_console.metrics import CONTENT_TYPE, render_metrics
from dtp_console.registry.lifecycle import STATUSES
from dtp_console.runtime import Engine
from dtp_console.state import DeviceState, Histogram, PlantState
from tests.support.engine import ROOT, engine_config, running, until
from tests.support.mosquitto import MosquittoServer, free_port

HOSTILE_PLANT = 'Plant "A"\\ \n<b>[red]Zürich[/red]</b> ✓ }{ # HELP'
HOSTILE_ID = 'amr "7" \\ <script>é</script>\nx{le="1"}'
ATI_TOPIC = "ati_fm/sherpa/status"

#: Every family the engine exports, with its type (histogram/counter names without suffix).
FAMILIES = {
    "dtp_build_info": "gauge",
    "dtp_start_time_seconds": "gauge",
    "dtp_engine_started": "gauge",
    "dtp_plant_received": "counter",
    "dtp_plant_outcomes": "counter",
    "dtp_plant_pending_messages": "gauge",
    "dtp_plant_unknown_device_ids": "gauge",
    "dtp_plant_out_of_bounds": "counter",
    "dtp_plant_worker_restarts": "counter",
    "dtp_mqtt_connected": "gauge",
    "dtp_mqtt_connects": "counter",
    "dtp_device_posts": "counter",
    "dtp_device_messages": "counter",
    "dtp_twinzo_post_duration_seconds": "histogram",
    "dtp_twinzo_authentications": "counter",
    "dtp_twinzo_token_refreshes": "counter",
    "dtp_twinzo_tokens": "gauge",
    "dtp_store_spool_pending_records": "gauge",
    "dtp_store_spool_submitted_records": "counter",
    "dtp_store_spool_written_records": "counter",
    "dtp_store_spool_dropped_records": "counter",
    "dtp_store_spool_write_retries": "counter",
    "dtp_store_up": "gauge",
    "dtp_store_ping_duration_seconds": "gauge",
    "dtp_registry_up": "gauge",
    "dtp_registry_twins": "gauge",
    "dtp_registry_twins_age_seconds": "gauge",
    "dtp_registry_twin_count_errors": "counter",
    "dtp_platform_messages": "counter",
    # The HTTP API's own (the engine runs it: `api.enabled` is on by default).
    "dtp_api_requests": "counter",
    "dtp_api_writes": "counter",
    "dtp_api_writes_unrecorded": "counter",
    "dtp_api_stream_clients": "gauge",
    "dtp_api_stream_events": "counter",
    "dtp_api_stream_delivered": "counter",
    "dtp_api_stream_cut_off": "counter",
    "dtp_api_stream_refused": "counter",
    "dtp_api_stream_bus_dropped": "counter",
    "dtp_api_stream_owner_lookups": "counter",
    "dtp_api_stream_owner_lookups_failed": "counter",
}


class Scrape:
    """One parsed exposition: samples by name, families by name."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    def series(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]


async def scrape(engine: Engine) -> Scrape:
    return Scrape((await render_metrics(engine)).decode("utf-8"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    with MosquittoServer(tmp_path / "mosquitto") as server:
        yield server


def _ati(vendor_id: str, x: float) -> bytes:
    return orjson.dumps({"sherpa_name": vendor_id, "mode": "fleet", "pose": [x, 2.0, 0.0]})


@pytest.fixture
async def busy_engine(
    broker: MosquittoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Engine]:
    """An engine with traffic behind it: forwarded, unknown and rejected messages, two
    plants (one with a hostile name and vendor id), twins registered, spools that
    dropped (one record each at most), a token refreshed."""
    import aiomqtt

    monkeypatch.setattr(metrics, "TWIN_COUNT_TTL_S", 0.0)
    config = engine_config(
        tmp_path,
        broker.port,
        plants=[
            {"name": HOSTILE_PLANT, "device_map": {HOSTILE_ID: "tugger-07"}},
            {
                "name": "HiTech Plant",
                "format": "hitech",
                "device_map": {"hitech-amr-001": "tugger-03"},
                "twinzo": {"sector_id": 1},
            },
        ],
        stores={"spool_max": 1},
        # Refresh-ahead is half a lifetime at most: a 2 s token is refreshed after 1 s.
        sandbox={"token_lifetime_s": 2.0},
    )
    engine = Engine(config, simulate=False)
    async with running(engine):
        await until(
            lambda: all(p.mqtt == "connected" for p in engine.state.plants.values()),
            what="both plants connected",
        )
        await until(lambda: engine.registry is not None, what="registry open")
        now = int(time.time() * 1000)
        hitech = {"device_id": "hitech-amr-001", "timestamp": now, "position": {"x": 5, "y": 6}}
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for payload in (_ati(HOSTILE_ID, 1.0), _ati("ati_amr_999", 1.0), b"{not json"):
                await client.publish(ATI_TOPIC, payload, qos=1)
            await client.publish("hitech/amr/x/position", orjson.dumps(hitech), qos=1)
            hostile = engine.state.plants[HOSTILE_PLANT]
            await until(lambda: hostile.counters.received == 3, what="3 ATI messages")
            await asyncio.sleep(1.2)  # the token is due for its refresh now
            await client.publish(ATI_TOPIC, _ati(HOSTILE_ID, 3.0), qos=1)
        plants = engine.state.plants.values()
        await until(
            lambda: (
                sum(p.counters.received for p in plants) == 5
                and all(p.counters.pending == 0 for p in plants)
            ),
            what="every message has an outcome",
        )
        await until(
            lambda: engine.state.auth_for("tugger-07").refreshes >= 1, what="a token refresh"
        )
        await until(
            lambda: (
                engine.state.store_stats is not None and engine.state.store_stats()["dropped"] > 0
            ),
            what="a spool drop",
        )
        yield engine


@pytest.mark.integration
async def test_names_types_and_labels(busy_engine: Engine) -> None:
    result = await scrape(busy_engine)
    types = {name: family.type for name, family in result.families.items()}
    assert types == FAMILIES
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    for name, kind in FAMILIES.items():
        assert name.startswith("dtp_")
        if kind == "counter":
            assert f"# TYPE {name}_total counter" in result.text
            assert all(s.name == f"{name}_total" for s in result.families[name].samples)
    labels = {name: {k for s in f.samples for k in s.labels} for name, f in result.families.items()}
    assert labels["dtp_plant_outcomes"] == {"plant", "outcome"}
    assert labels["dtp_device_posts"] == {"plant", "vendor_id", "login", "result"}
    assert labels["dtp_twinzo_post_duration_seconds"] == {"path", "le"}
    assert labels["dtp_store_spool_pending_records"] == {"role", "store"}
    assert labels["dtp_registry_twins"] == {"status"}
    assert result.value("dtp_engine_started") == 1
    assert result.value("dtp_registry_up") == 1
    assert result.value("dtp_build_info", version=__version__) == 1


@pytest.mark.integration
async def test_counters_add_up_to_the_stats_json(busy_engine: Engine) -> None:
    result = await scrape(busy_engine)
    stats = busy_engine.state.as_dict()  # the traffic is over: nothing counts meanwhile
    for plant, data in stats["plants"].items():
        received = result.value("dtp_plant_received_total", plant=plant)
        assert received == data["received"]
        outcomes = {
            s.labels["outcome"]: s.value
            for s in result.series("dtp_plant_outcomes_total")
            if s.labels["plant"] == plant
        }
        assert {k: v for k, v in outcomes.items() if v} == data["outcomes"]
        assert {"forwarded", "coalesced", "unknown_device", "status_only"} <= set(outcomes)
        pending = result.value("dtp_plant_pending_messages", plant=plant)
        assert sum(outcomes.values()) + pending == received
        assert result.value("dtp_mqtt_connects_total", plant=plant) == data["connects"] == 1
        assert result.value("dtp_mqtt_connected", plant=plant) == 1
        for login, device in data["devices"].items():
            ids = {"plant": plant, "vendor_id": device["vendor_id"], "login": login}
            assert result.value("dtp_device_posts_total", **ids, result="ok") == device["posts_ok"]
            failed = result.value("dtp_device_posts_total", **ids, result="failed")
            assert failed == device["posts_failed"]
            assert result.value("dtp_device_messages_total", **ids) == device["messages"]
    hostile = stats["plants"][HOSTILE_PLANT]
    assert hostile["outcomes"]["forwarded"] == 2
    assert hostile["outcomes"]["unknown_device"] == 1
    assert sum(v for k, v in hostile["outcomes"].items() if k.startswith("rejected:")) == 1
    assert result.value("dtp_plant_unknown_device_ids", plant=HOSTILE_PLANT) == 1
    for login, auth in stats["auth"].items():
        assert (
            result.value("dtp_twinzo_authentications_total", login=login) == auth["authentications"]
        )
        assert result.value("dtp_twinzo_token_refreshes_total", login=login) == auth["refreshes"]
    assert result.value("dtp_twinzo_token_refreshes_total", login="tugger-07") >= 1
    statuses = Counter(auth["status"] for auth in stats["auth"].values())
    for status in ("none", "valid", "refreshing", "failed"):
        assert result.value("dtp_twinzo_tokens", status=status) == statuses[status]
    spools = stats["stores"]["spools"]
    assert spools
    for key, spool in spools.items():
        role, store = key.split(":")
        labels = {"role": role, "store": store}
        assert result.value("dtp_store_spool_pending_records", **labels) == spool["pending"]
        for field, name in (
            ("submitted", "submitted_records"),
            ("written", "written_records"),
            ("dropped", "dropped_records"),
            ("retries", "write_retries"),
        ):
            assert result.value(f"dtp_store_spool_{name}_total", **labels) == spool[field], key
    dropped = sum(s.value for s in result.series("dtp_store_spool_dropped_records_total"))
    assert dropped == stats["stores"]["dropped"] > 0
    for name, health in stats["stores"]["health"].items():
        up = [s for s in result.series("dtp_store_up") if s.labels["store"] == name]
        assert [s.value for s in up] == [1.0 if health["ok"] else 0.0]
    assert busy_engine.registry is not None
    twins = Counter(t.status for t in await busy_engine.registry.list_twins())
    assert sum(twins.values()) >= 5
    for status in STATUSES:
        assert result.value("dtp_registry_twins", status=status) == twins[status]


@pytest.mark.integration
async def test_post_latency_histogram_counts_every_post(busy_engine: Engine) -> None:
    result = await scrape(busy_engine)
    posts = sum(s.value for s in result.series("dtp_device_posts_total"))
    count = result.value("dtp_twinzo_post_duration_seconds_count", path="/v3/localization")
    assert count >= posts >= 3
    total = result.value("dtp_twinzo_post_duration_seconds_sum", path="/v3/localization")
    assert 0 < total < count * 5  # seconds, not milliseconds
    buckets = [
        (float(s.labels["le"]), s.value)
        for s in result.series("dtp_twinzo_post_duration_seconds_bucket")
    ]
    assert buckets == sorted(buckets)  # bounds increase, cumulative counts never fall
    assert buckets[-1] == (float("inf"), count)


@pytest.mark.integration
async def test_hostile_names_come_out_escaped_and_read_back_exactly(
    busy_engine: Engine,
) -> None:
    result = await scrape(busy_engine)
    plants = {s.labels["plant"] for s in result.series("dtp_plant_received_total")}
    assert plants == {HOSTILE_PLANT, "HiTech Plant"}
    vendor_ids = {s.labels["vendor_id"] for s in result.series("dtp_device_messages_total")}
    assert HOSTILE_ID in vendor_ids
    # On the wire: every line is a comment or one sample; the newline, the quotes and
    # the backslash are escaped, the rest (non-ASCII, markup) is UTF-8 as it was.
    escaped = 'plant="Plant \\"A\\"\\\\ \\n<b>[red]Zürich[/red]</b> ✓ }{ # HELP"'
    assert escaped in result.text
    for line in result.text.splitlines():
        assert line.startswith(("# HELP dtp_", "# TYPE dtp_", "dtp_")), line


async def test_label_values_python_cannot_encode_do_not_break_a_scrape(tmp_path: Path) -> None:
    engine = Engine(engine_config(tmp_path, free_port(), registry=False), simulate=False)
    name = "bad \ud800 surrogate"
    state = engine.state.plants[name] = PlantState(name)
    state.devices["dev\udfff"] = DeviceState(vendor_id="dev\udfff", login="tugger-01")
    result = await scrape(engine)
    assert result.value("dtp_plant_received_total", plant="bad ? surrogate") == 0
    assert result.value("dtp_device_messages_total", plant="bad ? surrogate", vendor_id="dev?",
                        login="tugger-01") == 0  # fmt: skip
    # Not started: no start time, not started, no registry.
    assert "dtp_start_time_seconds" not in result.families
    assert result.value("dtp_engine_started") == 0
    assert result.value("dtp_registry_up") == 0
    assert "dtp_registry_twins" not in result.families


def test_histogram_buckets_follow_prometheus_le_semantics() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1]  # a value equal to a bound is in that bucket
    assert histogram.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert histogram.count == 5
    assert histogram.sum == pytest.approx(8.65)
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram((1.0, 1.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(())


async def test_exported_histogram_matches_the_state(tmp_path: Path) -> None:
    engine = Engine(engine_config(tmp_path, free_port(), registry=False), simulate=False)
    histogram = engine.state.post_histogram("/v3/localization/batch")
    for value in (0.003, 0.2, 0.2, 50.0):
        histogram.observe(value)
    result = await scrape(engine)
    path = "/v3/localization/batch"
    assert result.value("dtp_twinzo_post_duration_seconds_count", path=path) == 4
    assert result.value("dtp_twinzo_post_duration_seconds_sum", path=path) == pytest.approx(50.403)
    assert result.value("dtp_twinzo_post_duration_seconds_bucket", path=path, le="0.005") == 1
    assert result.value("dtp_twinzo_post_duration_seconds_bucket", path=path, le="0.25") == 3
    assert result.value("dtp_twinzo_post_duration_seconds_bucket", path=path, le="30.0") == 3
    assert result.value("dtp_twinzo_post_duration_seconds_bucket", path=path, le="+Inf") == 4


async def test_a_registry_per_engine_and_never_the_global_one(tmp_path: Path) -> None:
    one = Engine(engine_config(tmp_path / "1", free_port(), registry=False), simulate=False)
    two = Engine(engine_config(tmp_path / "2", free_port(), registry=False), simulate=False)
    one.state.plants["One"] = PlantState("One")
    one.state.plants["One"].counters.received = 3
    two.state.plants["Two"] = PlantState("Two")
    first, second = await scrape(one), await scrape(two)
    assert {s.labels["plant"] for s in first.series("dtp_plant_received_total")} == {"One"}
    assert {s.labels["plant"] for s in second.series("dtp_plant_received_total")} == {"Two"}
    one.state.plants["One"].counters.received = 4  # read at scrape time, not copied
    assert (await scrape(one)).value("dtp_plant_received_total", plant="One") == 4
    exposed = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "dtp_" not in exposed


class _SlowRepository:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    async def list_twins(self) -> list[Any]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return []


class _SlowRegistry:
    """Stands in for `RegistryService` where only `repository.list_twins()` is read."""

    def __init__(self, delay: float) -> None:
        self.repository = _SlowRepository(delay)


async def test_a_slow_registry_never_holds_a_scrape_and_is_read_once_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "TWIN_COUNT_WAIT_S", 0.05)
    engine = Engine(engine_config(tmp_path, free_port(), registry=False), simulate=False)
    slow = _SlowRegistry(delay=2.0)
    engine.registry = slow  # type: ignore[assignment]
    results = await asyncio.wait_for(
        asyncio.gather(*(scrape(engine) for _ in range(5))), timeout=1.5
    )
    assert slow.repository.calls == 1  # one read in flight, shared by every scrape
    assert all("dtp_registry_twins" not in r.families for r in results)  # nothing read yet
    await asyncio.sleep(2.1)
    after = await scrape(engine)
    assert after.value("dtp_registry_twins", status="active") == 0
    assert slow.repository.calls == 1  # fresh within the TTL: no second read
    engine.registry = None
    gone = await scrape(engine)
    assert "dtp_registry_twins" not in gone.families  # the old registry's figures are void


async def test_a_failing_registry_read_is_counted(tmp_path: Path) -> None:
    class _Broken:
        async def list_twins(self) -> list[Any]:
            raise RuntimeError("database is gone")

    engine = Engine(engine_config(tmp_path, free_port(), registry=False), simulate=False)
    registry = _SlowRegistry(0)
    registry.repository = _Broken()  # type: ignore[assignment]
    engine.registry = registry  # type: ignore[assignment]
    await scrape(engine)
    result = await scrape(engine)
    assert result.value("dtp_registry_twin_count_errors_total") >= 1


def test_the_hot_path_does_not_import_the_metrics_library() -> None:
    code = (
        "import sys\n"
        "import dtp_console.runtime, dtp_console.twinzo.client, dtp_console.bridge.worker\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
        "assert 'dtp_console.metrics' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
