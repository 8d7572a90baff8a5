"""Property-based tests from the OpenAPI document: no generated input gets a 500.

Schemathesis generates requests (valid and not) for every operation of the
document the server serves, and sends them to a real server on a free loopback
port, running in its own thread and event loop (schemathesis' client is sync).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from dtp_console.api.openapi import openapi_document  # noqa: E402
from tests.support.api import api_rig, auth  # noqa: E402

pytestmark = pytest.mark.integration

#: Examples per operation: 8-11 operations x this run in ~10 s here.
EXAMPLES = 100

_schema = schemathesis.openapi.from_dict(openapi_document())
# The stream never ends on its own, and health and metrics read a running Engine (this
# server has none): each has its own tests (test_api_stream, test_api_engine).
for _path in ("/api/portal/stream", "/healthz", "/readyz", "/metrics"):
    _schema = _schema.exclude(path=_path)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of an API (over a fresh registry) served from a background thread."""
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def _serve() -> None:
        stop = asyncio.Event()
        async with api_rig(folder) as rig:
            box["url"], box["stop"], box["rig"] = rig.url, stop, rig
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(_serve(),), daemon=True)
    thread.start()
    assert started.wait(15), "the API did not start"
    try:
        yield str(box["url"])
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(15)
        loop.close()
    stats = box["rig"].server.stats
    assert stats.requests > 500  # it really ran
    assert stats.server_errors == 0


@_schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_generated_request_gets_a_server_error(case: Any, live_api: str) -> None:
    label = "admin-all" if case.method == "GET" else "operator-a"
    response = case.call(base_url=live_api, headers=auth(label), timeout=10)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400:
        assert "error" in response.json()  # every refusal says why
