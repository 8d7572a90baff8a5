"""Which adapter serves which role, from the config (shared by the service and `check`).

- observations: PostgreSQL and/or InfluxDB when configured, else SQLite;
- events: PostgreSQL when configured, else SQLite;
- relationships: Neo4j when configured, else SQLite;
- blobs: S3 / MinIO when configured, else the blob folder.

The InfluxDB, Neo4j and S3 adapters are imported only when configured, so the
demo never loads their client libraries. An adapter that cannot even be built
(a missing library, a bad setting) is reported as unavailable and its role
falls back to the embedded default, so no data is lost meanwhile.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from dtp_console.stores.config import StoresConfig
from dtp_console.stores.folder import FolderBlobStore
from dtp_console.stores.postgres import PostgresStore
from dtp_console.stores.protocols import (
    BlobStore,
    EventStore,
    GraphStore,
    ObservationStore,
    Store,
    StoreError,
)
from dtp_console.stores.sqlite import SqliteStore

__all__ = ["ROLES", "SERVERS", "StorePlan", "Unavailable", "plan_stores"]

#: The four roles, in display order.
ROLES = ("observations", "events", "relationships", "blobs")
#: Server adapters and the roles they can serve, in display order.
SERVERS: dict[str, tuple[str, ...]] = {
    "postgres": ("observations", "events"),
    "influx": ("observations",),
    "neo4j": ("relationships",),
    "s3": ("blobs",),
}


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A configured store whose adapter could not be built."""

    name: str
    role: str
    error: str


@dataclass(slots=True)
class StorePlan:
    """The adapters chosen for each role."""

    observations: list[ObservationStore] = field(default_factory=list)
    events: EventStore | None = None
    relationships: GraphStore | None = None
    blobs: BlobStore | None = None
    stores: dict[str, Store] = field(default_factory=dict)
    """Every chosen adapter once, by name."""
    roles: dict[str, list[str]] = field(default_factory=dict)
    """The roles each adapter serves, by name."""
    unavailable: list[Unavailable] = field(default_factory=list)
    not_configured: list[str] = field(default_factory=list)
    """Server adapters (`postgres`, `influx`, `neo4j`, `s3`) with no settings."""

    def add(self, store: Store, role: str) -> None:
        """Record that `store` serves `role`."""
        self.stores.setdefault(store.name, store)
        self.roles.setdefault(store.name, []).append(role)

    def role_of(self, name: str) -> str:
        """The comma-joined roles of the adapter called `name`."""
        return ",".join(self.roles.get(name, []))


#: Lazily imported server adapters: name → (module, class, config attribute).
_LAZY: dict[str, tuple[str, str, str]] = {
    "influx": ("dtp_console.stores.influx", "InfluxObservationStore", "influx"),
    "neo4j": ("dtp_console.stores.neo4j", "Neo4jGraphStore", "neo4j"),
    "s3": ("dtp_console.stores.s3", "S3BlobStore", "s3"),
}


def _build(name: str, config: StoresConfig, plan: StorePlan) -> Any:
    """The configured server adapter `name`; None (and an `Unavailable`) when it cannot be built."""
    try:
        if name == "postgres":
            return PostgresStore(config.postgres)
        module, cls, attr = _LAZY[name]
        return getattr(importlib.import_module(module), cls)(getattr(config, attr))
    except ImportError as exc:
        error = f"adapter unavailable: {exc}".splitlines()[0]
    except (StoreError, ValueError, TypeError, AttributeError) as exc:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    plan.unavailable.append(Unavailable(name, ",".join(SERVERS[name]), error))
    return None


def _configured(name: str, config: StoresConfig) -> bool:
    return bool(
        {
            "postgres": config.postgres.dsn,
            "influx": config.influx.url,
            "neo4j": config.neo4j.uri,
            "s3": config.s3.endpoint,
        }[name]
    )


def plan_stores(config: StoresConfig) -> StorePlan:
    """Build (without connecting) the adapters that serve each role."""
    plan = StorePlan()
    built: dict[str, Any] = {}
    for name in SERVERS:
        if not _configured(name, config):
            plan.not_configured.append(name)
            continue
        store = _build(name, config, plan)
        if store is not None:
            built[name] = store
    sqlite: SqliteStore | None = None

    def embedded() -> SqliteStore:
        nonlocal sqlite
        if sqlite is None:
            sqlite = SqliteStore(config.sqlite_path)
        return sqlite

    postgres: PostgresStore | None = built.get("postgres")
    for store in (postgres, built.get("influx")):
        if store is not None:
            plan.observations.append(store)
            plan.add(store, "observations")
    if not plan.observations:
        plan.observations.append(embedded())
        plan.add(embedded(), "observations")
    events: EventStore = postgres if postgres is not None else embedded()
    plan.events = events
    plan.add(events, "events")
    relationships: GraphStore = built.get("neo4j") or embedded()
    plan.relationships = relationships
    plan.add(relationships, "relationships")
    blobs: BlobStore = built.get("s3") or FolderBlobStore(config.blob_dir)
    plan.blobs = blobs
    plan.add(blobs, "blobs")
    return plan
