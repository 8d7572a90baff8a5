"""What the stores keep: plain records shared by every adapter (no I/O here)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from dtp_console.stores.uuid7 import uuid7

__all__ = [
    "BlobManifest",
    "BlobPut",
    "EventRecord",
    "GraphChange",
    "GraphOpName",
    "Observation",
    "ProbeResult",
    "Severity",
    "Signal",
]

#: 0 debug/info, 1 notice, 2 warning, 3 error (the platform's event_log convention).
Severity = Literal[0, 1, 2, 3]


@dataclass(frozen=True, slots=True)
class Signal:
    """A measured quantity (`signal` table)."""

    signal_id: uuid.UUID
    name: str
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of a signal at a time (`observation` table / Influx `observation`)."""

    signal_id: uuid.UUID
    ts: dt.datetime
    """Timezone-aware."""
    value_double: float | None = None
    value_text: str | None = None
    quality: dict[str, Any] | None = None
    source: str = "dtp-console"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One platform event (`event_log` table)."""

    ts: dt.datetime
    severity: Severity
    source: str
    body: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid7)
    """Client-made UUIDv7: a replayed or retried event is written once (`event_id`)."""


#: The `GraphStore` methods a `GraphChange` can call.
GraphOpName = Literal[
    "merge_twin",
    "merge_dependency",
    "prune_dependencies",
    "remove_twin",
    "merge_device",
    "remove_device",
]


@dataclass(frozen=True, slots=True)
class GraphChange:
    """One relationship change: the `GraphStore` method to call and its arguments.

    Data, not a closure, so it can wait in a disk spool. Every method is a
    merge or a delete by key, so applying a change twice (a retry, a replay
    after a crash) leaves the graph as applying it once.
    """

    op: GraphOpName
    args: tuple[Any, ...]
    id: uuid.UUID = field(default_factory=uuid7)
    """Client-made UUIDv7 of the change (time-ordered)."""


@dataclass(frozen=True, slots=True)
class BlobPut:
    """An object to store (its key is fixed when queued, so a replay overwrites, never adds)."""

    key: str
    data: bytes
    content_type: str
    source: str


@dataclass(frozen=True, slots=True)
class BlobManifest:
    """The manifest stored beside every blob (manifest pattern)."""

    key: str
    size: int
    sha256: str
    content_type: str
    created: dt.datetime
    source: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready manifest."""
        return {
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "created": self.created.isoformat(),
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of a write-and-read-back probe or a health check of one store."""

    name: str
    """Store name as configured (e.g. `postgres`, `influx`, `neo4j`, `s3`, `sqlite`, `folder`)."""
    role: str
    """`observations`, `events`, `relationships` or `blobs` (comma-joined when several)."""
    ok: bool
    latency_ms: float | None = None
    error: str | None = None
    configured: bool = True
