"""What the stores keep: plain records shared by every adapter (no I/O here)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BlobManifest",
    "EventRecord",
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
