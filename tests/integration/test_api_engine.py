"""The API inside a running console: banner, event_log entries, a taken port, health routes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dtp_console.api.errors import ApiBindError
from dtp_console.config import load_config
from dtp_console.events import LogLine, Subscription
from dtp_console.runtime import Engine
from tests.support.api import TOKENS, auth, require_module, token_entries

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, listen: str = "127.0.0.1:0", **api: Any) -> Path:
    twins = tmp_path / "twins" / "lift"
    twins.mkdir(parents=True)
    (twins / "twin.yaml").write_text('"@id": dt:Lift_001\ntenant: plant-a\n', encoding="utf-8")
    tokens = [t.model_dump() for t in token_entries()]
    body = {
        "twinzo": {"client": "demo", "password": "change-me", "api_key": "change-me"},
        "sandbox": {"enabled": True},
        "simulator": {"enabled": False},
        "registry": {
            "twins_root": str(tmp_path / "twins"),
            "sqlite_path": str(tmp_path / "reg.db"),
            "debounce_ms": 50,
        },
        "stores": {
            "sqlite_path": str(tmp_path / "platform.db"),
            "blob_dir": str(tmp_path / "blobs"),
        },
        "api": {"listen": listen, "tokens": tokens, **api},
    }
    path = tmp_path / "console.yaml"
    path.write_text(json.dumps(body), encoding="utf-8")  # JSON is YAML
    return path


class _Running:
    def __init__(
        self, engine: Engine, stop: asyncio.Event, task: asyncio.Task[None], lines: Subscription
    ) -> None:
        self.engine, self.stop, self.task, self.lines = engine, stop, task, lines

    def rendered(self) -> list[str]:
        return [e.render() for e in self.lines.drain() if isinstance(e, LogLine)]


async def _start(path: Path) -> AsyncIterator[_Running]:
    engine = Engine(load_config(path), config_path=path)
    lines = engine.bus.subscribe()
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.wait_for(engine.ready.wait(), 15)
    try:
        yield _Running(engine, stop, task, lines)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[_Running]:
    async for value in _start(_config(tmp_path)):
        yield value


async def _wait_registry(engine: Engine) -> None:
    async with asyncio.timeout(10):
        while engine.registry is None or await engine.registry.find("dt:Lift_001") is None:
            await asyncio.sleep(0.05)


async def test_the_console_serves_the_registry_and_logs_each_write(
    running: _Running, tmp_path: Path
) -> None:
    engine = running.engine
    assert engine.api is not None
    url = engine.api.url
    assert url.startswith("http://127.0.0.1:")
    assert not url.endswith(":0")
    await _wait_registry(engine)
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/api/registry/twins", headers=auth("viewer-a")) as resp:
            body = await resp.json()
        assert [t["id"] for t in body["twins"]] == ["dt:Lift_001"]
        twin = {"@id": "dt:Api_001", "tenant": "plant-a"}
        async with session.post(
            url + "/api/registry/twins", json=twin, headers=auth("operator-a")
        ) as resp:
            assert resp.status == 201
    running.stop.set()
    await asyncio.wait_for(running.task, 20)
    banner = [e for e in running.rendered() if "dtp-console" in e and "api http" in e]
    assert banner
    assert banner[0].endswith(f"api {url}")
    with sqlite3.connect(tmp_path / "platform.db") as db:
        rows = db.execute("SELECT body FROM event_log WHERE source = 'api'").fetchall()
    bodies = [json.loads(r[0]) for r in rows]
    assert [(b["token"], b["method"], b["status"], b["target"]) for b in bodies] == [
        ("operator-a", "POST", 201, "dt:Api_001")
    ]
    assert TOKENS["operator-a"][0] not in str(bodies)


async def test_a_taken_port_is_an_error_naming_api_listen(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        engine = Engine(load_config(_config(tmp_path, f"127.0.0.1:{port}")))
        with pytest.raises(ApiBindError, match=rf"api\.listen: cannot bind 127\.0\.0\.1:{port}"):
            await asyncio.wait_for(engine.run(asyncio.Event()), 15)
        assert engine.sandbox is None  # nothing else was started


def test_the_headless_console_exits_2_on_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = _config(tmp_path, f"127.0.0.1:{port}")
        result = subprocess.run(
            [sys.executable, "-m", "dtp_console", "-c", str(path), "run", "--no-ui", "--for", "5s"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert f"api.listen: cannot bind 127.0.0.1:{port} (address already in use)" in result.stderr
    assert "Traceback" not in result.stderr


async def test_health_routes_answer_loopback_peers(running: _Running) -> None:
    require_module("dtp_console.health")
    url = running.engine.api.url
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/healthz") as resp:
            assert resp.status == 200
            assert isinstance(await resp.json(), dict)
        async with session.get(url + "/readyz") as resp:
            assert resp.status in (200, 503)
            assert isinstance(await resp.json(), dict)


async def test_metrics_parse_with_the_prometheus_parser(running: _Running) -> None:
    require_module("dtp_console.metrics")
    from prometheus_client.parser import text_string_to_metric_families

    url = running.engine.api.url
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The HTTP surface counts itself: this scrape's own request is still in flight,
    # the health checks of the fixture (if any) are not required.
    requests = {s.labels["result"]: s.value for s in families["dtp_api_requests"].samples}
    assert set(requests) == {"ok", "unauthorized", "forbidden", "client_error", "server_error"}
    for name in ("dtp_api_stream_clients", "dtp_api_stream_cut_off", "dtp_api_writes"):
        assert name in families, name


async def test_closed_health_routes_need_a_token(tmp_path: Path) -> None:
    require_module("dtp_console.health")
    require_module("dtp_console.metrics")
    async for run in _start(_config(tmp_path, open_health_on_loopback=False)):
        url = run.engine.api.url
        async with aiohttp.ClientSession() as session:
            for path, label, status in (
                ("/healthz", None, 401),
                ("/healthz", "viewer-a", 200),
                ("/metrics", None, 401),
                ("/metrics", "viewer-a", 403),
                ("/metrics", "admin-all", 200),
            ):
                headers = auth(label) if label else {}
                async with session.get(url + path, headers=headers) as resp:
                    assert resp.status == status, (path, label)
