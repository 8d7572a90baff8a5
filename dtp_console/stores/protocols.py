"""The store roles as protocols; each backend adapter implements the roles it serves.

Every method raises `StoreError` (with a one-line reason) when the backend
fails; callers (the spool, the health worker, `check`) never see a driver's
own exception types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from dtp_console.stores.records import BlobManifest, EventRecord, Observation, Signal

__all__ = [
    "BlobStore",
    "EventStore",
    "GraphStore",
    "ObservationStore",
    "Store",
    "StoreError",
]


class StoreError(Exception):
    """A store operation failed; `str()` is one line an operator can act on."""


class Store(Protocol):
    """What every adapter has: a name, a lifetime, a health check and a probe."""

    name: str
    """`postgres`, `influx`, `neo4j`, `s3`, `sqlite`, `folder`, …"""

    async def open(self) -> None:
        """Connect (pool, driver, client); idempotent."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def ping(self) -> None:
        """A cheap liveness check."""

    async def probe(self) -> None:
        """Write a probe record and read it back (the wiring check)."""


class ObservationStore(Store, Protocol):
    """Time series of signal values."""

    async def write_signals(self, signals: Sequence[Signal]) -> None:
        """Upsert signal definitions."""

    async def write_observations(self, batch: Sequence[Observation]) -> None:
        """Write a batch of observations (idempotent on (signal_id, ts))."""


class EventStore(Store, Protocol):
    """The platform event log."""

    async def write_events(self, batch: Sequence[EventRecord]) -> None:
        """Append a batch of events."""


class GraphStore(Store, Protocol):
    """Relationships: twins, assets, dependencies, plants and devices."""

    async def merge_twin(
        self, twin_id: str, name: str, tenant: str, status: str, asset_id: str | None
    ) -> None:
        """`(:Twin {id})` with its properties, `-[:MIRRORS]->(:Asset {id})` when given."""

    async def merge_dependency(
        self, source: str, target: str, kind: Literal["static", "dynamic"]
    ) -> None:
        """`(:Twin {id: source})-[:DEPENDS_ON {kind}]->(:Twin {id: target})`."""

    async def prune_dependencies(
        self, source: str, keep: Sequence[tuple[str, Literal["static", "dynamic"]]]
    ) -> None:
        """Drop `source`'s DEPENDS_ON edges not in `keep` (target, kind): a twin file lost them."""

    async def remove_twin(self, twin_id: str) -> None:
        """Detach-delete the twin node."""

    async def merge_device(self, plant: str, vendor_id: str, login: str) -> None:
        """`(:Plant {name})-[:HAS_DEVICE]->(:Device {plant, vendor_id, login})`."""

    async def remove_device(self, plant: str, vendor_id: str) -> None:
        """Detach-delete a plant's device node."""


class BlobStore(Store, Protocol):
    """Objects with a manifest beside each (`<key>` and `<key>.manifest.json`)."""

    async def put(self, key: str, data: bytes, content_type: str, source: str) -> BlobManifest:
        """Store the object and its manifest; returns the manifest."""

    async def get(self, key: str) -> bytes:
        """The object's bytes."""

    async def manifest(self, key: str) -> BlobManifest:
        """The object's manifest."""
