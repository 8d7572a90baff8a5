"""The types each state field may have on the wire, checked before the replica takes it.

`dtp_console.attach.wire`'s decoders copy values as they come; the UI formats
them (`f"{x:.0f}"`). A service that sends a string where a position goes would
crash the attached console at its next redraw, so the replica checks every
field it decodes against the protocol's types first (`check_device`,
`check_plant_summary`, `check_auth`) and refuses the frame (`FrameError`)
otherwise. Unknown keys are ignored, as the decoders ignore them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ShapeError", "check_auth", "check_device", "check_plant_summary"]


class ShapeError(ValueError):
    """A field of a state frame with a type the protocol does not give it."""


_NUM = "number"
_NUM_OR_NONE = "number|null"
_INT = "int"
_STR = "str"
_STR_OR_NONE = "str|null"
_BOOL = "bool"
_BOOL_OR_NONE = "bool|null"
_COUNTS = "counts"
"""An object of str → int (a `Counter`)."""
_OBJ_OR_NONE = "object|null"
_LIST_OF_STR = "list[str]"

_DEVICE: dict[str, str] = {
    "vendor_id": _STR,
    "login": _STR,
    "x": _NUM_OR_NONE,
    "y": _NUM_OR_NONE,
    "z": _NUM_OR_NONE,
    "vendor_x": _NUM_OR_NONE,
    "vendor_y": _NUM_OR_NONE,
    "battery": _NUM_OR_NONE,
    "moving": _BOOL,
    "robot": _OBJ_OR_NONE,
    "messages": _INT,
    "last_message_at": _NUM_OR_NONE,
    "posts_ok": _INT,
    "posts_failed": _INT,
    "last_post_status": _STR_OR_NONE,
    "last_post_ok": _BOOL_OR_NONE,
    "last_post_latency_ms": _NUM_OR_NONE,
    "last_post_at": _NUM_OR_NONE,
    "last_error": _STR_OR_NONE,
    "clock": _OBJ_OR_NONE,
    "last_heard_at": _NUM_OR_NONE,
    "last_accepted_at": _NUM_OR_NONE,
    "refusing_since": _NUM_OR_NONE,
    "ghost": _STR_OR_NONE,
    "ghost_since": _NUM_OR_NONE,
    "ghost_episodes": _COUNTS,
    "implausible_jumps": _INT,
    "last_jump": _OBJ_OR_NONE,
    "position_at": _NUM_OR_NONE,
}
_ROBOT: dict[str, str] = {
    "connection": _STR_OR_NONE,
    "driving": _BOOL_OR_NONE,
    "operating_mode": _STR_OR_NONE,
    "e_stop": _STR_OR_NONE,
    "map_id": _STR_OR_NONE,
    "localization_score": _NUM_OR_NONE,
    "lost": _INT,
    "restarts": _INT,
    "duplicates": _INT,
}
_CLOCK: dict[str, str] = {"offset_ms": _NUM_OR_NONE, "samples": _INT}
_PLANT: dict[str, str] = {
    "name": _STR,
    "mqtt": _STR,
    "mqtt_detail": _STR,
    "mqtt_since": _NUM_OR_NONE,
    "mqtt_error": _STR_OR_NONE,
    "connects": _INT,
    "counters": _OBJ_OR_NONE,
    "unknown": _COUNTS,
    "out_of_bounds": _INT,
    "timestamps_converted": _COUNTS,
    "clock_restamped": _COUNTS,
    "sequence": _OBJ_OR_NONE,
    "warnings": _LIST_OF_STR,
    "source_restarts": _INT,
    "poster_restarts": _INT,
    "watch_restarts": _INT,
    "silent": _BOOL,
    "silence_reconnects": _INT,
    "ghost_episodes": _COUNTS,
    "implausible_jumps": _INT,
    "ha_role": _STR,
    "ha_holder": _STR_OR_NONE,
    "ha_detail": _STR,
    "ha_since": _NUM_OR_NONE,
}
_COUNTERS: dict[str, str] = {"received": _INT, "outcomes": _COUNTS}
_SEQUENCE: dict[str, str] = {
    "lost": _INT,
    "restarts": _INT,
    "duplicates": _INT,
    "unknown_maps": _COUNTS,
}
_AUTH: dict[str, str] = {
    "login": _STR,
    "status": _STR,
    "expires_at": _NUM_OR_NONE,
    "last_result": _STR_OR_NONE,
    "last_error": _STR_OR_NONE,
    "authentications": _INT,
    "refreshes": _INT,
}
_HA_ROLES = frozenset({"active", "standby", "no_lock", "off"})
_TOKEN_STATUSES = frozenset({"none", "valid", "refreshing", "failed"})
_GHOSTS = frozenset({"quiet", "refused"})


def _is(value: Any, kind: str) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == _INT:
        return is_int
    if kind in {_NUM, _NUM_OR_NONE}:
        return is_int or isinstance(value, float) or (value is None and kind == _NUM_OR_NONE)
    if kind in {_STR, _STR_OR_NONE}:
        return isinstance(value, str) or (value is None and kind == _STR_OR_NONE)
    if kind in {_BOOL, _BOOL_OR_NONE}:
        return isinstance(value, bool) or (value is None and kind == _BOOL_OR_NONE)
    if kind == _OBJ_OR_NONE:
        return value is None or isinstance(value, dict)
    if kind == _COUNTS:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool)
            for k, n in value.items()
        )
    if kind == _LIST_OF_STR:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return False  # pragma: no cover - every kind is handled above


def _check(wire: Mapping[str, Any], fields: Mapping[str, str], what: str) -> None:
    for name, kind in fields.items():
        if name in wire and not _is(wire[name], kind):
            shown = type(wire[name]).__name__
            msg = f"{what}.{name} must be {kind}, not {shown}"
            raise ShapeError(msg)


def _one_of(value: Any, allowed: frozenset[str], what: str) -> None:
    if value is not None and value not in allowed:
        msg = f"{what} must be one of {', '.join(sorted(allowed))}"
        raise ShapeError(msg)


def check_device(wire: Mapping[str, Any]) -> None:
    """`ShapeError` unless every device field present has its protocol type."""
    _check(wire, _DEVICE, "device")
    if "ghost" in wire:
        _one_of(wire["ghost"], _GHOSTS, "device.ghost")
    robot = wire.get("robot")
    if isinstance(robot, dict):
        _check(robot, _ROBOT, "device.robot")
        errors = robot.get("errors", [])
        if not isinstance(errors, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(p, str) for p in e)
            for e in errors
        ):
            msg = "device.robot.errors must be a list of [level, text]"
            raise ShapeError(msg)
    clock = wire.get("clock")
    if isinstance(clock, dict):
        _check(clock, _CLOCK, "device.clock")
    jump = wire.get("last_jump")
    if isinstance(jump, dict):
        points = [jump.get("start"), jump.get("end")]
        if not all(
            isinstance(p, list) and len(p) == 2 and all(_is(c, _NUM) for c in p) for p in points
        ):
            msg = "device.last_jump start/end must be [x, y]"
            raise ShapeError(msg)
        _check(jump, {"speed_mm_s": _NUM, "at": _NUM, "dropped": _BOOL}, "device.last_jump")


def check_plant_summary(wire: Mapping[str, Any]) -> None:
    """`ShapeError` unless every plant summary field present has its protocol type."""
    _check(wire, _PLANT, "plant")
    if "ha_role" in wire:
        _one_of(wire["ha_role"], _HA_ROLES, "plant.ha_role")
    counters = wire.get("counters")
    if isinstance(counters, dict):
        _check(counters, _COUNTERS, "plant.counters")
    sequence = wire.get("sequence")
    if isinstance(sequence, dict):
        _check(sequence, _SEQUENCE, "plant.sequence")


def check_auth(wire: Mapping[str, Any]) -> None:
    """`ShapeError` unless every token fact present has its protocol type."""
    _check(wire, _AUTH, "auth")
    if "status" in wire:
        _one_of(wire["status"], _TOKEN_STATUSES, "auth.status")
