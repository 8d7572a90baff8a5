"""Attach wire protocol v1: the console's config and live state as JSON-ready dicts.

Both ends of `dtp-console attach` use these pure functions (no I/O): the service
encodes its `EngineState` once per tick and sends each client what changed since
its last frame (`Differ`); the client decodes into its own state objects in place,
so its widgets read a `DeviceState` as they do in-process.

Monotonic times (`*_at`, `*_since` of a device, `Jump.at`) travel as the service's
monotonic seconds, rounded to 1 ms; the decoder adds `offset = local monotonic −
frame["mono"]` so ages read the same on both ends. Epoch times travel as they are.

Secrets never travel: every `SecretStr` of the config becomes `PLACEHOLDER` (a DSN
keeps its host and user, the password replaced, so it still parses), URL user info
is masked and the API's token hashes are left out.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from dtp_console.api.config import ApiTls
from dtp_console.bridge.clock import ClockEstimate
from dtp_console.config.model import ConsoleConfig
from dtp_console.state import (
    AuthState,
    DeviceState,
    Jump,
    PlantState,
    RobotFacts,
    SequenceCounters,
)
from dtp_console.urls import mask_url

__all__ = [
    "MAX_UNKNOWN_ON_WIRE",
    "PLACEHOLDER",
    "PROTOCOL",
    "Differ",
    "config_from_wire",
    "config_to_wire",
    "decode_auth_into",
    "decode_device_into",
    "decode_plant_summary_into",
    "encode_auth",
    "encode_device",
    "encode_plant_summary",
    "map_etag",
    "new_device",
]

PROTOCOL = 1
"""The wire protocol version (session and config carry it)."""
PLACEHOLDER = "**********"
"""What every secret of the config reads on the wire."""
MAX_UNKNOWN_ON_WIRE = 50
"""Unknown vendor ids (most seen first) sent per plant and per map-id counter."""

# Fields whose value is a path on the service's host that the model checks exists (CA
# files, the API's certificate): set aside before validating on the client, put back after.
_HOST_LOCAL_KEYS = ("ca_file", "postgres_ca_file")
_URL_SUFFIXES = ("url", "uri", "endpoint")
#: DSN query parameters redacted (libpq's secrets).
_DSN_SECRETS = frozenset({"password", "sslpassword"})


# --- config --------------------------------------------------------------------------


def config_to_wire(config: ConsoleConfig) -> dict[str, Any]:
    """The config as JSON-ready data with every secret redacted (see the module docstring).

    Round-trips: `config_to_wire(config_from_wire(w)) == w`.
    """
    data: dict[str, Any] = config.model_dump(mode="json", exclude_unset=True)
    _redact(config, data)
    api = data.get("api")
    if isinstance(api, dict) and "tokens" in api:
        # Token hashes and labels are the service's business; a viewer needs none of it.
        api["tokens"] = []
    data["protocol"] = PROTOCOL
    return data


def _redact(model: BaseModel, data: dict[str, Any]) -> None:
    """Replace secrets in `data` (a dump of `model`) in place, walking the model tree."""
    for name in type(model).model_fields:
        if name not in data:
            continue
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            data[name] = _redact_secret(name, value)
        elif isinstance(value, BaseModel) and isinstance(data[name], dict):
            _redact(value, data[name])
        elif isinstance(value, list | tuple) and isinstance(data[name], list):
            for item, dumped in zip(value, data[name], strict=False):
                if isinstance(item, BaseModel) and isinstance(dumped, dict):
                    _redact(item, dumped)
        elif isinstance(value, dict) and isinstance(data[name], dict):
            for key, item in value.items():
                dumped = data[name].get(str(key))
                if isinstance(item, BaseModel) and isinstance(dumped, dict):
                    _redact(item, dumped)
        elif isinstance(value, str) and name.endswith(_URL_SUFFIXES):
            data[name] = mask_url(value)


def _redact_secret(name: str, secret: SecretStr) -> str:
    raw = secret.get_secret_value()
    if not raw:
        return ""
    if name.endswith("dsn"):
        return _redact_dsn(raw)
    return PLACEHOLDER


def _redact_dsn(dsn: str) -> str:
    """A DSN with its password (in the user info or the query) replaced by `PLACEHOLDER`.

    It still parses (the client validates the config with the model), and shows the
    host, database and user the service uses. Anything unparsable is `PLACEHOLDER`.
    """
    try:
        parsed = urllib.parse.urlparse(dsn)
        auth, at, hostspec = parsed.netloc.rpartition("@")
        if at:
            user, colon, password = auth.partition(":")
            auth = f"{user}:{PLACEHOLDER}" if colon and password else user
            netloc = f"{auth}@{hostspec}"
        else:
            netloc = parsed.netloc
        query = parsed.query
        if query:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
            # `sslpassword` unlocks the client's TLS key: as secret as the password.
            pairs = [(k, PLACEHOLDER if k in _DSN_SECRETS else v) for k, v in pairs]
            query = urllib.parse.urlencode(pairs, safe="*")
        redacted = urllib.parse.urlunparse(parsed._replace(netloc=netloc, query=query))
        if not netloc and dsn.startswith(f"{parsed.scheme}://"):
            # urlunparse drops an empty host (`postgresql:///db?host=/run/pg`): keep the
            # service's spelling.
            redacted = f"{parsed.scheme}://" + redacted.removeprefix(f"{parsed.scheme}:")
        return redacted
    except ValueError:
        return PLACEHOLDER


def config_from_wire(data: Mapping[str, Any]) -> ConsoleConfig:
    """The config a service sent, validated with the model.

    Raises `ValueError` for another protocol version and `pydantic.ValidationError`
    (a `ValueError`) for a config the model refuses. Paths the model checks on disk
    (CA files, the API certificate) name files on the service's host: they are kept
    as sent, unchecked.
    """
    protocol = data.get("protocol")
    if protocol != PROTOCOL:
        msg = f"attach protocol {protocol!r} is not supported (this console speaks {PROTOCOL})"
        raise ValueError(msg)
    body = json.loads(json.dumps({k: v for k, v in data.items() if k != "protocol"}))
    aside: list[tuple[tuple[str | int, ...], Any]] = []
    _set_aside(body, (), aside)
    api = body.get("api")
    if isinstance(api, dict) and isinstance(api.get("tls"), dict):
        aside.append((("api", "tls"), api.pop("tls")))
    config = ConsoleConfig.model_validate(body)
    for path, value in aside:
        _put_back(config, path, value)
    return config


def _set_aside(node: Any, path: tuple[str | int, ...], aside: list[Any]) -> None:
    if isinstance(node, dict):
        for key in list(node):
            if key in _HOST_LOCAL_KEYS and isinstance(node[key], str):
                aside.append(((*path, key), node.pop(key)))
            else:
                _set_aside(node[key], (*path, key), aside)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _set_aside(item, (*path, index), aside)


def _put_back(config: ConsoleConfig, path: tuple[str | int, ...], value: Any) -> None:
    target: Any = config
    for step in path[:-1]:
        target = target[step] if isinstance(step, int) else getattr(target, step)
    name = str(path[-1])
    if name == "tls" and isinstance(value, dict):
        value = ApiTls.model_construct(
            cert_file=Path(str(value.get("cert_file", ""))),
            key_file=Path(str(value.get("key_file", ""))),
        )
    else:
        value = Path(str(value))
    # No validate_assignment on the models: this sets the value as sent, unchecked.
    setattr(target, name, value)


def map_etag(mapping: Mapping[str, str]) -> str:
    """The entity tag of a device map: a quoted sha256 prefix of its canonical JSON."""
    canonical = json.dumps(dict(mapping), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16] + '"'


# --- state ---------------------------------------------------------------------------


def _mono(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _unmono(value: Any, offset: float) -> float | None:
    return None if value is None else float(value) + offset


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _counter(counter: Counter[str], limit: int | None = None) -> dict[str, int]:
    items = counter.most_common(limit) if limit is not None else sorted(counter.items())
    return dict(items)


def encode_device(d: DeviceState) -> dict[str, Any]:
    """One robot's UI-visible facts (bridge-internal plausibility state is not sent)."""
    robot = d.robot
    jump = d.last_jump
    return {
        "vendor_id": d.vendor_id,
        "login": d.login,
        "x": _r(d.x, 1),
        "y": _r(d.y, 1),
        "z": _r(d.z, 1),
        # Vendor units may be metres: 0.1 mm there is 4 decimals.
        "vendor_x": _r(d.vendor_x, 4),
        "vendor_y": _r(d.vendor_y, 4),
        "battery": _r(d.battery, 1),
        "moving": d.moving,
        "robot": None if robot is None else _encode_robot(robot),
        "messages": d.messages,
        "last_message_at": _mono(d.last_message_at),
        "posts_ok": d.posts_ok,
        "posts_failed": d.posts_failed,
        "last_post_status": d.last_post_status,
        "last_post_ok": d.last_post_ok,
        "last_post_latency_ms": _r(d.last_post_latency_ms, 1),
        "last_post_at": _mono(d.last_post_at),
        "last_error": d.last_error,
        "clock": {"offset_ms": d.clock.offset_ms, "samples": d.clock.samples},
        "last_heard_at": _mono(d.last_heard_at),
        "last_accepted_at": _mono(d.last_accepted_at),
        "refusing_since": _mono(d.refusing_since),
        "ghost": d.ghost,
        "ghost_since": _mono(d.ghost_since),
        "ghost_episodes": _counter(d.ghost_episodes),
        "implausible_jumps": d.implausible_jumps,
        "last_jump": None if jump is None else _encode_jump(jump),
        "position_at": _mono(d.position_at),
    }


def _encode_robot(r: RobotFacts) -> dict[str, Any]:
    # header_ids move with every message and no reader shows them: not sent.
    return {
        "connection": r.connection,
        "driving": r.driving,
        "operating_mode": r.operating_mode,
        "e_stop": r.e_stop,
        "errors": [list(error) for error in r.errors],
        "map_id": r.map_id,
        "localization_score": _r(r.localization_score, 3),
        "lost": r.lost,
        "restarts": r.restarts,
        "duplicates": r.duplicates,
    }


def _encode_jump(j: Jump) -> dict[str, Any]:
    return {
        "start": [round(j.start[0], 1), round(j.start[1], 1)],
        "end": [round(j.end[0], 1), round(j.end[1], 1)],
        "speed_mm_s": round(j.speed_mm_s, 1),
        "at": round(j.at, 3),
        "dropped": j.dropped,
    }


def new_device(wire: Mapping[str, Any], offset: float) -> DeviceState:
    """A `DeviceState` built from a full device dict."""
    device = DeviceState(str(wire["vendor_id"]), str(wire["login"]))
    decode_device_into(device, wire, offset)
    return device


_DEVICE_PLAIN = (
    "login", "x", "y", "z", "vendor_x", "vendor_y", "battery", "moving", "messages",
    "posts_ok", "posts_failed", "last_post_status", "last_post_ok", "last_post_latency_ms",
    "last_error", "ghost", "implausible_jumps",
)  # fmt: skip
_DEVICE_MONO = (
    "last_message_at", "last_post_at", "last_heard_at", "last_accepted_at",
    "refusing_since", "ghost_since", "position_at",
)  # fmt: skip


def decode_device_into(target: DeviceState, wire: Mapping[str, Any], offset: float) -> None:
    """Apply a device dict (whole, or a delta's changed keys) to `target` in place."""
    for name in _DEVICE_PLAIN:
        if name in wire:
            setattr(target, name, wire[name])
    for name in _DEVICE_MONO:
        if name in wire:
            setattr(target, name, _unmono(wire[name], offset))
    if "robot" in wire:
        target.robot = None if wire["robot"] is None else _decode_robot(wire["robot"])
    if "clock" in wire:
        target.clock = _decode_clock(wire["clock"])
    if "ghost_episodes" in wire:
        target.ghost_episodes = Counter(wire["ghost_episodes"])
    if "last_jump" in wire:
        j = wire["last_jump"]
        target.last_jump = (
            None
            if j is None
            else Jump(
                start=(float(j["start"][0]), float(j["start"][1])),
                end=(float(j["end"][0]), float(j["end"][1])),
                speed_mm_s=float(j["speed_mm_s"]),
                at=float(j["at"]) + offset,
                dropped=bool(j["dropped"]),
            )
        )


def _decode_robot(wire: Mapping[str, Any]) -> RobotFacts:
    return RobotFacts(
        connection=wire.get("connection"),
        driving=wire.get("driving"),
        operating_mode=wire.get("operating_mode"),
        e_stop=wire.get("e_stop"),
        errors=tuple((str(level), str(text)) for level, text in wire.get("errors", ())),
        map_id=wire.get("map_id"),
        localization_score=wire.get("localization_score"),
        lost=int(wire.get("lost", 0)),
        restarts=int(wire.get("restarts", 0)),
        duplicates=int(wire.get("duplicates", 0)),
    )


def _decode_clock(wire: Mapping[str, Any]) -> ClockEstimate:
    """An estimate whose `offset_ms` and `samples` read as the service's did."""
    clock = ClockEstimate()
    offset = wire.get("offset_ms")
    if offset is not None:
        clock.add(int(offset))
    clock.samples = int(wire.get("samples", 0))
    return clock


def encode_plant_summary(p: PlantState) -> dict[str, Any]:
    """Every `PlantState` field but `devices` (the most seen `MAX_UNKNOWN_ON_WIRE`
    unknown ids and unknown map ids only)."""
    sequence = p.sequence
    return {
        "name": p.name,
        "mqtt": p.mqtt,
        "mqtt_detail": p.mqtt_detail,
        "mqtt_since": p.mqtt_since,
        "mqtt_error": p.mqtt_error,
        "connects": p.connects,
        "counters": {"received": p.counters.received, "outcomes": _counter(p.counters.outcomes)},
        "unknown": _counter(p.unknown, MAX_UNKNOWN_ON_WIRE),
        "out_of_bounds": p.out_of_bounds,
        "timestamps_converted": _counter(p.timestamps_converted),
        "clock_restamped": _counter(p.clock_restamped),
        "sequence": None
        if sequence is None
        else {
            "lost": sequence.lost,
            "restarts": sequence.restarts,
            "duplicates": sequence.duplicates,
            "unknown_maps": _counter(sequence.unknown_maps, MAX_UNKNOWN_ON_WIRE),
        },
        "warnings": list(p.warnings),
        "source_restarts": p.source_restarts,
        "poster_restarts": p.poster_restarts,
        "watch_restarts": p.watch_restarts,
        "silent": p.silent,
        "silence_reconnects": p.silence_reconnects,
        "ghost_episodes": _counter(p.ghost_episodes),
        "implausible_jumps": p.implausible_jumps,
        "ha_role": p.ha_role,
        "ha_holder": p.ha_holder,
        "ha_detail": p.ha_detail,
        "ha_since": p.ha_since,
    }


_PLANT_PLAIN = (
    "mqtt", "mqtt_detail", "mqtt_since", "mqtt_error", "connects", "out_of_bounds",
    "source_restarts", "poster_restarts", "watch_restarts", "silent", "silence_reconnects",
    "implausible_jumps", "ha_role", "ha_holder", "ha_detail", "ha_since",
)  # fmt: skip
_PLANT_COUNTERS = ("unknown", "timestamps_converted", "clock_restamped", "ghost_episodes")


def decode_plant_summary_into(target: PlantState, wire: Mapping[str, Any]) -> None:
    """Apply a plant summary (whole, or a delta's changed keys) to `target` in place.

    Its devices are left alone (they travel separately); no summary field is monotonic.
    """

    for name in _PLANT_PLAIN:
        if name in wire:
            setattr(target, name, wire[name])
    for name in _PLANT_COUNTERS:
        if name in wire:
            setattr(target, name, Counter(wire[name]))
    if "warnings" in wire:
        target.warnings = [str(w) for w in wire["warnings"]]
    if "counters" in wire:
        counters = wire["counters"]
        target.counters.received = int(counters.get("received", 0))
        target.counters.outcomes = Counter(counters.get("outcomes", {}))
    if "sequence" in wire:
        s = wire["sequence"]
        target.sequence = (
            None
            if s is None
            else SequenceCounters(
                lost=int(s.get("lost", 0)),
                restarts=int(s.get("restarts", 0)),
                duplicates=int(s.get("duplicates", 0)),
                unknown_maps=Counter(s.get("unknown_maps", {})),
            )
        )


def encode_auth(a: AuthState) -> dict[str, Any]:
    """One login's token facts (never the token)."""
    return {
        "login": a.login,
        "status": a.status,
        "expires_at": a.expires_at,
        "last_result": a.last_result,
        "last_error": a.last_error,
        "authentications": a.authentications,
        "refreshes": a.refreshes,
    }


_AUTH_PLAIN = ("status", "expires_at", "last_result", "last_error", "authentications", "refreshes")


def decode_auth_into(target: AuthState, wire: Mapping[str, Any]) -> None:
    """Apply token facts (whole, or changed keys) to `target` in place (epoch times)."""
    for name in _AUTH_PLAIN:
        if name in wire:
            setattr(target, name, wire[name])


# --- per-client deltas ---------------------------------------------------------------


class Differ:
    """What one client has been sent, and what changed since.

    `current` has the snapshot's shape without `mono`/`wall`: `plants` → name →
    `{"plant": summary, "devices": {vendor_id: device}}` (`devices` only for the plants
    the client follows), `auth` → login → facts, and whole values (`twinzo_url`,
    `platform`, `stores`). The first `diff` returns all of it (the snapshot); later ones
    only changed keys: a changed device or summary carries only its changed fields, a
    removed plant, device or login is `None`; nothing changed → `None`.
    """

    def __init__(self) -> None:
        self._last: dict[str, Any] | None = None

    def adopt(self, other: Differ) -> None:
        """Remember what `other` remembers: its client was sent the same frames as this
        one's, so this one's next delta is `other`'s (the remembered dict is replaced,
        never changed in place, so sharing it is safe)."""
        self._last = other._last

    def diff(self, current: Mapping[str, Any]) -> dict[str, Any] | None:
        """The delta from the last frame sent to `current` (and remember `current`)."""
        last, self._last = self._last, dict(current)
        if last is None:
            return dict(current)
        out: dict[str, Any] = {}
        for key, value in current.items():
            old = last.get(key, _MISSING)
            if key == "plants":
                changed = _diff_plants(old if isinstance(old, dict) else {}, value)
                if changed:
                    out[key] = changed
            elif key == "auth":
                changed = _diff_entries(old if isinstance(old, dict) else {}, value)
                if changed:
                    out[key] = changed
            elif old != value:
                out[key] = value
        for key in last:
            if key not in current:
                out[key] = None
        return out or None


_MISSING = object()


def _diff_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    changed = {k: v for k, v in new.items() if old.get(k, _MISSING) != v}
    changed.update((k, None) for k in old if k not in new)
    return changed


def _diff_entries(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Per key: the whole entry when new, its changed fields when changed, None when gone."""
    out: dict[str, Any] = {}
    for key, entry in new.items():
        before = old.get(key)
        if before is None:
            out[key] = entry
        elif before is not entry and before != entry:
            out[key] = _diff_fields(before, entry)
    out.update((key, None) for key in old if key not in new)
    return out


def _diff_plants(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, plant in new.items():
        before = old.get(name)
        if before is None:
            out[name] = plant
            continue
        changed: dict[str, Any] = {}
        if before.get("plant") != plant.get("plant"):
            changed["plant"] = _diff_fields(before.get("plant") or {}, plant["plant"])
        if "devices" in plant:
            devices = _diff_entries(before.get("devices") or {}, plant["devices"])
            if devices:
                changed["devices"] = devices
        if changed:
            out[name] = changed
    out.update((name, None) for name in old if name not in new)
    return out
