"""`dtp-console attach` attacked from both ends: a hostile client of the service's
`/api/console/...` routes, and a hostile service feeding the attached console.

Each test here was first written against a defect it reproduced; what held up
under attack is listed in the helper's report (and in docs/attach.md where it is a
rule a reader may rely on).
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dtp_console.attach.wire import PLACEHOLDER, config_to_wire, map_etag
from dtp_console.config import load_config
from dtp_console.config.model import ConsoleConfig
from tests.integration.test_attach_api import DEVICE_MAP, Console, _console
from tests.support.api import TOKENS

pytestmark = pytest.mark.integration

AFFINE = "/api/console/plants/Old%20Plant/affine"


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with _console(tmp_path) as running:
        yield running


# -- commands ------------------------------------------------------------------------


async def test_two_puts_racing_with_one_etag_let_exactly_one_win(console: Console) -> None:
    # Found: the route read the running map (to compare If-Match with) before it awaited
    # the body, so two PUTs opened from the same map both compared against it and both
    # were saved — the second merged over the first though its etag was stale by then.
    opened = dict(console.engine.device_map("Old Plant") or {})
    etag = map_etag(opened)
    release = asyncio.Event()

    async def _put(extra: dict[str, str]) -> int:
        # Raw HTTP: the headers go out at once, the body only once both are in the handler.
        body = json.dumps({"mapping": {**opened, **extra}, "base": opened}).encode()
        host, port = console.engine.api.address or ("", 0)
        reader, writer = await asyncio.open_connection(host, port)
        head = (
            f"PUT {DEVICE_MAP} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {TOKENS['operator-a'][0]}\r\nIf-Match: {etag}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        await release.wait()
        writer.write(body)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return int(answer.split(b" ", 2)[1])

    racing = asyncio.gather(_put({"ati_amr_003": "race-a"}), _put({"ati_amr_004": "race-b"}))
    await asyncio.sleep(0.5)
    release.set()
    statuses = sorted(await racing)
    assert statuses == [200, 412]
    running = console.engine.device_map("Old Plant") or {}
    on_disk = load_config(console.path, environ={}).plant("Old Plant").device_map
    assert running == on_disk
    assert ("ati_amr_003" in running) != ("ati_amr_004" in running)


@pytest.mark.parametrize("value", [True, "2.5", "1e3", None, [1.0]])
async def test_an_affine_value_that_is_no_number_is_422(console: Console, value: Any) -> None:
    # Found: `true` was taken as 1.0 and the string "2.5" as 2.5 (pydantic's lax floats),
    # and written to the file.
    before = console.path.read_text(encoding="utf-8")
    body = {"values": {"a": value, "d": 1.0}, "reason": "attack"}
    status, answer = await console.call("PUT", AFFINE, "operator-a", json=body)
    assert status == 422, answer
    assert console.path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    "values",
    [{}, {"a": 2.0}, {"a": 2.0, "A": 3.0, "b": 0.0, "c": 0.0, "d": 1.0, "tx": 0.0, "ty": 0.0}],
)
async def test_an_affine_missing_or_repeating_a_parameter_is_422(
    console: Console, values: dict[str, float]
) -> None:
    # Found: `{"values": {}}` wrote the identity affine (every parameter defaulted), and
    # `{"a": 2}` reset the plant's offsets to 0: one malformed body undid a calibration.
    # `a` and `A` both given: the last one silently won.
    before = console.path.read_text(encoding="utf-8")
    status, answer = await console.call(
        "PUT", AFFINE, "operator-a", json={"values": values, "reason": "attack"}
    )
    assert status == 422, answer
    assert "a, b, c, d, tx, ty" in answer["message"]
    assert console.path.read_text(encoding="utf-8") == before


# -- the session ---------------------------------------------------------------------

#: Test placeholders (never real credentials), one per secret the config can hold.
SECRETS = {
    "twinzo.password": "sek-twinzo-pw-1101",
    "twinzo.api_key": "sek-twinzo-key-1102",
    "plant.twinzo.password": "sek-plant-pw-1103",
    "plant.broker.password": "sek-mqtt-pw-1104",
    "stores.postgres.dsn": "sek-pg-pw-1105",
    "stores.postgres.dsn.sslpassword": "sek-pg-sslkey-1106",
    "stores.influx.token": "sek-influx-tok-1107",
    "stores.neo4j.password": "sek-neo4j-pw-1108",
    "stores.s3.secret_key": "sek-s3-key-1109",
    "registry.postgres_dsn": "sek-reg-pw-1110",
    "ha.dsn": "sek-ha-pw-1111",
    "ha.dsn.sslpassword": "sek-ha-sslkey-1112",
    "simulator.broker.password": "sek-sim-pw-1113",
}


def _full_of_secrets(tmp_path: Path) -> ConsoleConfig:
    s = SECRETS
    pg = f"postgresql://dtp:{s['stores.postgres.dsn']}@db.example/dtp"
    pg += f"?sslmode=verify-full&sslpassword={s['stores.postgres.dsn.sslpassword']}"
    ha = f"postgresql://ha@db.example/ha?password={s['ha.dsn']}"
    ha += f"&sslpassword={s['ha.dsn.sslpassword']}"
    raw = {
        "twinzo": {
            "client": "demo",
            "password": s["twinzo.password"],
            "api_key": s["twinzo.api_key"],
        },
        "simulator": {"broker": {"username": "sim", "password": s["simulator.broker.password"]}},
        "registry": {"postgres_dsn": f"postgresql://reg:{s['registry.postgres_dsn']}@db/reg"},
        "stores": {
            "postgres": {"dsn": pg},
            "influx": {
                "url": "http://influx.example:8086",
                "token": s["stores.influx.token"],
            },
            "neo4j": {
                "uri": "bolt://neo.example",
                "password": s["stores.neo4j.password"],
            },
            "s3": {
                "endpoint": "http://minio.example:9000",
                "access_key": "ak",
                "secret_key": s["stores.s3.secret_key"],
            },
        },
        "ha": {"dsn": ha},
        "plants": [
            {
                "name": "P",
                "format": "ati_sherpa",
                "broker": {
                    "host": "mqtt.example",
                    "username": "u",
                    "password": s["plant.broker.password"],
                    "topics": ["t"],
                },
                "twinzo": {"sector_id": 1, "password": s["plant.twinzo.password"]},
            }
        ],
    }
    path = tmp_path / "secrets.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return load_config(path, environ={})


def test_no_secret_of_any_config_field_reaches_the_session(tmp_path: Path) -> None:
    # Found: `sslpassword` (the passphrase of the client's TLS key) in a DSN's query was
    # sent as it is; only `password` was redacted.
    text = json.dumps(config_to_wire(_full_of_secrets(tmp_path)))
    leaked = [name for name, secret in SECRETS.items() if secret in text]
    assert leaked == []
    assert PLACEHOLDER in text


def test_a_unix_socket_dsn_keeps_its_empty_host_when_redacted(tmp_path: Path) -> None:
    # Found: `postgresql:///db?host=/run/pg` came back as `postgresql:/db?…` (urlunparse
    # drops an empty netloc), a different string than the service's own.
    from dtp_console.attach.wire import config_from_wire

    raw = {"stores": {"postgres": {"dsn": "postgresql:///dtp?host=/run/pg&password=x"}}}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")
    wire = config_to_wire(load_config(path, environ={}))
    dsn = wire["stores"]["postgres"]["dsn"]
    assert dsn.startswith("postgresql:///dtp?")
    assert "password=x" not in dsn
    assert config_to_wire(config_from_wire(wire)) == wire


async def test_the_state_stream_carries_no_secret(console: Console) -> None:
    # Held: the snapshot, deltas, maps and log events of a running console (its twinzo
    # password and API key set, every token configured) hold none of them.
    from tests.integration.test_attach_api import API_KEY, PASSWORD
    from tests.support.api import auth, token_entries

    secrets = [PASSWORD, API_KEY, *(t for t, _, _ in TOKENS.values())]
    secrets += [entry.hash.removeprefix("sha256:") for entry in token_entries()]
    url = console.url + "/api/console/state?devices=Old%20Plant,Second%20Plant"
    seen = b""
    async with console.session.get(url, headers=auth("admin-all")) as response:
        assert response.status == 200
        async with asyncio.timeout(10):
            while len(seen) < 20_000 and b"event: log" not in seen:
                seen += await response.content.readany()
    assert b"event: snapshot" in seen
    assert [s for s in secrets if s.encode() in seen] == []


# -- the CLI's token -----------------------------------------------------------------


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_a_token_file_other_users_may_read_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int, warned: bool
) -> None:
    # Found: a token file anyone on the host could read was used without a word (the
    # config's secrets and the API's TLS key are both warned about).
    from dtp_console.cli import main

    token = "dtp_placeholder-token-for-the-permission-test"
    path = tmp_path / "token"
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(mode)
    code = main(["attach", "http://127.0.0.1:9", "--token-file", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2  # nothing listens on port 9
    assert token not in text
    assert ("readable by other users" in text) == warned, text
    if warned:
        assert f"{stat.S_IMODE(mode):o}" in text and "chmod 600" in text


# -- a hostile service ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["plants", "config"])
def test_a_session_with_thousands_of_plants_is_refused(where: str) -> None:
    # Found: the session's plants were taken however many came (the replica keeps at
    # most MAX_PLANTS): the attached console then laid out one tab per plant.
    from dtp_console.attach.replica import MAX_PLANTS
    from dtp_console.attach.session import AttachError, parse_session

    many = [f"p{n}" for n in range(MAX_PLANTS + 1)]
    config = config_to_wire(ConsoleConfig())
    if where == "config":
        plant = {"format": "ati_sherpa", "broker": {"host": "h", "topics": ["t"]}}
        plant["twinzo"] = {"sector_id": 1}
        config["plants"] = [{**plant, "name": name} for name in many]
        many = many[:1]
    body = {"protocol": config["protocol"], "config": config, "plants": many}
    with pytest.raises(AttachError, match=str(MAX_PLANTS)):
        parse_session(body)


# -- tenancy -------------------------------------------------------------------------


def _serving(engine: Any) -> Any:
    """The feed's engine callable over a test stand-in (it reads only what that has)."""
    return lambda: engine


async def test_a_restricted_token_sees_its_own_tenants_dependencies_as_found(
    tmp_path: Path,
) -> None:
    # Was a stopgap: the feed told a restricted token every dependency was unknown. With
    # the portal stream's owner lookup it now tells the truth about its own tenants' twins
    # and still hides another tenant's (and a failed lookup still hides everything).
    from dtp_console.api.tokens import Principal
    from dtp_console.attach.feed import StateFeed
    from dtp_console.events import TwinUpdated
    from tests.support.api import api_rig
    from tests.unit.test_attach_feed import _Engine, _frames

    async with api_rig(tmp_path) as rig:
        for twin_id, tenant in (("dt:Lift_a", "plant-a"), ("dt:Secret_b", "plant-b")):
            body = {"@id": twin_id, "tenant": tenant}
            status, _ = await rig.call("POST", "/api/registry/twins", "admin-all", json=body)
            assert status == 201
        deps = {"static": ["dt:Lift_a", "dt:Secret_b", "dt:Nowhere"]}
        fleet = {"@id": "dt:Fleet_a", "tenant": "plant-a", "dependencies": deps}
        status, created = await rig.call("POST", "/api/registry/twins", "admin-all", json=fleet)
        assert status == 201, created
        twin = await rig.registry.get("dt:Fleet_a")
        assert twin is not None and twin.unknown_dependencies == ["dt:Nowhere"]

        async def _failing(_ids: Any) -> dict[str, str]:
            raise OSError("registry down")

        for owners, expected in (
            (rig.registry.tenants_of, ["dt:Secret_b", "dt:Nowhere"]),
            (_failing, ["dt:Lift_a", "dt:Secret_b", "dt:Nowhere"]),
        ):
            engine = _Engine()
            feed = StateFeed(
                _serving(engine), queue_size=64, max_clients=4, tick_s=3600, owners=owners
            )
            mine = feed.attach(Principal("a", "viewer", frozenset({"plant-a"})), [], lambda: None)
            admin = feed.attach(Principal("all", "admin", frozenset({"*"})), [], lambda: None)
            assert mine is not None and admin is not None
            for client in (mine, admin):
                _frames(client.stream.queue)
            engine.bus.publish(TwinUpdated(twin=twin))
            async with asyncio.timeout(5):
                while mine.stream.queue.empty() or admin.stream.queue.empty():
                    await asyncio.sleep(0.01)
            [(_, seen)] = _frames(mine.stream.queue)
            [(_, true)] = _frames(admin.stream.queue)
            assert seen["twin"]["unknown_dependencies"] == expected
            assert true["twin"]["unknown_dependencies"] == ["dt:Nowhere"]
            await feed.close()


# -- streams -------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["/api/portal/stream", "/api/console/state"])
async def test_the_portal_and_attach_streams_share_max_stream_clients(first: str) -> None:
    # Found: each stream had its own `api.max_stream_clients`, so a viewer could hold
    # twice as many streams, and with the defaults (200 each, 400 connections) every
    # connection of the API: the operator's commands and health checks were closed.
    from dtp_console.api.config import ApiConfig
    from dtp_console.api.server import ApiServer
    from tests.support.api import auth, token_entries
    from tests.unit.test_attach_feed import _Engine

    engine = _Engine()
    served: Any = engine
    config = ApiConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "tokens": [t.model_dump() for t in token_entries()],
            "max_stream_clients": 2,
        }
    )
    other = "/api/console/state" if first == "/api/portal/stream" else "/api/portal/stream"
    async with (
        ApiServer(config, bus=engine.bus, registry=lambda: None, engine=served) as server,
        aiohttp.ClientSession() as session,
    ):
        held = [await session.get(server.url + first, headers=auth("viewer-a")) for _ in range(2)]
        try:
            assert [r.status for r in held] == [200, 200]
            async with session.get(server.url + other, headers=auth("viewer-a")) as refused:
                assert refused.status == 503
            held[0].close()
            async with asyncio.timeout(5):
                while server.hub.stats.clients + server.console.feed.stats.clients > 1:
                    await asyncio.sleep(0.05)
            async with session.get(server.url + other, headers=auth("viewer-a")) as admitted:
                assert admitted.status == 200
        finally:
            for response in held:
                response.close()
