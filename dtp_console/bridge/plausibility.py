"""Plausibility of a robot's positions: a jump faster than the plant allows is flagged.

A robot cannot cross the floor between two reports; a localization glitch, a
swapped id or a wrong map can make it look as if it did. The speed between the
last accepted position and a new one is taken from the vendor's timestamps when
both are sane (the robot's own clock measures its reports best), else from our
receive times with an allowance for delivery jitter (a broker delivers a
backlog in a burst). Pure: the worker decides what a jump costs.
"""

from __future__ import annotations

import math

from dtp_console.config.model import PlantConfig
from dtp_console.state import DeviceState, Jump, PlantState

__all__ = [
    "JUMP_SHOWN_S",
    "NOISE_MM",
    "RECEIVE_JITTER_S",
    "check_jump",
    "implausible_speed",
    "recent_jump",
]

#: Localization noise a position may show on top of the robot's real motion.
NOISE_MM = 100.0
#: Added to the time between two receive times: messages queue, then arrive together.
RECEIVE_JITTER_S = 1.0
#: How long the AMR table and the floor map show a robot's last implausible jump.
JUMP_SHOWN_S = 60.0

#: (x mm, y mm, monotonic receive time, sane vendor stamp in ms or None)
Fix = tuple[float, float, float, int | None]


def implausible_speed(max_speed_mm_s: float, start: Fix, end: Fix, gap_s: float) -> float | None:
    """The speed (mm/s) that going from `start` to `end` would take, when it is above
    `max_speed_mm_s` (plus `NOISE_MM`); None when plausible, or when more than `gap_s`
    passed between the two (a robot unseen that long may be anywhere)."""
    x0, y0, t0, s0 = start
    x1, y1, t1, s1 = end
    received_dt = t1 - t0
    if received_dt > gap_s:
        return None
    if s0 is not None and s1 is not None and s1 > s0:
        dt = (s1 - s0) / 1000.0
    else:
        dt = max(0.0, received_dt) + RECEIVE_JITTER_S
    distance = math.hypot(x1 - x0, y1 - y0)
    if distance <= max_speed_mm_s * dt + NOISE_MM:
        return None
    return distance / dt


def recent_jump(device: DeviceState, now: float) -> Jump | None:
    """The robot's last implausible jump while it is shown (`JUMP_SHOWN_S`), else None."""
    jump = device.last_jump
    return jump if jump is not None and now - jump.at < JUMP_SHOWN_S else None


def check_jump(
    plant: PlantConfig,
    state: PlantState,
    device: DeviceState,
    position: tuple[float, float],
    now: float,
    stamp: int | None,
) -> Jump | None:
    """The implausible jump to `position` (counted on the device and the plant), or None.

    With `drop_implausible` a jump is remembered as a candidate: the next report
    that is plausible from the candidate (though not from the last accepted
    position) is a robot that really moved, and is accepted, so a relocated
    robot is never frozen out.
    """
    limit = plant.max_speed_mm_s
    if limit <= 0 or device.x is None or device.y is None or device.position_at is None:
        return None
    here: Fix = (position[0], position[1], now, stamp)
    reference: Fix = (device.x, device.y, device.position_at, device.position_stamp_ms)
    speed = implausible_speed(limit, reference, here, plant.stale_after_s)
    if speed is None:
        device.jump_candidate = None
        return None
    candidate = device.jump_candidate
    if (
        candidate is not None
        and implausible_speed(limit, candidate, here, plant.stale_after_s) is None
    ):
        device.jump_candidate = None
        return None
    if plant.drop_implausible:
        device.jump_candidate = here
    jump = Jump((device.x, device.y), position, speed, now, plant.drop_implausible)
    device.implausible_jumps += 1
    device.last_jump = jump
    state.implausible_jumps += 1
    return jump
