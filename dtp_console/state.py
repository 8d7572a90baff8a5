"""Live engine state: counters and per-device facts, written by workers, sampled by readers.

Workers own these objects and update them in place on the event loop; the UI
and the headless renderer read them on their own clock. Nothing here does I/O.

Every MQTT message a bridge receives ends in exactly one outcome:
`forwarded`, `coalesced` (replaced by a newer position before it was posted),
`unknown_device`, `status_only`, `rejected:<reason>`, `failed:<reason>` or
`dropped:<reason>`. `PlantCounters.pending` is what has no outcome yet; once a
bridge has drained it is zero and `received == sum(outcomes)`.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dtp_console.bridge.clock import ClockEstimate

__all__ = [
    "HA_ROLE_LABELS",
    "POST_SECONDS_BUCKETS",
    "AuthState",
    "DeviceState",
    "EngineState",
    "GhostKind",
    "HaRole",
    "Histogram",
    "Jump",
    "PlantCounters",
    "PlantState",
    "RobotFacts",
    "SequenceCounters",
    "TokenStatus",
]

TokenStatus = Literal["none", "valid", "refreshing", "failed"]
GhostKind = Literal["quiet", "refused"]
"""`quiet`: its messages stopped while its plant reports; `refused`: its messages flow
but twinzo keeps refusing its positions."""

#: A plant's high-availability role (see `PlantState.ha_role`).
HaRole = Literal["active", "standby", "no_lock", "off"]
#: The role as badges, stats lines and log lines write it.
HA_ROLE_LABELS: dict[HaRole, str] = {
    "active": "ACTIVE",
    "standby": "STANDBY",
    "no_lock": "NO LOCK",
    "off": "HA OFF",
}

#: How many distinct unknown vendor ids a plant remembers (the rest are still counted).
MAX_UNKNOWN_IDS = 1_000

#: Upper bounds (seconds) of the twinzo POST latency histogram's buckets.
POST_SECONDS_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Histogram:
    """A fixed-bucket histogram in plain Python: `observe()` is a bisect and three adds.

    Workers observe into it on the hot path; `/metrics` reads it at scrape time
    (Prometheus semantics: a value lands in the first bucket whose bound is >= it,
    everything above the last bound in the implicit `+Inf` bucket).
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = POST_SECONDS_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            msg = "histogram bounds must be strictly increasing"
            raise ValueError(msg)
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Observations per bucket (not cumulative); the last is above every bound."""
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """`(upper bound, observations <= it)` per bucket, ending with `(inf, count)`."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(slots=True)
class PlantCounters:
    """Message accounting of one plant."""

    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def pending(self) -> int:
        """Messages with no outcome yet (queued, in the outbox or in flight)."""
        return self.received - self.outcomes.total()

    def count(self, outcome: str, n: int = 1) -> None:
        """Record `n` messages ending in `outcome`."""
        self.outcomes[outcome] += n

    def group(self, prefix: str) -> int:
        """The sum of outcomes starting with `prefix` (e.g. `rejected:`)."""
        return sum(v for k, v in self.outcomes.items() if k.startswith(prefix))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counters."""
        return {
            "received": self.received,
            "pending": self.pending,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


@dataclass(frozen=True, slots=True)
class Jump:
    """An implausible jump between two positions of one robot (twinzo mm)."""

    start: tuple[float, float]
    end: tuple[float, float]
    speed_mm_s: float
    """The speed the jump would take (distance over time between the two reports)."""
    at: float
    """Monotonic receive time of the report that jumped."""
    dropped: bool
    """Rejected as `rejected:implausible_jump` rather than forwarded."""


@dataclass(slots=True)
class DeviceState:
    """What the bridge knows about one mapped robot."""

    vendor_id: str
    login: str
    x: float | None = None
    """Last position, twinzo mm."""
    y: float | None = None
    z: float | None = None
    vendor_x: float | None = None
    """The same position as the vendor sent it (before the affine): calibration pairs these."""
    vendor_y: float | None = None
    battery: float | None = None
    moving: bool = False
    robot: RobotFacts | None = None
    """What the robot says about itself (VDA 5050 robots only; None for other formats)."""
    messages: int = 0
    last_message_at: float | None = None
    """Monotonic time of the last message."""
    last_timestamp_ms: int | None = None
    """Timestamp the last accepted position was posted with (vendor's or receive time)."""
    last_vendor_timestamp_ms: int | None = None
    """The last sane vendor timestamp accepted: the reference for duplicate and
    out-of-order checks (a stamp beyond the clock tolerance never becomes it)."""
    posts_ok: int = 0
    posts_failed: int = 0
    last_post_status: str | None = None
    """`200`, `503`, `timeout`, `rejected`, …"""
    last_post_ok: bool | None = None
    """Whether twinzo accepted the last POST: a 200 whose locations came back
    `Success: false` is a failure."""
    last_post_latency_ms: float | None = None
    last_post_at: float | None = None
    last_error: str | None = None
    clock: ClockEstimate = field(default_factory=ClockEstimate)
    """Offset of the vendor's clock from our receive time (reports with a vendor timestamp)."""
    # Robots that go quiet: twinzo's side of the two ages, ghost flags, plausibility.
    last_heard_at: float | None = None
    """Monotonic time of the last message naming this robot, rejected ones included (an
    ATI robot out of fleet mode still reports: it is not quiet)."""
    last_accepted_at: float | None = None
    """Monotonic time twinzo last accepted a position of this robot."""
    refusing_since: float | None = None
    """Monotonic time of twinzo's first refusal since it last accepted a position."""
    ghost: GhostKind | None = None
    """The ghost flag while an episode lasts (set by the plant's watch)."""
    ghost_since: float | None = None
    """Monotonic time the current ghost episode started."""
    ghost_episodes: Counter[str] = field(default_factory=Counter)
    """Ghost episodes of this robot, by kind."""
    implausible_jumps: int = 0
    """Positions that jumped faster than the plant's `max_speed_mm_s`."""
    last_jump: Jump | None = None
    """The latest implausible jump (the map draws it while it is recent)."""
    position_at: float | None = None
    """Monotonic receive time of the last accepted position (the jump reference)."""
    position_stamp_ms: int | None = None
    """Its sane vendor timestamp; None when it had none or it lied."""
    jump_candidate: tuple[float, float, float, int | None] | None = None
    """A dropped jump's (x, y, received at, stamp): a report consistent with it is a robot
    that really moved, accepted rather than frozen out."""

    @property
    def clock_offset_ms(self) -> int | None:
        """Robust estimate of `vendor timestamp − receive time` in ms; None without stamps."""
        return self.clock.offset_ms

    def message_age_s(self, now: float) -> float | None:
        """Seconds since the robot's last vendor message (monotonic `now`)."""
        return None if self.last_message_at is None else max(0.0, now - self.last_message_at)

    def heard_age_s(self, now: float) -> float | None:
        """Seconds since any message naming the robot (rejected ones included)."""
        heard = self.last_heard_at if self.last_heard_at is not None else self.last_message_at
        return None if heard is None else max(0.0, now - heard)

    def accepted_age_s(self, now: float) -> float | None:
        """Seconds since twinzo last accepted a position of the robot (monotonic `now`)."""
        return None if self.last_accepted_at is None else max(0.0, now - self.last_accepted_at)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready device facts; ages as of monotonic `now` (the current time when None)."""
        now = time.monotonic() if now is None else now
        message_age, accepted_age = self.message_age_s(now), self.accepted_age_s(now)
        return {
            "vendor_id": self.vendor_id,
            "login": self.login,
            "x": self.x,
            "y": self.y,
            "battery": self.battery,
            "moving": self.moving,
            **({} if self.robot is None else {"robot": self.robot.as_dict()}),
            "messages": self.messages,
            "posts_ok": self.posts_ok,
            "posts_failed": self.posts_failed,
            "last_post_status": self.last_post_status,
            "last_post_ok": self.last_post_ok,
            "last_post_latency_ms": self.last_post_latency_ms,
            "last_error": self.last_error,
            "clock_offset_ms": self.clock.offset_ms,
            "clock_samples": self.clock.samples,
            "message_age_s": None if message_age is None else round(message_age, 3),
            "accepted_age_s": None if accepted_age is None else round(accepted_age, 3),
            "ghost": self.ghost,
            "ghost_episodes": dict(sorted(self.ghost_episodes.items())),
            "implausible_jumps": self.implausible_jumps,
        }


@dataclass(slots=True)
class PlantState:
    """One plant's bridge as readers see it."""

    name: str
    mqtt: str = "stopped"
    """`connecting`, `connected`, `disconnected` or `stopped` (set with `set_mqtt`)."""
    mqtt_detail: str = ""
    mqtt_since: float | None = None
    """Epoch seconds the session last came up or went down: reconnect attempts
    (`disconnected` → `connecting` → …) do not move it (None: never set)."""
    mqtt_error: str | None = None
    """Why the MQTT session last went down (kept after a reconnect)."""
    connects: int = 0
    counters: PlantCounters = field(default_factory=PlantCounters)
    devices: dict[str, DeviceState] = field(default_factory=dict)
    """By vendor id."""
    unknown: Counter[str] = field(default_factory=Counter)
    """Unknown vendor ids seen, with message counts (at most `MAX_UNKNOWN_IDS` ids)."""
    out_of_bounds: int = 0
    """Positions outside the floor bounds (forwarded unless the plant drops them)."""
    timestamps_converted: Counter[str] = field(default_factory=Counter)
    """Vendor timestamps read in a unit other than milliseconds, by unit (`s`, `us`, `ns`)."""
    clock_restamped: Counter[str] = field(default_factory=Counter)
    """Reports posted with the receive time because the vendor clock lied (`ahead`, `behind`)."""
    sequence: SequenceCounters | None = None
    """VDA 5050 plants: lost, restarted and repeated messages (None for other formats)."""
    warnings: list[str] = field(default_factory=list)
    """Standing warnings about how this plant runs (TLS verification off, a plaintext
    password), repeated by every reader for as long as they hold, not once at start."""
    source_restarts: int = 0
    """Times the MQTT source task died and was restarted."""
    poster_restarts: int = 0
    """Times the posting task died and was restarted."""
    watch_restarts: int = 0
    """Times the watchdog task (silence, ghosts) died and was restarted."""
    silent: bool = False
    """No message at all for longer than the plant's `silence_reconnect_s` although robots
    were reporting before (readiness reads this); False again with the next message."""
    silence_reconnects: int = 0
    """Times the silence watchdog dropped a connection that delivered nothing and reconnected."""
    ghost_episodes: Counter[str] = field(default_factory=Counter)
    """Ghost episodes of this plant's robots, by kind (`quiet`, `refused`)."""
    implausible_jumps: int = 0
    """Implausible jumps of this plant's robots (forwarded flagged or dropped)."""
    ha_role: HaRole = "off"
    """High availability: `active` (holds the plant's lock, posts), `standby` (another
    console holds it; parsing, not posting), `no_lock` (the lock's PostgreSQL is out of
    reach or in doubt; not posting) or `off` (`ha` disabled: posts)."""
    ha_holder: str | None = None
    """Identity (`host:pid`) of the console holding the plant's lock, when known."""
    ha_detail: str = ""
    """Why the role is what it is (the last lock error, or who is active)."""
    ha_since: float | None = None
    """Epoch seconds of the last role change."""

    def set_mqtt(self, status: str, detail: str = "") -> None:
        """Move the MQTT state; remembers since when it is up or down, and why it went down."""
        if (status == "connected") != (self.mqtt == "connected") or self.mqtt_since is None:
            self.mqtt_since = time.time()
        self.mqtt, self.mqtt_detail = status, detail
        if status == "disconnected" and detail:
            self.mqtt_error = detail

    def note_unknown(self, vendor_id: str) -> bool:
        """Count an unknown id; True the first time it is seen."""
        if vendor_id in self.unknown:
            self.unknown[vendor_id] += 1
            return False
        if len(self.unknown) < MAX_UNKNOWN_IDS:
            self.unknown[vendor_id] = 1
        return True

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready plant state; device ages as of monotonic `now` (the current time)."""
        now = time.monotonic() if now is None else now
        return {
            "mqtt": self.mqtt,
            "mqtt_detail": self.mqtt_detail,
            "connects": self.connects,
            **self.counters.as_dict(),
            "out_of_bounds": self.out_of_bounds,
            "timestamps_converted": dict(sorted(self.timestamps_converted.items())),
            "clock_restamped": dict(sorted(self.clock_restamped.items())),
            **({} if self.sequence is None else {"sequence": self.sequence.as_dict()}),
            "warnings": list(self.warnings),
            "source_restarts": self.source_restarts,
            "poster_restarts": self.poster_restarts,
            "watch_restarts": self.watch_restarts,
            "silent": self.silent,
            "silence_reconnects": self.silence_reconnects,
            "ghost_episodes": dict(sorted(self.ghost_episodes.items())),
            "ghosts": sorted(d.login for d in self.devices.values() if d.ghost is not None),
            "implausible_jumps": self.implausible_jumps,
            "ha": {
                "role": self.ha_role,
                "holder": self.ha_holder,
                "detail": self.ha_detail,
                "since": self.ha_since,
            },
            "unknown_devices": dict(self.unknown.most_common(50)),
            "devices": {d.login: d.as_dict(now) for d in self.devices.values()},
        }


@dataclass(slots=True)
class AuthState:
    """Token facts of one twinzo device login (never the token itself)."""

    login: str
    status: TokenStatus = "none"
    expires_at: float | None = None
    """Epoch seconds."""
    last_result: str | None = None
    """`200`, `401`, `timeout`, …"""
    last_error: str | None = None
    authentications: int = 0
    refreshes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready token facts."""
        return {
            "status": self.status,
            "expires_at": self.expires_at,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "authentications": self.authentications,
            "refreshes": self.refreshes,
        }


@dataclass(slots=True)
class EngineState:
    """Everything the engine exposes to readers."""

    plants: dict[str, PlantState] = field(default_factory=dict)
    auth: dict[str, AuthState] = field(default_factory=dict)
    twinzo_url: str = ""
    started_at: float = 0.0
    platform_topics: Counter[str] = field(default_factory=Counter)
    """Messages seen per topic on the platform broker (`dtp/#`)."""
    store_stats: Callable[[], dict[str, Any]] | None = None
    """Reads the stores' spool counters and health (set by the engine while stores run)."""
    platform: PlantState | None = None
    """The platform worker's connection and totals (set by the engine while it runs)."""
    platform_stats: Callable[[], dict[str, Any]] | None = None
    """Reads the platform worker's counters (set by the engine while it runs)."""

    post_seconds: dict[str, Histogram] = field(default_factory=dict)
    """Duration of every twinzo POST attempt (a failed one too), by API path."""

    def post_histogram(self, path: str) -> Histogram:
        """The POST latency histogram of `path` (`/v3/localization`, …), created on first use."""
        histogram = self.post_seconds.get(path)
        if histogram is None:
            histogram = self.post_seconds[path] = Histogram()
        return histogram

    def auth_for(self, login: str) -> AuthState:
        """The token facts of `login`, created on first use."""
        state = self.auth.get(login)
        if state is None:
            state = self.auth[login] = AuthState(login)
        return state

    def as_dict(self) -> dict[str, Any]:
        """The final stats JSON (`--stats-json`)."""
        return {
            "twinzo_url": self.twinzo_url,
            "plants": {name: plant.as_dict() for name, plant in self.plants.items()},
            "auth": {login: a.as_dict() for login, a in sorted(self.auth.items())},
            "platform_topics": dict(sorted(self.platform_topics.items())),
            "stores": self.store_stats() if self.store_stats is not None else None,
            "platform": self.platform_stats() if self.platform_stats is not None else None,
        }


@dataclass(slots=True)
class RobotFacts:
    """A VDA 5050 robot's own account: presence, status and its message sequence."""

    connection: str | None = None
    """`ONLINE`, `OFFLINE` or `CONNECTIONBROKEN`; None until a `connection` message."""
    driving: bool | None = None
    operating_mode: str | None = None
    e_stop: str | None = None
    errors: tuple[tuple[str, str], ...] = ()
    """`(errorLevel, text)` of the robot's current errors (from its last `state`)."""
    map_id: str | None = None
    localization_score: float | None = None
    header_ids: dict[str, int] = field(default_factory=dict)
    """The last `headerId` seen per VDA 5050 topic."""
    lost: int = 0
    """Messages missing from the `headerId` sequence (gaps)."""
    restarts: int = 0
    """Sequence resets (back to 0 or backwards): the robot restarted."""
    duplicates: int = 0
    """Messages whose `headerId` repeated the last one."""

    @property
    def offline(self) -> bool:
        """Whether the robot said it is gone (`OFFLINE`, or its last will `CONNECTIONBROKEN`)."""
        return self.connection in ("OFFLINE", "CONNECTIONBROKEN")

    @property
    def worst_error(self) -> str | None:
        """`FATAL`, `WARNING` or another level of the worst current error; None without."""
        levels = {level for level, _ in self.errors}
        for level in ("FATAL", "WARNING"):
            if level in levels:
                return level
        return next(iter(sorted(levels)), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready robot facts."""
        return {
            "connection": self.connection,
            "driving": self.driving,
            "operating_mode": self.operating_mode,
            "e_stop": self.e_stop,
            "errors": [list(error) for error in self.errors],
            "map_id": self.map_id,
            "localization_score": self.localization_score,
            "lost": self.lost,
            "restarts": self.restarts,
            "duplicates": self.duplicates,
        }


@dataclass(slots=True)
class SequenceCounters:
    """A plant's VDA 5050 message accounting beyond outcomes: what never arrived.

    Lost messages have no outcome (they were never received), so these sit beside
    `PlantCounters` and `received == sum(outcomes)` still holds.
    """

    lost: int = 0
    """Messages missing from robots' `headerId` sequences."""
    restarts: int = 0
    """Sequence resets (robot restarts), not counted as loss."""
    duplicates: int = 0
    """Messages that repeated their robot's last `headerId`."""
    unknown_maps: Counter[str] = field(default_factory=Counter)
    """Positions per map id that `vda5050.map_sectors` does not list (at most
    `MAX_UNKNOWN_IDS` ids)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready sequence counters."""
        return {
            "lost": self.lost,
            "restarts": self.restarts,
            "duplicates": self.duplicates,
            "unknown_maps": dict(self.unknown_maps.most_common(50)),
        }
