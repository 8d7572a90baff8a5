"""A plant's watch: a few times a second, the silence watchdog and the ghost flags.

One small task per plant that reads the state and writes flags; the intake
path pays nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from dtp_console.bridge.cell import PlantCell, cell_of
from dtp_console.bridge.ghosts import update_ghosts
from dtp_console.bridge.silence import SilenceWatchdog
from dtp_console.config.model import PlantConfig
from dtp_console.events import OpsLog
from dtp_console.state import PlantState

__all__ = ["PlantWatch"]

#: Longest and shortest time between two looks.
_TICK_MAX_S = 1.0
_TICK_MIN_S = 0.05


class PlantWatch:
    """Runs `SilenceWatchdog.poll` and `update_ghosts` on its own clock."""

    def __init__(
        self,
        plant: PlantConfig | PlantCell,
        state: PlantState,
        log: OpsLog,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cell = cell_of(plant)
        self.state = state
        self._log = log
        self._clock = clock
        self.silence = SilenceWatchdog(self._cell, state, log)

    @property
    def plant(self) -> PlantConfig:
        """The plant's config as it runs now (its `PlantCell`)."""
        return self._cell.plant

    @property
    def tick_s(self) -> float:
        """How often it looks: a quarter of the shortest bound, within 0.05–1 s."""
        plant = self.plant
        bounds = (plant.silence_reconnect_s, plant.ghost_after_s, plant.refused_after_s)
        quarters = [b / 4 for b in bounds if b > 0]
        return max(_TICK_MIN_S, min([_TICK_MAX_S, *quarters]))

    def tick(self, now: float | None = None) -> None:
        """Look once, as of monotonic `now`."""
        now = self._clock() if now is None else now
        self.silence.poll(now)
        update_ghosts(self.plant, self.state, self._log, now)

    async def run(self, stop: asyncio.Event) -> None:
        """Look every `tick_s` until `stop`."""
        while not stop.is_set():
            self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_s)
