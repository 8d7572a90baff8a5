"""Neo4j relationship store (the neo4j async driver over Bolt).

Graph: `(:Twin {id, name, tenant, status, updated_ms})-[:MIRRORS]->(:Asset {id})`,
`(:Twin)-[:DEPENDS_ON {kind, updated_ms}]->(:Twin)` and
`(:Plant {name})-[:HAS_DEVICE]->(:Device {plant, vendor_id, login, updated_ms})`.

Written to run on Neo4j 5 and on FalkorDB (the Bolt stand-in of the tests) alike:
one long-lived driver (FalkorDB can hang a new connection after a `close()`),
`session.run` for every statement (`execute_query` is ~40× slower there),
timestamps as epoch milliseconds (FalkorDB rejects temporal values) and plain
`MERGE`/`MATCH` Cypher. Neo4j 5-only schema statements are kept apart in
`ensure_constraints()`, which only a real Neo4j accepts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, LiteralString

from neo4j import AsyncDriver, AsyncGraphDatabase
from neo4j.exceptions import DriverError, Neo4jError

from dtp_console.stores.config import Neo4jConfig
from dtp_console.stores.protocols import StoreError
from dtp_console.urls import mask_url

__all__ = ["CONSTRAINTS", "Neo4jGraphStore"]

#: Neo4j 5 uniqueness constraints for the merge keys (`ensure_constraints`).
CONSTRAINTS: tuple[LiteralString, ...] = (
    "CREATE CONSTRAINT dtp_twin_id IF NOT EXISTS FOR (t:Twin) REQUIRE t.id IS UNIQUE",
    "CREATE CONSTRAINT dtp_asset_id IF NOT EXISTS FOR (a:Asset) REQUIRE a.id IS UNIQUE",
    "CREATE CONSTRAINT dtp_plant_name IF NOT EXISTS FOR (p:Plant) REQUIRE p.name IS UNIQUE",
    "CREATE CONSTRAINT dtp_device_key IF NOT EXISTS"
    " FOR (d:Device) REQUIRE (d.plant, d.vendor_id) IS UNIQUE",
)

_MERGE_TWIN: LiteralString = (
    "MERGE (t:Twin {id: $id})"
    " SET t.name = $name, t.tenant = $tenant, t.status = $status, t.updated_ms = $now"
)
# Keep exactly one MIRRORS edge: drop edges to other assets, then merge the current one.
_UNMIRROR: LiteralString = (
    "MATCH (t:Twin {id: $id})-[r:MIRRORS]->(a:Asset) WHERE $asset IS NULL OR a.id <> $asset"
    " DELETE r"
)
_MIRROR: LiteralString = (
    "MATCH (t:Twin {id: $id}) MERGE (a:Asset {id: $asset}) MERGE (t)-[:MIRRORS]->(a)"
)
# One edge per kind, as a twin file lists static and dynamic dependencies apart.
_MERGE_DEPENDENCY: LiteralString = (
    "MERGE (s:Twin {id: $source}) MERGE (t:Twin {id: $target})"
    " MERGE (s)-[r:DEPENDS_ON {kind: $kind}]->(t) SET r.updated_ms = $now"
)
_PRUNE_DEPENDENCIES: LiteralString = (
    "MATCH (s:Twin {id: $source})-[r:DEPENDS_ON]->(t:Twin)"
    " WHERE NOT (t.id + '|' + r.kind) IN $keep DELETE r"
)
_REMOVE_TWIN: LiteralString = "MATCH (t:Twin {id: $id}) DETACH DELETE t"
_MERGE_DEVICE: LiteralString = (
    "MERGE (p:Plant {name: $plant})"
    " MERGE (d:Device {plant: $plant, vendor_id: $vendor_id})"
    " SET d.login = $login, d.updated_ms = $now"
    " MERGE (p)-[:HAS_DEVICE]->(d)"
)
_REMOVE_DEVICE: LiteralString = (
    "MATCH (d:Device {plant: $plant, vendor_id: $vendor_id}) DETACH DELETE d"
)
_PING: LiteralString = "RETURN 1 AS ok"
_PROBE_MERGE: LiteralString = "MERGE (p:DtpProbe {id: $id}) SET p.written_ms = $now"
_PROBE_MATCH: LiteralString = "MATCH (p:DtpProbe {id: $id}) RETURN p.written_ms AS written_ms"
_PROBE_DELETE: LiteralString = "MATCH (p:DtpProbe {id: $id}) DELETE p"


def _one_line(text: object, limit: int = 200) -> str:
    flat = mask_url(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Neo4jGraphStore:
    """Twins, assets, dependencies, plants and devices in Neo4j (or FalkorDB over Bolt)."""

    name: str

    def __init__(self, config: Neo4jConfig, *, name: str = "neo4j") -> None:
        if not config.uri:
            raise ValueError("neo4j: no uri configured")
        self.name = name
        self._config = config
        self._uri = config.uri
        self._driver: AsyncDriver | None = None

    # -- lifetime ---------------------------------------------------------------

    async def open(self) -> None:
        """Create the one driver this store keeps until `close()` (connects lazily)."""
        if self._driver is not None:
            return
        password = self._config.password.get_secret_value() if self._config.password else ""
        timeout = self._config.connection_acquisition_timeout
        try:
            self._driver = AsyncGraphDatabase.driver(
                self._uri,
                auth=(self._config.user, password),
                connection_acquisition_timeout=timeout,
                connection_timeout=timeout,
            )
        except (DriverError, ValueError, TypeError) as exc:
            # The driver's text quotes the whole URI ("Given URI: '…'"): name the kind only.
            msg = f"{self.name}: the driver refused stores.neo4j.uri ({type(exc).__name__})"
            raise StoreError(msg) from None

    async def close(self) -> None:
        """Close the driver; idempotent. Only at shutdown (see the module docstring)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    async def _run(
        self, op: str, *statements: tuple[LiteralString, dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        """Run statements in order in one session; returns each one's records as dicts."""
        if self._driver is None:
            raise StoreError(f"{self.name}: not open")
        out: list[list[dict[str, Any]]] = []
        try:
            async with self._driver.session(database=self._config.database) as session:
                for query, params in statements:
                    result = await session.run(query, params)
                    out.append(await result.data())
        except Neo4jError as exc:
            reason = f"{exc.code}: {exc.message}" if exc.code else str(exc)
            raise StoreError(_one_line(f"{self.name} {op}: {reason}")) from exc
        except (DriverError, OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreError(
                _one_line(f"{self.name} {op}: cannot reach {self._uri}: {reason}")
            ) from exc
        return out

    # -- health -----------------------------------------------------------------

    async def ping(self) -> None:
        """`RETURN 1` over a pooled connection."""
        await self._run("ping", (_PING, {}))

    async def probe(self) -> None:
        """MERGE a `:DtpProbe` node, MATCH it back, delete it."""
        probe_id, now = str(uuid.uuid4()), _now_ms()
        params = {"id": probe_id, "now": now}
        _, found, _ = await self._run(
            "probe",
            (_PROBE_MERGE, params),
            (_PROBE_MATCH, {"id": probe_id}),
            (_PROBE_DELETE, {"id": probe_id}),
        )
        if [row.get("written_ms") for row in found] != [now]:
            raise StoreError(f"{self.name} probe: node written but read back as {found!r}")

    async def ensure_constraints(self) -> None:
        """Create the uniqueness constraints (Neo4j 5 syntax; FalkorDB rejects it)."""
        await self._run("ensure constraints", *((query, {}) for query in CONSTRAINTS))

    # -- graph --------------------------------------------------------------------

    async def merge_twin(
        self, twin_id: str, name: str, tenant: str, status: str, asset_id: str | None
    ) -> None:
        """`(:Twin {id})` with its properties and exactly the one `MIRRORS` edge given."""
        params = {
            "id": twin_id,
            "name": name,
            "tenant": tenant,
            "status": status,
            "asset": asset_id,
            "now": _now_ms(),
        }
        statements: list[tuple[LiteralString, dict[str, Any]]] = [
            (_MERGE_TWIN, params),
            (_UNMIRROR, {"id": twin_id, "asset": asset_id}),
        ]
        if asset_id is not None:
            statements.append((_MIRROR, {"id": twin_id, "asset": asset_id}))
        await self._run("merge twin", *statements)

    async def merge_dependency(
        self, source: str, target: str, kind: Literal["static", "dynamic"]
    ) -> None:
        """`(:Twin {id: source})-[:DEPENDS_ON {kind}]->(:Twin {id: target})`."""
        params = {"source": source, "target": target, "kind": kind, "now": _now_ms()}
        await self._run("merge dependency", (_MERGE_DEPENDENCY, params))

    async def prune_dependencies(
        self, source: str, keep: Sequence[tuple[str, Literal["static", "dynamic"]]]
    ) -> None:
        """Drop `source`'s DEPENDS_ON edges whose (target, kind) is not in `keep`."""
        params = {"source": source, "keep": sorted({f"{t}|{kind}" for t, kind in keep})}
        await self._run("prune dependencies", (_PRUNE_DEPENDENCIES, params))

    async def remove_twin(self, twin_id: str) -> None:
        """Detach-delete the twin node (its assets stay)."""
        await self._run("remove twin", (_REMOVE_TWIN, {"id": twin_id}))

    async def merge_device(self, plant: str, vendor_id: str, login: str) -> None:
        """`(:Plant {name})-[:HAS_DEVICE]->(:Device {plant, vendor_id, login})`."""
        params = {"plant": plant, "vendor_id": vendor_id, "login": login, "now": _now_ms()}
        await self._run("merge device", (_MERGE_DEVICE, params))

    async def remove_device(self, plant: str, vendor_id: str) -> None:
        """Detach-delete a plant's device node (the plant stays)."""
        await self._run("remove device", (_REMOVE_DEVICE, {"plant": plant, "vendor_id": vendor_id}))
