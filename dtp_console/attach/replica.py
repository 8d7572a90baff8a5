"""The attached console's copy of the service's state, and its events, from stream frames.

`apply_frame` writes a `snapshot` (into a fresh `EngineState`) or a `delta` (into
the current one) with the `decode_*_into` functions of `dtp_console.attach.wire`;
the service's monotonic times become this host's by `offset = local − frame["mono"]`.
The replica is bounded whatever the service sends (`MAX_PLANTS`, `MAX_DEVICES`,
`MAX_LOGINS`), and every field is checked against its protocol type
(`dtp_console.attach.shapes`) before it is decoded: a string where a position goes
would crash the UI at its next redraw. A frame that breaks the shape raises
`FrameError` and the client reconnects for a fresh snapshot rather than show a
picture it cannot trust.
`event_of` turns a `log`, `store` or `twin` frame into the bus event the UI knows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from pydantic import ValidationError

from dtp_console.attach.shapes import check_auth, check_device, check_plant_summary
from dtp_console.attach.wire import (
    decode_auth_into,
    decode_device_into,
    decode_plant_summary_into,
    new_device,
)
from dtp_console.events import (
    Event,
    Level,
    LogLine,
    ServiceUpdated,
    StoreHealth,
    TwinDeleted,
    TwinUpdated,
)
from dtp_console.registry.model import ServiceRecord, TwinRecord
from dtp_console.state import AuthState, EngineState, PlantState
from dtp_console.textsafe import safe_text

__all__ = ["MAX_DEVICES", "MAX_LOGINS", "MAX_PLANTS", "FrameError", "apply_frame", "event_of"]

#: Plants a replica keeps (a service runs a handful).
MAX_PLANTS = 500
#: Robots a replica keeps per plant.
MAX_DEVICES = 20_000
#: twinzo logins a replica keeps.
MAX_LOGINS = 50_000
_LEVELS: frozenset[str] = frozenset({"OK", "FAIL", "WARN", "INFO"})
#: Characters kept of a service's error text in a store event.
_TEXT_CHARS = 1_000


class FrameError(ValueError):
    """A frame the replica cannot take (wrong shape, past a bound)."""


def apply_frame(state: EngineState, frame: Any, *, now: float | None = None) -> None:
    """Apply a `snapshot` or `delta` frame to `state` in place (`FrameError` when it is bad).

    A snapshot goes into a fresh `EngineState`: the caller swaps it in once it applied.
    """
    if not isinstance(frame, dict):
        msg = f"a state frame must be an object, not {type(frame).__name__}"
        raise FrameError(msg)
    try:
        offset = (time.monotonic() if now is None else now) - float(frame["mono"])
        _apply(state, frame, offset)
    except FrameError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        msg = f"a state frame this console cannot read ({type(exc).__name__}: {exc})"
        raise FrameError(msg[:300]) from None


def _apply(state: EngineState, frame: Mapping[str, Any], offset: float) -> None:
    plants = frame.get("plants")
    if plants is not None:
        for name, entry in _object(plants, "plants").items():
            if entry is None:
                state.plants.pop(name, None)
                continue
            plant = state.plants.get(name)
            if plant is None:
                _room(state.plants, MAX_PLANTS, "plants")
                plant = state.plants[name] = PlantState(str(name))
            _apply_plant(plant, _object(entry, "plant entry"), offset)
    auth = frame.get("auth")
    if auth is not None:
        for login, facts in _object(auth, "auth").items():
            if facts is None:
                state.auth.pop(login, None)
                continue
            known = state.auth.get(login)
            if known is None:
                _room(state.auth, MAX_LOGINS, "logins")
                known = state.auth[login] = AuthState(str(login))
            facts = _object(facts, "auth entry")
            check_auth(facts)
            decode_auth_into(known, facts)
    if "twinzo_url" in frame:
        state.twinzo_url = str(frame["twinzo_url"] or "")
    if "platform" in frame:
        summary = frame["platform"]
        if summary is None:
            state.platform = None
        else:
            platform = state.platform or PlantState("platform")
            summary = _object(summary, "platform")
            check_plant_summary(summary)
            decode_plant_summary_into(platform, summary)
            state.platform = platform
    if "stores" in frame:
        stats = frame["stores"]
        if stats is None:
            state.store_stats = None
        else:
            held = dict(_object(stats, "stores"))
            state.store_stats = lambda: held


def _apply_plant(plant: PlantState, entry: Mapping[str, Any], offset: float) -> None:
    summary = entry.get("plant")
    if summary is not None:
        summary = _object(summary, "plant summary")
        check_plant_summary(summary)
        decode_plant_summary_into(plant, summary)
    devices = entry.get("devices")
    if devices is None:
        return
    for vendor_id, wire in _object(devices, "devices").items():
        if wire is None:
            plant.devices.pop(vendor_id, None)
            continue
        wire = _object(wire, "device")
        check_device(wire)
        device = plant.devices.get(vendor_id)
        if device is None:
            _room(plant.devices, MAX_DEVICES, f"robots of {plant.name}")
            plant.devices[vendor_id] = new_device({**wire, "vendor_id": vendor_id}, offset)
        else:
            decode_device_into(device, wire, offset)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"{what} must be an object, not {type(value).__name__}"
        raise FrameError(msg)
    return cast("dict[str, Any]", value)


def _room(held: Mapping[str, Any], limit: int, what: str) -> None:
    if len(held) >= limit:
        msg = f"more than {limit} {what}: refused (a replica is bounded)"
        raise FrameError(msg)


def event_of(kind: str, body: Any) -> Event | None:
    """The bus event a `log`, `store` or `twin` frame carries (None for other kinds);
    `FrameError` when its body does not read as one."""
    if not isinstance(body, dict):
        msg = f"a {kind} frame must be an object"
        raise FrameError(msg)
    try:
        if kind == "log":
            return _log_line(body)
        if kind == "store":
            return _store_health(body)
        if kind == "twin":
            return _twin_event(body)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        msg = f"a {kind} frame this console cannot read ({type(exc).__name__})"
        raise FrameError(msg) from None
    return None


def _ts(body: Mapping[str, Any]) -> float:
    ts = body.get("ts")
    return float(ts) if ts is not None else time.time()


def _log_line(body: Mapping[str, Any]) -> LogLine:
    level = str(body.get("level", "INFO"))
    plant = body.get("plant")
    return LogLine(
        level=cast("Level", level) if level in _LEVELS else "INFO",
        text=str(body.get("text", "")),
        plant=None if plant is None else str(plant),
        ts=_ts(body),
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _store_health(body: Mapping[str, Any]) -> StoreHealth:
    # The local console names its stores itself, so the badges draw names as they are:
    # a service's names and errors are made plain text here.
    error, spool_error = body.get("error"), body.get("spool_error")
    return StoreHealth(
        name=safe_text(str(body["name"]), 80),
        role=safe_text(str(body.get("role", "")), 80),
        ok=bool(body["ok"]),
        latency_ms=_optional_float(body.get("latency_ms")),
        last_success=_optional_float(body.get("last_success")),
        error=None if error is None else safe_text(str(error), _TEXT_CHARS),
        spool_pending=int(body.get("spool_pending") or 0),
        spool_oldest_s=_optional_float(body.get("spool_oldest_s")),
        spool_error=None if spool_error is None else safe_text(str(spool_error), _TEXT_CHARS),
        ts=_ts(body),
    )


def _twin_event(body: Mapping[str, Any]) -> Event | None:
    kind = body.get("kind")
    if kind == TwinUpdated.kind:
        return TwinUpdated(
            twin=TwinRecord.model_validate(body["twin"]),
            previous_status=_optional_text(body.get("previous_status")),
            created=bool(body.get("created", False)),
            reason=str(body.get("reason", "")),
            ts=_ts(body),
        )
    if kind == TwinDeleted.kind:
        return TwinDeleted(
            twin=TwinRecord.model_validate(body["twin"]),
            hard=bool(body.get("hard", False)),
            reason=str(body.get("reason", "")),
            ts=_ts(body),
        )
    if kind == ServiceUpdated.kind:
        return ServiceUpdated(
            service=ServiceRecord.model_validate(body["service"]),
            previous_health=_optional_text(body.get("previous_health")),
            ts=_ts(body),
        )
    return None
