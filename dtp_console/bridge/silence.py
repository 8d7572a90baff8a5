"""The silent-connection watchdog: a plant that was reporting and went quiet is reconnected.

A broker can keep a connection up and deliver nothing (a lost subscription
after a broker restart or failover, an ACL change, a half-open path): the
client looks "connected" and no message arrives. When no message at all has
arrived for `silence_reconnect_s` while robots were reporting before, the
watchdog asks the MQTT source to drop the connection, reconnect and subscribe
again; it says so once per silent episode, counts every reconnect, and keeps
`PlantState.silent` for readiness. The watchdog only reads counters and sets
an event: it costs nothing per message.
"""

from __future__ import annotations

import asyncio

from dtp_console.bridge.cell import PlantCell, cell_of
from dtp_console.config.model import PlantConfig
from dtp_console.events import OpsLog
from dtp_console.state import PlantState

__all__ = ["MAX_BACKOFF_FACTOR", "SilenceWatchdog"]

#: A silence that outlasts reconnects is retried after 2×, 4×, … the bound, at most 8×.
MAX_BACKOFF_FACTOR = 8


class SilenceWatchdog:
    """Decides, on each `poll(now)`, whether one plant is silent and must reconnect."""

    def __init__(self, plant: PlantConfig | PlantCell, state: PlantState, log: OpsLog) -> None:
        self._cell = cell_of(plant)
        self.state = state
        self._log = log
        self.reconnect = asyncio.Event()
        """Set when the source should drop its connection; the source clears it on connect."""
        self._seen = state.counters.received
        self._last_activity: float | None = None
        """When a message last arrived (as of a poll); None until the first: not armed."""
        self._connects = state.connects
        self._connected_at: float | None = None
        self._forced = 0
        """Reconnects forced in this silent episode."""

    @property
    def plant(self) -> PlantConfig:
        """The plant's config as it runs now (its `PlantCell`)."""
        return self._cell.plant

    def poll(self, now: float) -> None:
        """Look at the plant as of monotonic `now` (called a few times per bound)."""
        state = self.state
        received = state.counters.received
        if received != self._seen:
            self._seen = received
            if state.silent:
                self._end(now)
            self._last_activity = now
        if state.connects != self._connects:
            self._connects, self._connected_at = state.connects, now
        bound = self.plant.silence_reconnect_s
        if bound <= 0 or self._last_activity is None:
            return
        silent_for = now - self._last_activity
        if silent_for < bound:
            return
        if _all_signed_off(state):
            # Every robot said OFFLINE (VDA 5050 `connection`): the quiet is explained.
            return
        state.silent = True
        if state.mqtt != "connected" or self.reconnect.is_set():
            return  # a dropped connection reconnects by itself; the silence is only shown
        since = now - max(self._last_activity, self._connected_at or self._last_activity)
        if since < bound * min(MAX_BACKOFF_FACTOR, 2**self._forced):
            return
        self._forced += 1
        state.silence_reconnects += 1
        if self._forced == 1:
            self._log.emit(
                "WARN",
                f"MQTT {self.plant.name}: no message for {silent_for:.0f}s although robots "
                "were reporting and the connection is up; reconnecting and resubscribing "
                f"(silence_reconnect_s: {bound:g})",
                self.plant.name,
            )
        self.reconnect.set()

    def _end(self, now: float) -> None:
        """Messages arrive again: the episode is over."""
        self.state.silent = False
        if self._forced and self._last_activity is not None:
            times = "reconnect" if self._forced == 1 else "reconnects"
            lasted = now - self._last_activity
            self._log.emit(
                "INFO",
                f"MQTT {self.plant.name}: messages flow again after {lasted:.0f}s of silence"
                f" ({self._forced} silence {times})",
                self.plant.name,
            )
        self._forced = 0


def _all_signed_off(state: PlantState) -> bool:
    """Whether the plant has robots and each one has said it is offline."""
    devices = state.devices.values()
    return bool(devices) and all(d.robot is not None and d.robot.offline for d in devices)
