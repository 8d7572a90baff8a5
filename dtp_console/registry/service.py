"""The registry service: twins and services, their lifecycle, and change events.

Every change is written through the repository first and then published on the
bus as `TwinUpdated` (`twin.update`), `TwinDeleted` (`twin.delete`) or
`ServiceUpdated` (`service.update`); a call that changes nothing publishes
nothing. Dependencies on twins the registry does not know are allowed and
flagged in `TwinRecord.unknown_dependencies` wherever a record is handed out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dtp_console.events import Bus, ServiceUpdated, TwinDeleted, TwinUpdated
from dtp_console.registry.discovery import Problem, ScanResult
from dtp_console.registry.errors import ServiceNotFoundError, TwinNotFoundError
from dtp_console.registry.lifecycle import TwinStatus, check_transition, status_on_register
from dtp_console.registry.model import (
    Dependencies,
    Health,
    Interfaces,
    ServiceRecord,
    ServiceSpec,
    StatusChange,
    TwinRecord,
    TwinSpec,
)
from dtp_console.registry.repository import TwinChange, TwinRepository

__all__ = ["Clock", "RegisterResult", "RegistryService", "SyncReport"]

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _registered(
    spec: TwinSpec, source: str | Path | None, before: TwinRecord | None, now: dt.datetime
) -> TwinRecord:
    """The record a registration of `spec` makes of `before` (None: a new twin)."""
    return TwinRecord(
        id=spec.id,
        name=spec.name,
        tenant=spec.tenant,
        status=status_on_register(before.status if before else None, spec.declared_status),
        metadata=spec.metadata,
        interfaces=spec.interfaces,
        dependencies=spec.dependencies,
        source=str(source) if source is not None else (before.source if before else None),
        created_at=before.created_at if before else now,
        updated_at=now,
    )


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """What a registration did."""

    twin: TwinRecord
    """The twin as registered, unknown dependencies flagged."""
    created: bool
    """New to the registry."""
    changed: bool
    """Anything was written (False: it was registered exactly like this already)."""

    @property
    def unknown_dependencies(self) -> list[str]:
        """Dependencies naming no registered twin."""
        return self.twin.unknown_dependencies


@dataclass(slots=True)
class SyncReport:
    """What syncing a scan into the registry did."""

    scan: ScanResult
    """The scan that was synced."""
    created: list[str] = field(default_factory=list)
    """Ids registered for the first time."""
    updated: list[str] = field(default_factory=list)
    """Ids whose registration changed."""
    unchanged: int = 0
    """Twins already registered exactly like this."""
    deprecated: list[str] = field(default_factory=list)
    """Ids soft-deleted because their file is gone or defines another id now."""
    failed: list[Problem] = field(default_factory=list)
    """Valid files the registry refused (a repository error, …)."""
    unknown_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Twin id → dependencies naming no registered twin."""

    @property
    def ok(self) -> bool:
        """Every file was valid and registered."""
        return self.scan.ok and not self.failed

    def summary(self) -> str:
        """One line: `12 files: 2 new, 1 updated, 9 unchanged, 0 deprecated, 1 problem`."""
        problems = len(self.scan.errors) + len(self.failed)
        warnings = len(self.scan.problems) - len(self.scan.errors)
        text = (
            f"{self.scan.files} files: {len(self.created)} new, {len(self.updated)} updated, "
            f"{self.unchanged} unchanged, {len(self.deprecated)} deprecated, "
            f"{problems} problem{'s' if problems != 1 else ''}"
        )
        return text + (f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else "")


class RegistryService:
    """Registers twins and services; every change goes to the repository, then the bus."""

    def __init__(self, repository: TwinRepository, bus: Bus, *, clock: Clock = _utcnow) -> None:
        self.repository = repository
        self._bus = bus
        self._clock = clock

    @property
    def bus(self) -> Bus:
        """The bus every change is published on."""
        return self._bus

    # -- twins -------------------------------------------------------------------

    async def register(
        self, spec: TwinSpec, *, source: str | Path | None = None, reason: str | None = None
    ) -> RegisterResult:
        """Register or re-attach a twin (upsert by id); see `lifecycle.status_on_register`.

        `source` is the file it comes from; None keeps the one already recorded.
        """
        now = self._clock()
        why = reason or "registered"
        change = await self.repository.change_twin(
            spec.id, lambda before: _registered(spec, source, before, now), why
        )
        twin = (await self._flag([change.after]))[0]
        if change.changed:
            self._publish(change, twin, why)
        return RegisterResult(twin, change.created, change.changed)

    async def find(self, twin_id: str) -> TwinRecord | None:
        """One twin (flagged), or None."""
        twin = await self.repository.get_twin(twin_id)
        return None if twin is None else (await self._flag([twin]))[0]

    async def get(self, twin_id: str) -> TwinRecord:
        """One twin (flagged); `TwinNotFoundError` when unknown."""
        twin = await self.find(twin_id)
        if twin is None:
            raise TwinNotFoundError(twin_id)
        return twin

    async def list_twins(
        self, *, tenant: str | None = None, status: TwinStatus | None = None
    ) -> list[TwinRecord]:
        """Twins ordered by id (flagged), optionally of one tenant and/or status."""
        return await self._flag(await self.repository.list_twins(tenant=tenant, status=status))

    async def tenants_of(self, ids: Iterable[str]) -> dict[str, str]:
        """Registered twin id → its tenant, for those of `ids` that are registered.

        What a caller restricted to some tenants needs to report a dependency on
        another tenant's twin as unknown (the API does, per token).
        """
        wanted = set(ids)
        return await self.repository.tenants_of(wanted) if wanted else {}

    async def history(self, twin_id: str) -> list[StatusChange]:
        """The twin's status changes, oldest first."""
        return await self.repository.status_history(twin_id)

    async def set_status(
        self, twin_id: str, status: TwinStatus, *, reason: str | None = None
    ) -> TwinRecord:
        """Move a twin along its lifecycle; `IllegalTransitionError` when the move is not allowed.

        Moving to `deprecated` is a soft delete and publishes `twin.delete`.
        """
        now = self._clock()

        def _mutate(before: TwinRecord | None) -> TwinRecord:
            if before is None:
                raise TwinNotFoundError(twin_id)
            check_transition(twin_id, before.status, status)
            if before.status == status:
                return before
            return before.model_copy(update={"status": status, "updated_at": now})

        why = reason or status
        change = await self.repository.change_twin(twin_id, _mutate, why)
        twin = (await self._flag([change.after]))[0]
        if change.changed:
            self._publish(change, twin, why)
        return twin

    async def activate(self, twin_id: str, *, reason: str = "activate") -> TwinRecord:
        """Set `active` (from `instantiated`, or re-activate a `deprecated` twin)."""
        return await self.set_status(twin_id, "active", reason=reason)

    async def deprecate(self, twin_id: str, *, reason: str = "deprecate") -> TwinRecord:
        """Soft delete: set `deprecated` (kept, listed, re-activatable)."""
        return await self.set_status(twin_id, "deprecated", reason=reason)

    async def patch(
        self,
        twin_id: str,
        *,
        interfaces: Interfaces | None = None,
        dependencies: Dependencies | None = None,
        reason: str = "patch",
    ) -> TwinRecord:
        """Replace a twin's interfaces and/or dependencies (its file wins on the next scan)."""
        now = self._clock()
        update: dict[str, object] = {}
        if interfaces is not None:
            update["interfaces"] = interfaces
        if dependencies is not None:
            update["dependencies"] = dependencies

        def _mutate(before: TwinRecord | None) -> TwinRecord:
            if before is None:
                raise TwinNotFoundError(twin_id)
            patched = before.model_copy(update=update)
            return (
                before
                if patched.same_content(before)
                else patched.model_copy(update={"updated_at": now})
            )

        change = await self.repository.change_twin(twin_id, _mutate, reason)
        twin = (await self._flag([change.after]))[0]
        if change.changed:
            self._publish(change, twin, reason)
        return twin

    async def delete(self, twin_id: str, *, reason: str = "delete") -> TwinRecord:
        """Hard delete: remove the twin and its history; `TwinNotFoundError` when unknown."""
        removed = await self.repository.delete_twin(twin_id)
        if removed is None:
            raise TwinNotFoundError(twin_id)
        self._bus.publish(TwinDeleted(twin=removed, hard=True, reason=reason))
        return removed

    # -- discovery -----------------------------------------------------------------

    async def sync(self, scan: ScanResult, *, previous: ScanResult | None = None) -> SyncReport:
        """Register the scan's twins and deprecate those whose files are gone.

        With `previous` (the watcher's last scan) only what differs is written;
        without it every twin is registered and every active twin whose source
        file lies under the scanned root is checked. A twin whose file still
        exists but no longer parses keeps its last good registration.
        """
        report = SyncReport(scan)
        # Without a previous scan, one read tells which twins are registered as is already
        # (a console start with nothing changed then writes nothing).
        stored = (
            {} if previous is not None else {t.id: t for t in await self.repository.list_twins()}
        )
        now = self._clock()
        for twin_id, spec in scan.twins.items():
            path = scan.sources[twin_id]
            if previous is not None:
                same = previous.twins.get(twin_id) == spec and previous.sources.get(twin_id) == path
            else:
                before = stored.get(twin_id)
                same = _registered(spec, path, before, now).same_content(before)
            if same:
                report.unchanged += 1
                continue
            why = f"registered from {path.relative_to(scan.root)}"
            try:
                result = await self.register(spec, source=path, reason=why)
            except Exception as exc:  # one twin must not stop the others
                report.failed.append(Problem(path, "<registry>", f"not registered: {exc}"))
                continue
            if result.created:
                report.created.append(twin_id)
            elif result.changed:
                report.updated.append(twin_id)
            else:
                report.unchanged += 1
        if scan.root.is_dir():  # a missing root must not deprecate everything
            for twin_id, path in self._vanished(scan, previous, stored):
                why = "file deleted" if not path.exists() else f"{path} no longer defines it"
                try:
                    await self.deprecate(twin_id, reason=why)
                except TwinNotFoundError:
                    continue
                except Exception as exc:  # reported; the rest goes on
                    report.failed.append(Problem(path, "<registry>", f"not deprecated: {exc}"))
                    continue
                report.deprecated.append(twin_id)
        # Flagged once everything is registered: files may depend on ones later in path order.
        wanted = {dep for spec in scan.twins.values() for dep in spec.dependencies.all()}
        known = await self.repository.existing_ids(wanted) if wanted else set()
        for twin_id, spec in scan.twins.items():
            unknown = [dep for dep in spec.dependencies.all() if dep not in known]
            if unknown:
                report.unknown_dependencies[twin_id] = unknown
        return report

    @staticmethod
    def _vanished(
        scan: ScanResult, previous: ScanResult | None, stored: dict[str, TwinRecord]
    ) -> list[tuple[str, Path]]:
        """(id, former source) of twins the scan no longer has, except broken files' twins."""
        if previous is not None:
            candidates = [(i, p) for i, p in previous.sources.items() if i not in scan.twins]
        else:
            candidates = [
                (t.id, Path(t.source))
                for t in stored.values()
                if t.source and t.status != "deprecated" and t.id not in scan.twins
            ]
        return [
            (twin_id, path)
            for twin_id, path in candidates
            if path.is_relative_to(scan.root) and path not in scan.invalid
        ]

    # -- services ------------------------------------------------------------------

    async def register_service(self, spec: ServiceSpec) -> ServiceRecord:
        """Register or update a service (upsert by id)."""
        now = self._clock()

        def _mutate(before: ServiceRecord | None) -> ServiceRecord:
            return ServiceRecord(
                **spec.model_dump(),
                registered_at=before.registered_at if before else now,
                updated_at=now,
            )

        change = await self.repository.change_service(spec.id, _mutate)
        if change.changed:
            previous = change.before.health if change.before else None
            self._bus.publish(ServiceUpdated(service=change.after, previous_health=previous))
        return change.after

    async def update_health(
        self, service_id: str, health: Health, detail: str = ""
    ) -> ServiceRecord:
        """Record a health check result; `ServiceNotFoundError` when unknown."""
        now = self._clock()

        def _mutate(before: ServiceRecord | None) -> ServiceRecord:
            if before is None:
                raise ServiceNotFoundError(service_id)
            if before.health == health and before.health_detail == detail:
                return before
            return before.model_copy(
                update={"health": health, "health_detail": detail, "updated_at": now}
            )

        change = await self.repository.change_service(service_id, _mutate)
        if change.changed:
            previous = change.before.health if change.before else None
            self._bus.publish(ServiceUpdated(service=change.after, previous_health=previous))
        return change.after

    async def get_service(self, service_id: str) -> ServiceRecord:
        """One service; `ServiceNotFoundError` when unknown."""
        service = await self.repository.get_service(service_id)
        if service is None:
            raise ServiceNotFoundError(service_id)
        return service

    async def list_services(self, *, category: str | None = None) -> list[ServiceRecord]:
        """Services ordered by id, optionally of one category."""
        return await self.repository.list_services(category=category)

    # -- helpers -------------------------------------------------------------------

    async def _flag(self, twins: Iterable[TwinRecord]) -> list[TwinRecord]:
        """The twins with `unknown_dependencies` filled in (one repository query)."""
        twins = list(twins)
        wanted = {dep for twin in twins for dep in twin.dependencies.all()}
        known = await self.repository.existing_ids(wanted) if wanted else set()
        known |= {twin.id for twin in twins}
        return [
            twin.model_copy(
                update={
                    "unknown_dependencies": [d for d in twin.dependencies.all() if d not in known]
                }
            )
            for twin in twins
        ]

    def _publish(self, change: TwinChange, twin: TwinRecord, reason: str) -> None:
        before = change.before
        if twin.status == "deprecated" and before is not None and before.status != "deprecated":
            self._bus.publish(TwinDeleted(twin=twin, hard=False, reason=reason))
            return
        self._bus.publish(
            TwinUpdated(
                twin=twin,
                previous_status=before.status if before else None,
                created=before is None,
                reason=reason,
            )
        )
