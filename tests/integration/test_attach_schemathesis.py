"""Property-based tests of the `/api/console` routes from the OpenAPI document.

As `test_api_schemathesis`, but against a running console (an engine with a
config file and a bridge), which the registry-only server of that test has
not: there the console routes answer 404. The state stream never ends and has
its own tests (`test_attach_api`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from dtp_console.api.openapi import openapi_document  # noqa: E402
from dtp_console.config import load_config  # noqa: E402
from dtp_console.runtime import Engine  # noqa: E402
from tests.support.api import auth, token_entries  # noqa: E402

pytestmark = pytest.mark.integration

EXAMPLES = 100

_schema = schemathesis.openapi.from_dict(openapi_document()).include(path_regex="^/api/console/")
_schema = _schema.exclude(path="/api/console/state")

CONFIG = """\
# kept by operators
twinzo: {{client: demo, password: change-me, api_key: change-me}}
sandbox: {{enabled: true}}
registry: {{enabled: false}}
stores: {{enabled: false}}
api: {{listen: "127.0.0.1:0", tokens: {tokens}}}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: embedded, topics: [ati_fm/sherpa/status]}}
    device_map:
      ati_amr_001: tugger-05-old   # the first tugger
    twinzo: {{sector_id: 2}}
"""


@pytest.fixture(scope="module")
def live_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL of a running console, served from a background thread."""
    folder: Path = tmp_path_factory.mktemp("attach-schemathesis")
    path = folder / "console.yaml"
    tokens = json.dumps([t.model_dump() for t in token_entries()])
    path.write_text(CONFIG.format(tokens=tokens), encoding="utf-8")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def _serve() -> None:
        engine = Engine(load_config(path, environ={}), config_path=path)
        stop = asyncio.Event()
        box["stop"], box["engine"] = stop, engine
        task = asyncio.create_task(engine.run(stop))
        await asyncio.wait_for(engine.ready.wait(), 15)
        box["url"] = engine.api.url
        started.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(_serve(),), daemon=True)
    thread.start()
    assert started.wait(20), "the console did not start"
    try:
        yield str(box["url"])
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        loop.close()
    stats = box["engine"].api.stats
    assert stats.requests > 150  # it really ran
    assert stats.server_errors == 0
    assert "# the first tugger" in path.read_text(encoding="utf-8")


@_schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_generated_console_request_gets_a_server_error(case: Any, live_console: str) -> None:
    label = "viewer-a" if case.method == "GET" else "operator-a"
    response = case.call(base_url=live_console, headers=auth(label), timeout=10)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400:
        assert "error" in response.json()  # every refusal says why
