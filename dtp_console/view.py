"""The UI's one door into the engine: a typed read view and a small set of commands.

The UI never holds the `Engine` as such: it holds a `ConsoleEngine`, which
`dtp_console.runtime.Engine` implements. Reading goes through `EngineView`
(config, state, bus subscription, plants, running device maps, registry,
store health). Store health has one home, the stores service's latest check per
store, read through `store_health` on the UI's clock: a copy rebuilt from
`StoreHealth` events would go stale whenever the bounded subscription drops one.
Every change to a running plant goes through one `EngineCommands` method, which
validates, writes the config file atomically (comments kept), applies the change
live, records an event and logs a line; twin lifecycle moves go through
`EngineView.twins`, whose engine-side implementation logs each one (the registry
service publishes the event the stores record).

Only types live here (no Textual, no I/O), so both sides import it for free;
the heavy ones are imported under `TYPE_CHECKING`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from dtp_console.calibrate.points import ControlPoint
    from dtp_console.config.model import ConsoleConfig, PlantConfig
    from dtp_console.events import StoreHealth, Subscription
    from dtp_console.ingest.rings import Rings
    from dtp_console.registry.model import ServiceRecord, StatusChange, TwinRecord
    from dtp_console.state import EngineState

__all__ = [
    "AffineSaved",
    "ConsoleEngine",
    "EngineCommands",
    "EngineView",
    "LinkState",
    "LinkStatus",
    "RegistryView",
]


class RegistryView(Protocol):
    """What the UI may ask of the running twin registry (reads and lifecycle moves)."""

    async def list_twins(self) -> list[TwinRecord]:
        """Every twin, ordered by id."""
        ...

    async def get(self, twin_id: str) -> TwinRecord:
        """One twin; `TwinNotFoundError` when unknown."""
        ...

    async def history(self, twin_id: str) -> list[StatusChange]:
        """The twin's status changes, oldest first."""
        ...

    async def list_services(self) -> list[ServiceRecord]:
        """Every registered service, ordered by id."""
        ...

    async def activate(self, twin_id: str, *, reason: str = ...) -> TwinRecord:
        """Set `active`; the twin as it is now."""
        ...

    async def deprecate(self, twin_id: str, *, reason: str = ...) -> TwinRecord:
        """Soft delete (`deprecated`); the twin as it is now."""
        ...

    async def delete(self, twin_id: str, *, reason: str = ...) -> TwinRecord:
        """Hard delete; the twin as it was."""
        ...


LinkState = Literal["connecting", "up", "down"]


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """How an attached UI's link to its engine is (`EngineView.link`)."""

    state: LinkState
    """`connecting` (first contact), `up` (state flowing) or `down` (lost; retrying)."""
    url: str
    """The engine's API address (never with credentials)."""
    detail: str = ""
    """Why it is down, or who is at the other end."""
    since: float | None = None
    """Epoch seconds of the last change of `state`."""


@dataclass(frozen=True, slots=True)
class AffineSaved:
    """What `EngineCommands.save_affine` did."""

    plant: str
    values: Mapping[str, float]
    """The parameters stored and applied (rounded as the file keeps them)."""
    written: Path | None
    """The config file written, or None when the console runs without one."""
    applied: bool
    """Whether a running bridge took the new affine."""


class EngineView(Protocol):
    """What the UI reads: state, its bus subscription, plants, store health, registry."""

    @property
    def config(self) -> ConsoleConfig:
        """The config that runs (read only: change it through the commands or the file).

        After a reload it holds the file's live values and the running values of
        what needs a restart (`dtp_console.config.reload`)."""
        ...

    @property
    def state(self) -> EngineState:
        """The live state the workers write and the UI reads on its own clock."""
        ...

    @property
    def plants(self) -> Sequence[PlantConfig]:
        """The plants this process runs, in tab order, as they run now (same as `config`)."""
        ...

    @property
    def twins(self) -> RegistryView | None:
        """The twin registry while it runs (None otherwise); the same object until it restarts.

        Its `activate` / `deprecate` / `delete` are the twin lifecycle commands.
        """
        ...

    @property
    def rings(self) -> Rings | None:
        """The platform worker's bounded per-stream rings (the twin view), None while it
        does not run; read on the UI's clock, never written by the UI."""
        ...

    @property
    def store_health(self) -> Mapping[str, StoreHealth]:
        """The latest health check of each store, by name (empty while no stores run)."""
        ...

    def subscribe(self, *, maxsize: int) -> Subscription:
        """A bounded reader of the engine's bus (events from now on)."""
        ...

    def device_map(self, plant_name: str) -> dict[str, str] | None:
        """The running device map of a plant, or None while its bridge is not running."""
        ...

    @property
    def link(self) -> LinkStatus | None:
        """The link to an attached engine (None: the engine runs in this process)."""
        ...

    @property
    def read_only(self) -> str | None:
        """Why this UI may not change anything (a viewer token), or None when it may."""
        ...


class EngineCommands(Protocol):
    """Every change the UI may make to a running plant or twin: one method each."""

    async def save_device_map(
        self,
        plant_name: str,
        mapping: Mapping[str, str],
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Validate, write and apply the operator's device-map edits; the map now in force.

        Raises `ValueError` for an invalid map, `DeviceMapConflictError` when a vendor id
        changed both ways meanwhile (its `current` is the map to rebase on),
        `ConfigWriteError` when it could not be stored and `OSError` (`ConnectionError`,
        `PermissionError`) when an attached engine cannot be reached or refuses.
        """
        ...

    async def save_affine(
        self, plant_name: str, values: Mapping[str, float], *, reason: str
    ) -> AffineSaved:
        """Validate, write and apply a plant's vendor → twinzo affine (raises as
        `save_device_map` does)."""
        ...

    def capture_point(
        self, plant_name: str, vendor_id: str, twinzo_x: float, twinzo_y: float, name: str
    ) -> ControlPoint:
        """Pair a robot's last vendor position with where twinzo shows it.

        A read of the state the view already holds (no round trip), hence not async;
        `ValueError` when the robot has no position or the plant no bridge.
        """
        ...


class ConsoleEngine(EngineView, EngineCommands, Protocol):
    """The whole door: the view, the commands, and the run the App starts beside it."""

    async def run(self, stop: asyncio.Event) -> None:
        """Run every worker until `stop` is set, then shut down in order."""
        ...
