"""An optional store's failure is a red badge and a log line, never a dead console.

Real processes as operators run them (`dtp-console run --no-ui`), a private
mosquitto and the sandbox inside: a Neo4j URI that can never work is refused at
load (exit 2, naming the field, not the URI); a Neo4j that is down leaves every
bridge forwarding, shows up in the log, the STATS lines and the stats JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiomqtt
import orjson
import pytest

from tests.support.mosquitto import MosquittoServer, free_port

pytestmark = pytest.mark.integration

SECRET = "test-neo-pw-51xk"  # a placeholder the test looks for in every output

CONFIG = """
twinzo:
  client: demo
  password: change-me
  api_key: change-me
sandbox:
  enabled: true
registry: {{enabled: false}}
stores:
  enabled: true
  sqlite_path: {tmp}/platform.sqlite3
  blob_dir: {tmp}/blobs
  health_interval_s: 0.5
  probe_timeout_s: 2
  neo4j:
    uri: "{uri}"
    password: "{secret}"
    connection_acquisition_timeout: 1
logging:
  log_every_n: 1
  stats_interval_s: 0.5
plants:
  - name: HiTech Plant
    format: hitech
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map: {{hitech-amr-001: tugger-03}}
    twinzo: {{sector_id: 1}}
    min_post_interval_ms: 0
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "ATI_", "NEO4J"))}


async def _start(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dtp_console",
        "-c",
        str(config),
        "run",
        "--no-ui",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )


async def _wait_line(proc: asyncio.subprocess.Process, needle: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not raw:
            break
        seen.append(raw.decode().rstrip("\n"))
        if needle in seen[-1]:
            return
    raise AssertionError(f"{needle!r} not printed; got {seen}")


async def test_a_neo4j_uri_with_user_info_is_refused_at_load_naming_the_field(
    tmp_path: Path,
) -> None:
    config = tmp_path / "console.yaml"
    uri = f"bolt://neo4j:{SECRET}@127.0.0.1:{free_port()}"
    config.write_text(CONFIG.format(tmp=tmp_path, uri=uri, secret="change-me", port=free_port()))
    proc = await _start(config, "--for", "3s")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode() + err.decode()
    # Before: every bridge stopped with rc=1 and the URI (password included) on stderr.
    assert proc.returncode == 2, text
    assert "stores.neo4j: uri: invalid URL" in err.decode()
    assert SECRET not in text


async def test_a_neo4j_that_is_down_leaves_the_bridges_running(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    config = tmp_path / "console.yaml"
    uri = f"bolt://127.0.0.1:{free_port()}"  # nothing listens: the server is down
    config.write_text(CONFIG.format(tmp=tmp_path, uri=uri, secret=SECRET, port=mosquitto.port))
    stats = tmp_path / "stats.json"
    proc = await _start(config, "--for", "5s", "--stats-json", str(stats))
    seen: list[str] = []
    await _wait_line(proc, "MQTT connected", seen)
    now = int(time.time() * 1000)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        hitech = {"device_id": "hitech-amr-001", "timestamp": now, "position": {"x": 5, "y": 6}}
        await client.publish("hitech/amr/hitech-amr-001/position", orjson.dumps(hitech), qos=1)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = "\n".join(seen) + "\n" + out.decode()
    assert proc.returncode == 0, err.decode()
    assert "OK tugger-03 (HiTech:hitech-amr-001) -> HiTech Plant: (5, 6)" in text
    assert "store neo4j" in text  # the FAIL/WARN line of the red badge
    assert "STATS stores: drop 0" in text
    assert SECRET not in text + err.decode() + stats.read_text()
    data = json.loads(stats.read_text())
    assert data["plants"]["HiTech Plant"]["outcomes"]["forwarded"] == 1
    stores = data["stores"]
    assert stores["health"]["neo4j"]["ok"] is False
    assert stores["health"]["sqlite"]["ok"] is True
    assert "relationships:neo4j" in stores["spools"]
    assert stores["dropped"] == sum(s["dropped"] for s in stores["spools"].values())
