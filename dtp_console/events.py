"""Typed engine events and the in-process bus that the UI and the logs read.

Workers publish events; readers subscribe with a bounded queue each. A slow
reader never slows a worker: when its queue is full the oldest event is
dropped and counted on that subscription. Hot-path counters do not travel as
events; they live in `dtp_console.state`, which readers sample on their own clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from dtp_console.textsafe import safe_text

if TYPE_CHECKING:
    from dtp_console.registry.model import ServiceRecord, TwinRecord

__all__ = [
    "Bus",
    "Event",
    "Level",
    "LogLine",
    "OpsLog",
    "ServiceUpdated",
    "StoreHealth",
    "Subscription",
    "TwinDeleted",
    "TwinUpdated",
]

Level = Literal["OK", "FAIL", "WARN", "INFO"]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every engine event."""

    ts: float = field(default_factory=time.time, kw_only=True)
    """Wall-clock time of the event (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class LogLine(Event):
    """An operator log line (`OK …`, `FAIL …`, `WARN …`, `INFO …`)."""

    level: Level
    text: str
    """The message; control characters in it are escaped visibly when the line is made."""
    plant: str | None = None

    def __post_init__(self) -> None:
        # Every log line is made here, and its text often carries vendor ids and
        # topics: escaping once at creation covers stdout, `logging.file`, the
        # UI's log panel and the events store alike (a `\n` cannot forge a line).
        object.__setattr__(self, "text", safe_text(self.text))
        if self.plant is not None:
            object.__setattr__(self, "plant", safe_text(self.plant, 200))

    def render(self) -> str:
        """The line as operators know it: `LEVEL text`."""
        return f"{self.level} {self.text}"


class Subscription:
    """One reader's bounded queue of events."""

    def __init__(self, bus: Bus, maxsize: int) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0
        """Events dropped because this reader fell behind."""

    def _offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.queue.get_nowait()
            self.dropped += 1
            self.queue.put_nowait(event)

    async def get(self) -> Event:
        """Wait for the next event."""
        return await self.queue.get()

    def drain(self) -> Iterator[Event]:
        """Every event queued right now, without waiting."""
        while True:
            try:
                yield self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return

    def close(self) -> None:
        """Stop receiving events."""
        self._bus.unsubscribe(self)


class Bus:
    """Fan-out of events to bounded subscriptions; publishing never blocks."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        """A new reader; events published from now on reach it."""
        subscription = Subscription(self, maxsize)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Detach a reader (idempotent)."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: Event) -> None:
        """Deliver `event` to every reader."""
        for subscription in self._subscriptions:
            subscription._offer(event)


@dataclass(slots=True)
class _Repeat:
    first_at: float
    suppressed: int = 0
    level: Level = "WARN"
    plant: str | None = None
    text: str = ""


_DISTINCT_KEEP = 10_000
"""Distinct folded items remembered per group and window (memory bound under a flood)."""
_ITEM_KEPT = 64
"""Characters of a folded item kept to tell items apart and to quote as examples."""


@dataclass(slots=True)
class _Distinct:
    """One window of a group of distinct items (e.g. a plant's unknown devices)."""

    first_at: float
    level: Level
    plant: str | None
    noun: str
    shown: set[str] = field(default_factory=set)
    folded: dict[str, None] = field(default_factory=dict)
    """Items past the first few, in arrival order (a dict keeps the order; a set does not)."""
    spilled: int = 0
    """Folded items past `_DISTINCT_KEEP`, counted without telling repeats apart."""

    def summary(self, window_s: float) -> str | None:
        more = len(self.folded) + self.spilled
        if not more:
            return None
        examples = ", ".join(list(self.folded)[:3])
        etc = ", …" if more > 3 else ""
        return f"… and {more} more {self.noun} in the last {window_s:g}s ({examples}{etc})"


class OpsLog:
    """Operator log lines onto the bus, with repeats summarised per key, never silenced.

    The first line for a key is published at once; repeats within
    `window_s` are counted, and the next line after the window (or `flush()`)
    says how many were folded into it. `distinct()` also folds a group of keys:
    past the first `distinct_max` distinct items per window, one line at the
    window's end says how many more there were.
    """

    def __init__(self, bus: Bus, window_s: float = 10.0, *, distinct_max: int = 5) -> None:
        self._bus = bus
        self._window = window_s
        self._distinct_max = distinct_max
        self._repeats: dict[str, _Repeat] = {}
        self._groups: dict[str, _Distinct] = {}

    def emit(self, level: Level, text: str, plant: str | None = None) -> None:
        """Publish a line as it is (used for `OK` and `INFO`)."""
        self._bus.publish(LogLine(level=level, text=text, plant=plant))

    def limited(self, level: Level, key: str, text: str, plant: str | None = None) -> None:
        """Publish a failure or warning, folding repeats of `key` within the window."""
        now = time.monotonic()
        repeat = self._repeats.get(key)
        if repeat is not None and now - repeat.first_at < self._window:
            repeat.suppressed += 1
            repeat.level, repeat.plant, repeat.text = level, plant, text
            return
        if repeat is not None and repeat.suppressed:
            text = f"{text} (+{repeat.suppressed} like it in the last {self._window:g}s)"
        self._repeats[key] = _Repeat(first_at=now)
        self._bus.publish(LogLine(level=level, text=text, plant=plant))

    def distinct(
        self,
        level: Level,
        group: str,
        item: str,
        text: str,
        plant: str | None = None,
        *,
        noun: str,
    ) -> None:
        """Like `limited` (key `group:item`), but fold items of `group` past the first few.

        A flood of distinct ids (1,500 unknown devices) would otherwise be
        1,500 lines: the first `distinct_max` items of a window get their own
        line, the rest one `… and N more <noun>` line when the window ends.
        """
        now = time.monotonic()
        key = f"{group}:{item}"
        repeat = self._repeats.get(key)
        if repeat is not None and now - repeat.first_at < self._window:
            self.limited(level, key, text, plant)  # an item already shown: a plain repeat
            return
        window = self._groups.get(group)
        if window is None or now - window.first_at >= self._window:
            if window is not None:
                self._publish_summary(window)
            window = self._groups[group] = _Distinct(now, level, plant, noun)
        if len(window.shown) < self._distinct_max or item in window.shown:
            window.shown.add(item)
            self.limited(level, key, text, plant)
            return
        kept = item[:_ITEM_KEPT]
        if kept in window.folded:
            return
        if len(window.folded) < _DISTINCT_KEEP:
            window.folded[kept] = None
        else:
            window.spilled += 1

    def _publish_summary(self, window: _Distinct) -> None:
        text = window.summary(self._window)
        if text is not None:
            self._bus.publish(LogLine(level=window.level, text=text, plant=window.plant))

    def flush(self, *, final: bool = False) -> None:
        """Publish a summary for every key whose window ended with repeats pending.

        With `final` (the engine is stopping) every pending summary is published
        now, window ended or not: the last folded warning is not lost at shutdown.
        """
        now = time.monotonic()
        for key, repeat in list(self._repeats.items()):
            if not final and now - repeat.first_at < self._window:
                continue
            if repeat.suppressed:
                times = f" (x{repeat.suppressed} in the last {self._window:g}s)"
                text = repeat.text + (times if repeat.suppressed > 1 else "")
                self._bus.publish(LogLine(level=repeat.level, text=text, plant=repeat.plant))
            del self._repeats[key]
        for group, window in list(self._groups.items()):
            if not final and now - window.first_at < self._window:
                continue
            self._publish_summary(window)
            del self._groups[group]


@dataclass(frozen=True, slots=True)
class TwinUpdated(Event):
    """`twin.update`: a twin was registered or changed (spec, status, interfaces, …)."""

    kind: ClassVar[str] = "twin.update"

    twin: TwinRecord
    """The twin as it is now (with its unknown dependencies flagged)."""
    previous_status: str | None = None
    """Its status before; None when it is new."""
    created: bool = False
    """Whether it was registered for the first time."""
    reason: str = ""
    """What changed it (`registered`, `file changed`, `activate`, …)."""


@dataclass(frozen=True, slots=True)
class TwinDeleted(Event):
    """`twin.delete`: a twin was soft-deleted (now `deprecated`) or removed (`hard`)."""

    kind: ClassVar[str] = "twin.delete"

    twin: TwinRecord
    """The deprecated twin, or the last state of a removed one."""
    hard: bool = False
    """Removed from the registry rather than deprecated."""
    reason: str = ""
    """Why (`file deleted`, `deprecate`, `delete`, …)."""


@dataclass(frozen=True, slots=True)
class ServiceUpdated(Event):
    """`service.update`: a service was registered or its health changed."""

    kind: ClassVar[str] = "service.update"

    service: ServiceRecord
    """The service as it is now."""
    previous_health: str | None = None
    """Its health before; None when it is new."""


@dataclass(frozen=True, slots=True)
class StoreHealth(Event):
    """A store's health check result (the latest per store: `EngineView.store_health`)."""

    kind: ClassVar[str] = "store.health"

    name: str
    role: str
    ok: bool
    latency_ms: float | None = None
    last_success: float | None = None
    """Epoch seconds of the last successful check."""
    error: str | None = None
    spool_pending: int = 0
    """Records waiting for this store (every role it serves)."""
    spool_oldest_s: float | None = None
    """Seconds the oldest of them has waited (disk spools)."""
    spool_error: str | None = None
    """Why a spool of this store cannot be written to disk now."""
