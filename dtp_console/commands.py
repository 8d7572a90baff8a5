"""The engine's commands behind `dtp_console.view.EngineCommands` (the affine, captures, twins).

Each command has the guarantees of `Engine.save_device_map`: validate first
(nothing changes on a refusal), write the config file atomically keeping its
comments, apply to the running bridge, record an `event_log` entry when the
stores run, and log one line. `Engine` wires these to its workers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from dtp_console.bridge.geometry import apply_affine, invert_affine
from dtp_console.calibrate.points import ControlPoint
from dtp_console.calibrate.store import round_affine, store_affine
from dtp_console.events import OpsLog
from dtp_console.state import PlantState
from dtp_console.stores.records import EventRecord
from dtp_console.view import AffineSaved

if TYPE_CHECKING:
    from dtp_console.bridge.worker import Bridge
    from dtp_console.config.model import Affine
    from dtp_console.registry.model import ServiceRecord, StatusChange, TwinRecord
    from dtp_console.registry.service import RegistryService
    from dtp_console.stores.service import StoreService

__all__ = ["AffineSource", "ConfigFileWrites", "LoggedRegistry", "capture_point", "save_affine"]

_T = TypeVar("_T")


class ConfigFileWrites:
    """The commands' config-file writes: in a worker thread, one at a time, numbered.

    Reading, merging, writing and fsyncing the YAML takes milliseconds to tens of
    them; on the event loop that would stall every bridge and the API. Off it, two
    commands may finish in either order, so each write gets a generation and a
    command applies its result to the running bridge only when no later write of
    the same thing was applied meanwhile (`newest`): the file's merge already
    holds the earlier edits, so the bridge always runs what the file says last.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order = threading.Lock()  # `newest` may be asked from several threads' loops
        self._generation = 0
        self._applied: dict[tuple[str, str], int] = {}

    async def write(self, work: Callable[[], _T]) -> tuple[_T, int]:
        """Run `work` in a thread under the file lock; its result and generation."""

        def locked() -> tuple[_T, int]:
            with self._lock:
                result = work()
                self._generation += 1
                return result, self._generation

        return await asyncio.to_thread(locked)

    def newest(self, what: str, plant_name: str, generation: int) -> bool:
        """Whether a write of `generation` is the newest of `what` for the plant to apply."""
        key = (what, plant_name)
        with self._order:
            if generation <= self._applied.get(key, 0):
                return False
            self._applied[key] = generation
            return True


class AffineSource(Protocol):
    """What `capture_point` needs of a running bridge: its affine (a `Bridge`, or an
    attached console's replica of the service's)."""

    @property
    def affine(self) -> Affine:
        """The vendor → twinzo affine in force."""
        ...


async def save_affine(
    plant_name: str,
    values: Mapping[str, float],
    *,
    reason: str,
    config_path: Path | None,
    files: ConfigFileWrites,
    bridge: Bridge | None,
    stores: StoreService | None,
    log: OpsLog,
) -> AffineSaved:
    """Store `values` as the plant's affine and apply it to its running bridge.

    Raises `ConfigWriteError` for values that make no valid affine or a file that
    cannot be written; the running affine and the file stay as they were.
    """
    rounded, affine = round_affine(values)
    newest = True
    if config_path is not None:
        path = config_path
        _, generation = await files.write(lambda: store_affine(path, plant_name, rounded))
        newest = files.newest("affine", plant_name, generation)
    before = bridge.affine.model_dump() if bridge is not None else None
    if bridge is not None and newest:
        bridge.apply_affine(affine)
    after = affine.model_dump()
    if stores is not None:
        stores.submit_event(
            EventRecord(
                ts=dt.datetime.now(dt.UTC),
                severity=1,
                source="affine",
                body={"plant": plant_name, "reason": reason, "before": before, "after": after},
            )
        )
    where = f"written to {config_path}" if config_path is not None else "not stored (no file)"
    applied = "applied" if bridge is not None else "no bridge running"
    log.emit("INFO", f"affine of {plant_name} set by {reason}: {where}; {applied}", plant_name)
    return AffineSaved(plant_name, after, config_path, bridge is not None)


def capture_point(
    plant_name: str,
    vendor_id: str,
    twinzo_x: float,
    twinzo_y: float,
    name: str,
    *,
    bridge: AffineSource | None,
    state: PlantState | None,
) -> ControlPoint:
    """The control point pairing the robot's last vendor position with (twinzo_x, twinzo_y).

    Raises `ValueError` when the plant has no running bridge or the robot no position.
    """
    if bridge is None:
        msg = f"{plant_name}: the bridge is not running"
        raise ValueError(msg)
    device = state.devices.get(vendor_id) if state is not None else None
    if device is None or device.x is None or device.y is None:
        msg = f"{vendor_id} has no position yet"
        raise ValueError(msg)
    if device.vendor_x is not None and device.vendor_y is not None:
        # As the vendor sent it: right even if the affine changed since.
        vendor_x, vendor_y = device.vendor_x, device.vendor_y
    else:
        # Undo the affine that produced the twinzo millimetres.
        vendor_x, vendor_y = apply_affine(invert_affine(bridge.affine), device.x, device.y)
    return ControlPoint(name or device.login, vendor_x, vendor_y, twinzo_x, twinzo_y)


class LoggedRegistry:
    """The running registry as the UI sees it (`RegistryView`): lifecycle moves are logged.

    The registry service itself publishes `TwinUpdated` / `TwinDeleted`, which the
    stores record; this adds the operator's log line, as the other commands do.
    """

    def __init__(self, service: RegistryService, log: OpsLog) -> None:
        self.service = service
        self._log = log

    async def list_twins(self) -> list[TwinRecord]:
        """Every twin, ordered by id."""
        return await self.service.list_twins()

    async def get(self, twin_id: str) -> TwinRecord:
        """One twin; `TwinNotFoundError` when unknown."""
        return await self.service.get(twin_id)

    async def history(self, twin_id: str) -> list[StatusChange]:
        """The twin's status changes, oldest first."""
        return await self.service.history(twin_id)

    async def list_services(self) -> list[ServiceRecord]:
        """Every registered service, ordered by id."""
        return await self.service.list_services()

    async def activate(self, twin_id: str, *, reason: str = "activate") -> TwinRecord:
        """Set `active`."""
        return await self._move("activate", twin_id, reason)

    async def deprecate(self, twin_id: str, *, reason: str = "deprecate") -> TwinRecord:
        """Soft delete (`deprecated`)."""
        return await self._move("deprecate", twin_id, reason)

    async def delete(self, twin_id: str, *, reason: str = "delete") -> TwinRecord:
        """Hard delete."""
        return await self._move("delete", twin_id, reason)

    async def _move(
        self, action: Literal["activate", "deprecate", "delete"], twin_id: str, reason: str
    ) -> TwinRecord:
        move = {
            "activate": self.service.activate,
            "deprecate": self.service.deprecate,
            "delete": self.service.delete,
        }[action]
        twin = await move(twin_id, reason=reason)
        self._log.emit("INFO", f"twin {twin_id} {action}d ({reason})")
        return twin
