"""The HTTP API attacked from outside: hostile headers, ids and bodies over real HTTP.

Each test here was first written against a defect it reproduced (a 500 from a header,
a key file anyone may read, …); what held up under attack is listed in the module
docstrings of `tests/integration/test_api_*.py` and the helper's report.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dtp_console.api.config import ApiConfig, ApiTls
from dtp_console.api.server import ApiServer
from dtp_console.events import Bus, LogLine, OpsLog
from tests.support.api import ApiRig, api_rig, auth, token_entries
from tests.support.mosquitto import make_tls_files

pytestmark = pytest.mark.integration

STREAM = "/api/portal/stream"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    async with api_rig(tmp_path) as rig:
        yield rig


@pytest.mark.parametrize("seq", ["\u00b2", "\u0661", "\uff11", "1\u00b2", "-1", "+1", " 1"])
async def test_a_last_event_id_with_non_ascii_digits_is_a_gap_never_a_500(
    rig: ApiRig, seq: str
) -> None:
    # `str.isdigit()` is true for '²' (int() refuses it) and for Arabic-Indic digits
    # (int() reads them): neither is an id this server wrote.
    last = f"{rig.server.hub.last_id.rpartition('-')[0]}-{seq}"
    headers = {**auth("viewer-a"), "Last-Event-ID": last}
    async with rig.session.get(rig.url + STREAM, headers=headers) as resp:
        assert resp.status == 200
        async with asyncio.timeout(5):
            opening = await resp.content.readuntil(b'data: {"resync": true}\n\n')
        assert b"event: stream.gap" in opening
    assert rig.server.stats.server_errors == 0


def _body(twin_id: str = "dt:L1", tenant: str = "plant-a", **extra: Any) -> dict[str, Any]:
    return {"@id": twin_id, "tenant": tenant, **extra}


_TERMINAL_ESCAPES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _registry_cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dtp_console", "-c", str(config), "registry", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def test_ids_written_over_the_api_reach_the_registry_cli_escaped(tmp_path: Path) -> None:
    # The API keeps hostile ids as data (see test_hostile_ids_round_trip_as_data), so the
    # operator's own terminal is where they must be defused: `registry list/show/services`.
    twin_id = "dt:\x1b]0;pwn\x07\x9b2J\u202eX"
    tenant = "plant-\x1b[31m"
    async with api_rig(tmp_path) as rig:
        body = _body(twin_id, tenant, metadata={"note": "\x1b[2J"})
        status, _ = await rig.call("POST", "/api/registry/twins", "admin-all", json=body)
        assert status == 201
        service = {"id": "svc:\x1b[5m", "category": "ui\x07", "tenant": tenant}
        status, _ = await rig.call("POST", "/api/registry/services", "admin-all", json=service)
        assert status == 201
    config = tmp_path / "console.yaml"
    config.write_text(
        json.dumps(
            {
                "twinzo": {"client": "demo", "password": "change-me", "api_key": "change-me"},
                "registry": {
                    "twins_root": str(tmp_path / "twins"),
                    "sqlite_path": str(tmp_path / "reg.db"),
                },
                "stores": {"enabled": False},
            }
        ),
        encoding="utf-8",
    )
    (tmp_path / "twins").mkdir(exist_ok=True)
    outputs = [
        _registry_cli(config, "list"),
        _registry_cli(config, "show", twin_id),
        _registry_cli(config, "services"),
        _registry_cli(config, "deprecate", twin_id),
    ]
    for out in outputs:
        assert not _TERMINAL_ESCAPES.search(out), repr(out)
    assert "dt:\\x1b]0;pwn\\x07\\x9b2J\\u202eX" in outputs[0]


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
async def test_a_tls_key_other_users_may_read_is_warned_at_every_start(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    files = make_tls_files(tmp_path / "tls")
    files.key.chmod(mode)
    config = ApiConfig(listen="127.0.0.1:0", tls=ApiTls(cert_file=files.cert, key_file=files.key))
    bus = Bus()
    lines = bus.subscribe()
    async with ApiServer(config, bus=bus, registry=lambda: None, log=OpsLog(bus)):
        rendered = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    warnings = [line for line in rendered if "api.tls.key_file" in line]
    if warned:
        assert len(warnings) == 1, rendered
        assert warnings[0].startswith("WARN")
        assert f"mode {mode:o}" in warnings[0]
        assert "chmod 600" in warnings[0]
    else:
        assert warnings == []


async def test_idle_and_slow_connections_cannot_exhaust_the_process(tmp_path: Path) -> None:
    # Connections that never finish a request hold a file descriptor each (aiohttp keeps an
    # idle one an hour, a trickling one forever): without a cap, a local user could starve
    # the bridges, stores and twinzo client of the same process. Past the cap, a new
    # connection is closed at once (counted) and the API itself keeps answering once
    # the hogs go.
    async with api_rig(tmp_path, max_connections=16, max_stream_clients=4) as rig:
        assert rig.server.address is not None
        host, port = rig.server.address
        hogs = [await asyncio.open_connection(host, port) for _ in range(16)]
        for _reader, writer in hogs[:8]:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ends the headers
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed without a response
        writer.close()
        assert rig.server.stats.connections_refused >= 1
        for _reader, hog in hogs:
            hog.close()
        async with asyncio.timeout(5):
            while True:
                status, body = await rig.call("GET", "/api/registry/twins", "viewer-a")
                if status == 200:
                    break
                await asyncio.sleep(0.05)
        assert body == {"twins": []}


def test_max_connections_must_leave_room_beyond_the_stream_clients() -> None:
    with pytest.raises(ValueError, match="more than max_stream_clients"):
        ApiConfig(max_connections=100, max_stream_clients=100)


async def test_a_client_that_reconnects_in_a_loop_does_not_fill_the_stream_slots(
    tmp_path: Path,
) -> None:
    # A careless client (or one behind a flaky proxy) that drops and reopens its stream
    # must not leave a dead subscriber per attempt until the next heartbeat finds it gone.
    async with api_rig(tmp_path, max_stream_clients=3, stream_heartbeat_s=30) as rig:
        for _attempt in range(8):
            async with rig.session.get(rig.url + STREAM, headers=auth("viewer-a")) as resp:
                assert resp.status == 200, await resp.text()
                async with asyncio.timeout(5):
                    await resp.content.readuntil(b": dtp-console stream\n\n")
            async with asyncio.timeout(3):
                while rig.server.hub.stats.clients > 2:
                    await asyncio.sleep(0.02)
        assert rig.server.hub.stats.refused == 0


async def test_a_last_event_id_from_the_future_is_a_gap(rig: ApiRig) -> None:
    # Same boot, a seq this server never wrote: the client's state is not ours to trust.
    last = f"{rig.server.hub.last_id.rpartition('-')[0]}-99999999"
    headers = {**auth("viewer-a"), "Last-Event-ID": last}
    async with rig.session.get(rig.url + STREAM, headers=headers) as resp:
        assert resp.status == 200
        async with asyncio.timeout(5):
            opening = await resp.content.readuntil(b'data: {"resync": true}\n\n')
        assert b"event: stream.gap" in opening


async def _raw(rig: ApiRig, request: bytes) -> bytes:
    assert rig.server.address is not None
    reader, writer = await asyncio.open_connection(*rig.server.address)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


def _post(body: bytes, *headers: bytes) -> bytes:
    head = [
        b"POST /api/registry/twins HTTP/1.1",
        b"Host: x",
        b"Connection: close",
        b"Authorization: Bearer test-token-operator-a",
        b"Content-Type: application/json",
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        # Not gzip at all, under a gzip label.
        (_post(b"\x1b[2Jxxxxxx", b"Content-Encoding: gzip", b"Content-Length: 10"), b"400"),
        # A truncated gzip stream.
        (
            _post(gzip.compress(b'{"@id": "dt:L1"}')[:12], b"Content-Encoding: gzip").replace(
                b"Connection: close", b"Connection: close\r\nContent-Length: 12"
            ),
            b"400",
        ),
        # 64 MiB of zeros in 64 KiB: the decompressed size is what counts.
        (
            _post(
                gzip.compress(b"0" * 67_108_864),
                b"Content-Encoding: gzip",
                b"Content-Length: %d" % len(gzip.compress(b"0" * 67_108_864)),
            ),
            b"413",
        ),
        # A chunked body whose chunk size is not hex.
        (_post(b"zz\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"), b"400"),
    ],
    ids=["not-gzip", "truncated-gzip", "gzip-bomb", "bad-chunk"],
)
async def test_a_body_that_cannot_be_decoded_is_a_4xx_never_a_500(
    rig: ApiRig, request_bytes: bytes, status: bytes
) -> None:
    answer = await _raw(rig, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status) or answer.startswith(b"HTTP/1.0 " + status), (
        answer[:200]
    )
    assert rig.server.stats.server_errors == 0
    assert await rig.registry.list_twins() == []


async def test_malformed_requests_are_counted_and_folded_not_a_traceback_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp logs every unparsable request as an ERROR with a traceback: anyone who can
    # reach the port could fill the console's stderr (journald) at line rate.
    bus = Bus()
    lines = bus.subscribe()
    config = ApiConfig(listen="127.0.0.1:0")
    caplog.set_level(logging.DEBUG)
    async with ApiServer(config, bus=bus, registry=lambda: None, log=OpsLog(bus)) as server:
        assert server.address is not None
        for index in range(30):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"GET /\x1b]0;pwn\x07%d HTTP/1.1\r\nHost: x\r\n\r\n" % index)
            async with asyncio.timeout(5):
                assert (await reader.read()).startswith(b"HTTP/1.0 400")
            writer.close()
        assert server.stats.bad_requests == 30
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    rendered = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    bad = [line for line in rendered if "malformed request" in line]
    assert len(bad) == 1, rendered
    assert "\x1b" not in bad[0]
    assert bad[0].startswith("WARN")


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
    ],
)
@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/healthz"])
async def test_health_routes_are_not_open_to_a_request_a_local_proxy_relays(
    rig: ApiRig, header: dict[str, str], path: str
) -> None:
    # Behind nginx/caddy on the same host every peer is 127.0.0.1: the forwarding header
    # says the request came from elsewhere, so the loopback exemption does not apply.
    # (The header is never trusted the other way: it cannot make a remote peer local.)
    status, _ = await rig.call("GET", path, headers=header)
    assert status == 401
    status, _ = await rig.call("GET", path)
    assert status != 401  # without the header it is open (this rig has no engine to report)


async def test_unknown_dependencies_do_not_reveal_another_tenants_twins(rig: ApiRig) -> None:
    twin = _body("dt:secret-a")
    status, _ = await rig.call("POST", "/api/registry/twins", "operator-a", json=twin)
    assert status == 201
    probe = _body("dt:probe", "plant-b", dependencies={"static": ["dt:secret-a", "dt:none"]})
    status, body = await rig.call("POST", "/api/registry/twins", "operator-b", json=probe)
    assert status == 201
    # To operator-b, a plant-a twin must look exactly like one that does not exist.
    assert sorted(body["twin"]["unknown_dependencies"]) == ["dt:none", "dt:secret-a"]
    # … on every route that hands the twin out.
    path = "/api/registry/twins/dt:probe"
    _, got = await rig.call("GET", path, "operator-b")
    _, listed = await rig.call("GET", "/api/registry/twins", "operator-b")
    patch = {"dependencies": {"static": ["dt:none", "dt:secret-a"]}}
    _, patched = await rig.call("PATCH", path, "operator-b", json=patch)
    _, soft = await rig.call("DELETE", path + "?soft=true", "operator-b")
    for shown in (got["twin"], listed["twins"][0], patched["twin"], soft["twin"]):
        assert sorted(shown["unknown_dependencies"]) == ["dt:none", "dt:secret-a"]
    # A token granted every tenant gets the registry's true answer.
    _, seen = await rig.call("GET", path, "admin-all")
    assert seen["twin"]["unknown_dependencies"] == ["dt:none"]
    # A hard delete's record carries no flags for anyone (hidden and absent look alike).
    _, hard = await rig.call("DELETE", path, "operator-b")
    assert hard["twin"]["unknown_dependencies"] == []


class _BrokenRegistry:
    """A registry whose every call fails with a defect (not a RegistryError)."""

    async def find(self, _twin_id: str) -> None:
        raise KeyError("boom")


async def test_a_500_logs_the_path_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The path is the client's (percent-decoded): it reaches stderr through logging.
    bus = Bus()
    config = ApiConfig(listen="127.0.0.1:0", tokens=token_entries())
    broken: Any = _BrokenRegistry()
    async with (
        ApiServer(config, bus=bus, registry=lambda: broken, log=OpsLog(bus)) as server,
        aiohttp.ClientSession() as session,
    ):
        url = server.url + "/api/registry/twins/dt:%1B%5D0;pwn%07%1B%5B2J"
        async with session.get(url, headers=auth("viewer-a")) as resp:
            assert resp.status == 500
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("dtp_console")]
    assert any("failed" in m for m in messages), messages
    assert not any("\x1b" in m or "\x07" in m for m in messages), messages


@pytest.mark.parametrize("missing", ["cert_file", "key_file"])
def test_a_missing_tls_file_is_named(tmp_path: Path, missing: str) -> None:
    files = make_tls_files(tmp_path / "tls")
    paths = {"cert_file": files.cert, "key_file": files.key, missing: tmp_path / "gone.pem"}
    with pytest.raises(ValueError, match=rf"{missing} {re.escape(str(tmp_path))}/gone.pem"):
        ApiTls.model_validate(paths)
