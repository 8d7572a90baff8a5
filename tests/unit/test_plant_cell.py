"""A plant's cell: the one current config its bridge, poster and watch read."""

from __future__ import annotations

import pytest

from dtp_console.bridge.cell import PlantCell, cell_of
from dtp_console.bridge.watch import PlantWatch
from dtp_console.config.model import PlantConfig
from dtp_console.events import Bus, OpsLog
from dtp_console.state import PlantState


def _plant(**extra: object) -> PlantConfig:
    return PlantConfig.model_validate(
        {"name": "Old Plant", "format": "ati_sherpa", "twinzo": {"sector_id": 2}, **extra}
    )


def test_every_holder_of_a_cell_sees_a_replacement() -> None:
    cell = PlantCell(_plant())
    watch = PlantWatch(cell, PlantState("Old Plant"), OpsLog(Bus()))
    cell.replace(_plant(stale_after_s=2.0, ghost_after_s=2.0))
    assert watch.plant.stale_after_s == 2.0
    assert watch.silence.plant is watch.plant
    assert watch.tick_s == 0.5
    assert cell.version == 1


def test_a_cell_keeps_its_plant_name() -> None:
    cell = PlantCell(_plant())
    with pytest.raises(ValueError, match="keeps its name"):
        cell.replace(_plant(name="Other Plant"))
    assert cell.plant.name == "Old Plant"
    assert cell.version == 0


def test_a_holder_built_on_its_own_gets_its_own_cell() -> None:
    cell = PlantCell(_plant())
    assert cell_of(cell) is cell
    assert cell_of(_plant()).plant.name == "Old Plant"
