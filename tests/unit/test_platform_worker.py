"""The platform worker's intake: mapping, per-family accounting, rings, hostile input."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from dtp_console.config.model import ConsoleConfig, PlatformConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.ingest.rings import MAX_STREAMS, Rings, belongs_to
from dtp_console.ingest.worker import PlatformWorker, topic_family
from dtp_console.simulator.config import GeneratorsConfig
from dtp_console.simulator.generators import TwinGenerators
from dtp_console.stores.mapping import Mapped


class _Sink:
    def __init__(self) -> None:
        self.mapped: list[Mapped] = []

    def submit_mapped(self, mapped: Mapped) -> None:
        self.mapped.append(mapped)


def _worker(**platform: Any) -> tuple[PlatformWorker, _Sink]:
    config = PlatformConfig.model_validate(platform)
    worker = PlatformWorker(config, OpsLog(Bus()))
    sink = _Sink()
    worker.stores = sink
    return worker, sink


def _exact(worker: PlatformWorker) -> None:
    for family, counters in worker.families.items():
        assert counters.received == counters.outcomes.total(), family


def test_generator_messages_map_and_fill_the_rings() -> None:
    worker, sink = _worker()
    gens = TwinGenerators(GeneratorsConfig.model_validate({"lift": {"spike_probability": 0.5}}))
    messages = [m for _ in range(100) for m in gens.step(0.5)]
    for topic, payload in messages:
        worker.handle(topic, payload)
    _exact(worker)
    assert worker.totals().received == len(messages)
    assert worker.totals().group("mapped:") == len(messages)
    assert len(sink.mapped) == len(messages)
    names = {s.name for s in worker.rings.streams.values()}
    assert "Lift_001 vibration RMS" in names
    assert {"HVAC_001 power", "room1 temperature"} <= names
    lift = worker.rings.streams_of("dt:Lift_001", ["MQTT:dtp/lift/alerts"])
    assert [s.name for s in lift] == ["Lift_001 vibration RMS"]
    assert lift[0].threshold == 4.5
    assert worker.rings.events_of(["MQTT:dtp/lift/alerts"])


@pytest.mark.parametrize(
    ("topic", "payload", "outcome"),
    [
        ("dtp/lift/L1/vibration", b"\xff\xfe", "rejected:malformed JSON"),
        ("dtp/lift/L1/vibration", b'{"value": true}', "rejected:value is not a number"),
        ("dtp/lift/L1/vibration", b'{"value": 1e999}', "rejected:malformed JSON"),
        ("dtp/lift/L1/vibration", b'{"value": 1, "ts": "yesterday"}', None),
        ("dtp/lift/alerts", b"[" * 5000 + b"]" * 5000, None),
        ("dtp/sensors/r/temp", b"{}", "rejected:value is not a number"),
        ("dtp/\x1b[31m/[b]x[/b]", b"{}", "rejected:unmapped topic"),
        ("dtp/lift/alerts", b"x" * 70_000, "rejected:too_large"),
    ],
)
def test_hostile_messages_end_in_one_counted_rejection(
    topic: str, payload: bytes, outcome: str | None
) -> None:
    worker, sink = _worker()
    worker.handle(topic, payload)
    _exact(worker)
    (only,) = worker.totals().outcomes
    assert only.startswith("rejected:")
    if outcome is not None:
        assert only == outcome
    assert not sink.mapped


def test_queue_drops_count_in_their_family() -> None:
    worker, _ = _worker()
    worker._dropped("dtp/lift/L1/vibration")
    worker.handle("dtp/lift/L1/vibration", b'{"value": 1}')
    lift = worker.families["dtp/lift"]
    assert lift.received == 2
    assert lift.outcomes["dropped:queue_full"] == 1
    _exact(worker)


def test_families_are_bounded() -> None:
    worker, _ = _worker()
    for i in range(200):
        worker.handle(f"dtp/f{i}/x", b"{}")
    assert len(worker.families) <= 65
    assert worker.totals().received == 200
    _exact(worker)


def test_generic_streams_map_other_twins() -> None:
    worker, sink = _worker(
        streams=[
            {"topic": "dtp/press/+/force", "value": "data.kn", "unit": "kN", "twin": "dt:Press_1",
             "threshold": 80},
            {"topic": "dtp/press/+/alarm", "kind": "event", "severity": 2},
        ]
    )  # fmt: skip
    worker.handle("dtp/press/p1/force", orjson.dumps({"data": {"kn": 42.5}}))
    worker.handle("dtp/press/p1/force", orjson.dumps({"data": {"kn": "x"}}))
    worker.handle("dtp/press/p1/alarm", orjson.dumps({"text": "jam"}))
    outcomes = worker.totals().outcomes
    assert outcomes["mapped:stream"] == 1
    assert outcomes["mapped:stream_event"] == 1
    assert outcomes["rejected:data.kn is not a number"] == 1
    (ring,) = worker.rings.streams_of("dt:Press_1", [])
    assert (ring.unit, ring.threshold, ring.latest()) == ("kN", 80, 42.5)
    assert sink.mapped[1].events[0].severity == 2


def test_generic_mapping_ignores_the_builtin_topics() -> None:
    worker, _ = _worker(mapping="generic")
    worker.handle("dtp/lift/L1/vibration", b'{"value": 1}')
    assert worker.totals().outcomes == {"rejected:unmapped topic": 1}


def test_rings_are_bounded() -> None:
    rings = Rings(points=10)
    for i in range(MAX_STREAMS + 5):
        rings.observe(uuid.uuid4(), f"dtp/x/{i}", 0.0, 1.0, name="n", unit=None)
    assert len(rings.streams) == MAX_STREAMS
    assert rings.overflow == 5
    sid = next(iter(rings.streams))
    for i in range(100):
        rings.observe(sid, "dtp/x/0", float(i), float(i), name="n", unit=None)
    assert len(rings.streams[sid].points) == 10


def test_belongs_to_needs_two_levels() -> None:
    assert belongs_to("dtp/lift/L1/vibration", ["dtp/lift/alerts"])
    assert not belongs_to("dtp/lift/L1/vibration", ["dtp/alerts"])
    assert topic_family("dtp/lift/L1/vibration") == "dtp/lift"


def test_legacy_room_topic_is_read_as_a_reading() -> None:
    config = ConsoleConfig()
    worker = PlatformWorker(
        config.platform, OpsLog(Bus()), reading_topics=frozenset({"factory/room7/temp"})
    )
    worker.handle("factory/room7/temp", b'{"value": 20.5, "unit": "degC", "name": "Room 7"}')
    assert worker.totals().outcomes == {"mapped:reading": 1}


def test_stats_line_counts_and_escapes_hostile_families() -> None:
    from dtp_console.headless import platform_stats_line

    worker, _ = _worker()
    worker.handle("dtp/lift/L1/vibration", b'{"value": 1}')
    worker.handle("dtp/\x1b]0;pwned\x07/x", b"{}")
    worker.state.counters.count("dropped:queue_full")  # the queue counts its drops
    worker._dropped("dtp/lift/L1/vibration")
    worker.state.counters.received = 3  # and every arrival
    line = platform_stats_line(worker.stats_dict())
    assert line.startswith(
        "STATS platform: mqtt stopped | rx 3 mapped 1 rej 1 drop 1 fail 0 pend 0"
    )
    assert "\x1b" not in line and "\x07" not in line
    assert "dtp/lift 2" in line


def test_config_show_masks_the_platform_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from dtp_console.cli import main

    path = tmp_path / "console.yaml"
    path.write_text("platform: {broker: {host: 127.0.0.1, password: test-platform-secret}}\n")
    main(["-c", str(path), "config", "show", "--json"])
    out = capsys.readouterr().out
    assert "test-platform-secret" not in out
    assert '"platform"' in out


def test_the_sources_full_queue_tells_the_worker_each_dropped_topic() -> None:
    import aiomqtt

    from dtp_console.mqtt.client import client_kwargs

    worker, _ = _worker(broker={"host": "127.0.0.1", "queue_size": 10})
    kwargs = client_kwargs(
        worker.config, "127.0.0.1", 1883, worker.state.counters, session=True,
        on_drop=worker._dropped,
    )  # fmt: skip
    queue = kwargs["queue_type"](2)
    for i in range(5):
        queue.put_nowait(
            aiomqtt.Message(f"dtp/lift/L{i}/vibration", b'{"value": 1}', 0, False, 0, None)
        )
    while not queue.empty():
        message = queue.get_nowait()
        worker.handle(message.topic.value, message.payload)
    lift = worker.families["dtp/lift"]
    assert worker.state.counters.received == lift.received == 5
    assert lift.outcomes == {"mapped:lift_vibration": 2, "dropped:queue_full": 3}
    assert worker.state.counters.outcomes == lift.outcomes
    assert kwargs["identifier"].startswith("dtp-console-platform-")
