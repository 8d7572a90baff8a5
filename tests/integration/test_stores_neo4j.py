"""Neo4j graph adapter over Bolt against FalkorDB (private netns, relayed to 127.0.0.1).

FalkorDB quirk: a new connection after a driver's `close()` can hang, so the
module shares ONE adapter (one driver) on one module-scoped event loop, as the
console does. Neo4j 5 constraint statements run only against a real Neo4j
(`DTP_TEST_NEO4J_URL`, with `DTP_TEST_NEO4J_USER` / `DTP_TEST_NEO4J_PASSWORD`).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, LiteralString

import pytest
import pytest_asyncio
from pydantic import SecretStr

from dtp_console.stores.config import Neo4jConfig
from dtp_console.stores.neo4j import Neo4jGraphStore
from dtp_console.stores.protocols import GraphStore, StoreError
from tests.support.falkordb import FalkorDBServer, falkordb_unavailable_reason

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def falkordb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FalkorDBServer]:
    """One FalkorDB for the module (a test may stop and restart it)."""
    reason = falkordb_unavailable_reason()
    if reason is not None:
        pytest.skip(f"FalkorDB stand-in cannot start: {reason}")
    with FalkorDBServer(tmp_path_factory.mktemp("falkordb")) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(falkordb: FalkorDBServer) -> AsyncIterator[Neo4jGraphStore]:
    # FalkorDB takes any user and only an empty password.
    adapter = Neo4jGraphStore(
        Neo4jConfig(uri=falkordb.uri, user="falkordb", connection_acquisition_timeout=5.0)
    )
    await adapter.open()
    yield adapter
    await adapter.close()


async def query(store: Neo4jGraphStore, cypher: LiteralString, **params: Any) -> list[Any]:
    """Rows of one read statement through the adapter's own driver."""
    (rows,) = await store._run("test query", (cypher, params))
    return rows


def uid() -> str:
    return uuid.uuid4().hex[:10]


async def test_adapter_satisfies_the_protocol() -> None:
    adapter: GraphStore = Neo4jGraphStore(Neo4jConfig(uri="bolt://127.0.0.1:1"))
    assert adapter.name == "neo4j"
    with pytest.raises(ValueError, match="no uri"):
        Neo4jGraphStore(Neo4jConfig())


async def test_bolt_server_is_in_its_own_network_namespace(falkordb: FalkorDBServer) -> None:
    # FalkorDB binds Bolt on every interface; only a private netns keeps it off the network.
    assert falkordb.server_pid is not None
    theirs = os.readlink(f"/proc/{falkordb.server_pid}/ns/net")
    assert theirs != os.readlink("/proc/self/ns/net")


async def test_ping_and_probe(store: Neo4jGraphStore) -> None:
    await store.ping()
    await store.probe()
    assert await query(store, "MATCH (p:DtpProbe) RETURN count(p) AS n") == [{"n": 0}]


async def test_merge_twin_keeps_one_mirrors_edge(store: Neo4jGraphStore) -> None:
    twin, asset_a, asset_b = uid(), uid(), uid()
    before = time.time_ns() // 1_000_000
    await store.merge_twin(twin, "Lift 1", "acme", "active", asset_a)
    await store.merge_twin(twin, "Lift 1", "acme", "active", asset_a)  # idempotent
    rows = await query(
        store,
        "MATCH (t:Twin {id: $id})-[:MIRRORS]->(a:Asset)"
        " RETURN t.name AS name, t.tenant AS tenant, t.status AS status,"
        " t.updated_ms AS updated, a.id AS asset",
        id=twin,
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["name"], row["tenant"], row["status"], row["asset"]) == (
        "Lift 1",
        "acme",
        "active",
        asset_a,
    )
    assert isinstance(row["updated"], int)  # epoch ms, never a temporal value
    assert before <= row["updated"] <= time.time_ns() // 1_000_000

    await store.merge_twin(twin, "Lift 1b", "acme", "retired", asset_b)  # re-pointed
    rows = await query(
        store,
        "MATCH (t:Twin {id: $id})-[:MIRRORS]->(a:Asset) RETURN a.id AS asset, t.status AS s",
        id=twin,
    )
    assert rows == [{"asset": asset_b, "s": "retired"}]

    await store.merge_twin(twin, "Lift 1b", "acme", "retired", None)  # no asset any more
    assert await query(
        store, "MATCH (:Twin {id: $id})-[r:MIRRORS]->() RETURN count(r) AS n", id=twin
    ) == [{"n": 0}]
    assert await query(store, "MATCH (t:Twin {id: $id}) RETURN count(t) AS n", id=twin) == [
        {"n": 1}
    ]


async def test_dependencies_and_remove_twin(store: Neo4jGraphStore) -> None:
    a, b, c, asset = uid(), uid(), uid(), uid()
    await store.merge_twin(a, "A", "acme", "active", asset)
    await store.merge_dependency(a, b, "static")
    await store.merge_dependency(a, b, "static")  # idempotent
    await store.merge_dependency(a, b, "dynamic")  # one edge per kind
    await store.merge_dependency(a, c, "static")

    async def edges() -> list[tuple[str, str]]:
        rows = await query(
            store,
            "MATCH (:Twin {id: $id})-[r:DEPENDS_ON]->(t:Twin)"
            " RETURN t.id AS target, r.kind AS kind",
            id=a,
        )
        return sorted((row["target"], row["kind"]) for row in rows)

    assert await edges() == sorted([(b, "dynamic"), (b, "static"), (c, "static")])
    # The twin file dropped b's static edge and c: the rest stays.
    await store.prune_dependencies(a, [(b, "dynamic")])
    assert await edges() == [(b, "dynamic")]
    await store.prune_dependencies(a, [(c, "static")])
    assert await edges() == []
    await store.merge_dependency(a, c, "static")
    assert await edges() == [(c, "static")]
    await store.merge_dependency(a, b, "static")
    await store.prune_dependencies(a, [])
    assert await query(
        store, "MATCH (:Twin {id: $id})-[r:DEPENDS_ON]->() RETURN count(r) AS n", id=a
    ) == [{"n": 0}]

    await store.remove_twin(a)
    await store.remove_twin(a)  # already gone: no error
    assert await query(store, "MATCH (t:Twin {id: $id}) RETURN count(t) AS n", id=a) == [{"n": 0}]
    # Edges went with it; the other twins and the asset stay.
    assert await query(
        store, "MATCH (t:Twin) WHERE t.id IN [$b, $c] RETURN count(t) AS n", b=b, c=c
    ) == [{"n": 2}]
    assert await query(store, "MATCH (x:Asset {id: $id}) RETURN count(x) AS n", id=asset) == [
        {"n": 1}
    ]


async def test_devices(store: Neo4jGraphStore) -> None:
    plant = f"plant-{uid()}"
    await store.merge_device(plant, "amr-1", "login-1")
    await store.merge_device(plant, "amr-1", "login-1b")  # same device, login updated
    await store.merge_device(plant, "amr-2", "login-2")
    rows = await query(
        store,
        "MATCH (:Plant {name: $p})-[:HAS_DEVICE]->(d:Device)"
        " RETURN d.vendor_id AS v, d.login AS login ORDER BY v",
        p=plant,
    )
    assert rows == [{"v": "amr-1", "login": "login-1b"}, {"v": "amr-2", "login": "login-2"}]

    await store.remove_device(plant, "amr-1")
    rows = await query(
        store,
        "MATCH (:Plant {name: $p})-[:HAS_DEVICE]->(d:Device) RETURN d.vendor_id AS v",
        p=plant,
    )
    assert rows == [{"v": "amr-2"}]
    assert await query(store, "MATCH (p:Plant {name: $p}) RETURN count(p) AS n", p=plant) == [
        {"n": 1}
    ]


async def test_neo4j5_constraints_are_rejected_by_falkordb(store: Neo4jGraphStore) -> None:
    # The normal path never needs them; FalkorDB's rejection arrives as a one-line StoreError.
    with pytest.raises(StoreError, match=r"^neo4j ensure constraints: ") as e:
        await store.ensure_constraints()
    assert "\n" not in str(e.value)
    await store.ping()  # the driver is still usable


async def test_not_open_is_a_store_error() -> None:
    adapter = Neo4jGraphStore(Neo4jConfig(uri="bolt://127.0.0.1:1"))
    with pytest.raises(StoreError, match="not open"):
        await adapter.ping()


async def test_server_down_then_back(store: Neo4jGraphStore, falkordb: FalkorDBServer) -> None:
    await store.ping()  # a pooled connection to the server that goes away
    falkordb.stop()
    try:
        with pytest.raises(StoreError, match=r"^neo4j ping: ") as e:
            await store.ping()
        assert "\n" not in str(e.value)
        with pytest.raises(StoreError, match=r"^neo4j merge device: cannot reach bolt://127"):
            await store.merge_device("p", "v", "l")
    finally:
        falkordb.start()
    # The same driver recovers once the server is back (it drops dead pooled connections).
    deadline = time.monotonic() + 15
    while True:
        try:
            await store.ping()
            break
        except StoreError:
            assert time.monotonic() < deadline, "driver did not recover"
            await asyncio.sleep(0.2)
    await store.merge_device("plant-after", "v1", "l1")
    assert await query(
        store, "MATCH (:Plant {name: 'plant-after'})-[:HAS_DEVICE]->(d) RETURN count(d) AS n"
    ) == [{"n": 1}]
    await store.probe()


@pytest.mark.skipif(
    not os.environ.get("DTP_TEST_NEO4J_URL"),
    reason="needs a real Neo4j 5 (set DTP_TEST_NEO4J_URL): FalkorDB has no constraint syntax",
)
async def test_real_neo4j_constraints_and_round_trip() -> None:
    adapter = Neo4jGraphStore(
        Neo4jConfig(
            uri=os.environ["DTP_TEST_NEO4J_URL"],
            user=os.environ.get("DTP_TEST_NEO4J_USER", "neo4j"),
            password=SecretStr(os.environ.get("DTP_TEST_NEO4J_PASSWORD", "")),
        )
    )
    await adapter.open()
    try:
        await adapter.ensure_constraints()
        await adapter.ensure_constraints()  # IF NOT EXISTS: repeatable
        await adapter.probe()
        twin = f"dtp-test-{uid()}"
        await adapter.merge_twin(twin, "T", "acme", "active", f"{twin}-asset")
        assert await query(
            adapter, "MATCH (:Twin {id: $id})-[:MIRRORS]->(a) RETURN count(a) AS n", id=twin
        ) == [{"n": 1}]
        await adapter.remove_twin(twin)
    finally:
        await adapter.close()
