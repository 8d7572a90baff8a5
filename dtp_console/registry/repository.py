"""Where twins and services are kept: one protocol, SQLite and PostgreSQL behind it.

The adapters import this module; choosing one from the config is
`dtp_console.registry.backends.open_repository` (so no import circle).

Writes are read-modify-write: the caller passes a pure function from the
current record (or None) to the wanted one, and the repository applies it
atomically for that id, so concurrent registrations of one id serialise into
one row. A function that returns the record unchanged writes nothing. A status
that differs from the stored one adds an entry to the status history.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from dtp_console.registry.lifecycle import TwinStatus
from dtp_console.registry.model import ServiceRecord, StatusChange, TwinRecord

__all__ = [
    "ServiceChange",
    "ServiceMutation",
    "TwinChange",
    "TwinMutation",
    "TwinRepository",
]

#: Current record (None when unknown) → wanted record. May raise to refuse the change.
TwinMutation = Callable[[TwinRecord | None], TwinRecord]
ServiceMutation = Callable[[ServiceRecord | None], ServiceRecord]


@dataclass(frozen=True, slots=True)
class TwinChange:
    """A twin before and after a write."""

    before: TwinRecord | None
    after: TwinRecord

    @property
    def changed(self) -> bool:
        """Whether anything but timestamps differs (i.e. something was written)."""
        return not self.after.same_content(self.before)

    @property
    def created(self) -> bool:
        """Whether the twin is new."""
        return self.before is None


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """A service before and after a write."""

    before: ServiceRecord | None
    after: ServiceRecord

    @property
    def changed(self) -> bool:
        """Whether anything but timestamps differs."""
        return not self.after.same_content(self.before)


class TwinRepository(Protocol):
    """Persistence of twins, their status history, and services."""

    async def open(self) -> None:
        """Connect and create the schema if it is missing (idempotent)."""

    async def close(self) -> None:
        """Release connections (idempotent)."""

    async def get_twin(self, twin_id: str) -> TwinRecord | None:
        """One twin, or None."""

    async def list_twins(
        self, *, tenant: str | None = None, status: TwinStatus | None = None
    ) -> list[TwinRecord]:
        """Twins ordered by id, optionally of one tenant and/or status."""

    async def existing_ids(self, ids: Collection[str]) -> set[str]:
        """Which of `ids` are registered."""

    async def tenants_of(self, ids: Collection[str]) -> dict[str, str]:
        """Registered id → its tenant, for those of `ids` that are registered."""

    async def change_twin(self, twin_id: str, mutate: TwinMutation, reason: str) -> TwinChange:
        """Apply `mutate` to the twin atomically; history gets `reason` on a status change."""

    async def delete_twin(self, twin_id: str) -> TwinRecord | None:
        """Remove the twin and its history; the removed record, or None if unknown."""

    async def status_history(self, twin_id: str) -> list[StatusChange]:
        """Status changes of one twin, oldest first."""

    async def get_service(self, service_id: str) -> ServiceRecord | None:
        """One service, or None."""

    async def list_services(self, *, category: str | None = None) -> list[ServiceRecord]:
        """Services ordered by id, optionally of one category."""

    async def change_service(self, service_id: str, mutate: ServiceMutation) -> ServiceChange:
        """Apply `mutate` to the service atomically."""
