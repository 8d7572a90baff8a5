"""The one owner of a running plant's current config.

A plant's bridge, poster, watch and silence watchdog all read their settings
through the same `PlantCell`, never a copy taken at start-up: a config reload
or an operator's device-map or affine command replaces the cell's value once
and every holder sees it from its next look. The engine's `plants` and
`config` are read from the cells too, so the UI never sees two versions.
"""

from __future__ import annotations

from dtp_console.config.model import PlantConfig, TwinzoConfig

__all__ = ["PlantCell", "cell_of"]


class PlantCell:
    """A plant's config and the twinzo posting settings it runs with now."""

    __slots__ = ("_plant", "_twinzo", "version")

    def __init__(self, plant: PlantConfig, twinzo: TwinzoConfig | None = None) -> None:
        self._plant = plant
        self._twinzo = twinzo if twinzo is not None else TwinzoConfig()
        self.version = 0
        """Counts replacements (readers that derive from the cell rebuild when it moves)."""

    @property
    def plant(self) -> PlantConfig:
        """The plant's config as it runs now."""
        return self._plant

    @property
    def twinzo(self) -> TwinzoConfig:
        """The `twinzo` section as the plant's poster uses it now."""
        return self._twinzo

    def replace(self, plant: PlantConfig, twinzo: TwinzoConfig | None = None) -> None:
        """Run with `plant` (and `twinzo`, when given) from now on; the name never changes."""
        if plant.name != self._plant.name:
            msg = f"a plant cell keeps its name: {self._plant.name!r}, not {plant.name!r}"
            raise ValueError(msg)
        self._plant = plant
        if twinzo is not None:
            self._twinzo = twinzo
        self.version += 1


def cell_of(plant: PlantConfig | PlantCell, twinzo: TwinzoConfig | None = None) -> PlantCell:
    """`plant`'s cell: itself when it is one, else a new cell (a holder built on its own)."""
    return plant if isinstance(plant, PlantCell) else PlantCell(plant, twinzo)
