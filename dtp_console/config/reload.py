"""What a config reload may change in a running console, and what waits for a restart.

A running bridge takes most of its plant's settings from the next message on
(`LIVE_PLANT_FIELDS`) and its poster most of the twinzo posting settings
(`LIVE_TWINZO_FIELDS`). Everything else is built once at start-up: the MQTT
connection (broker, topics, client id, format), the set of plants, the twinzo
client (URL, client, API key, TLS, timeouts), stores, registry, API, sandbox,
platform, logging, HA and the simulator. `plan_reload` merges a freshly loaded
file into the running config: new values where they apply live, the running
values elsewhere, and the paths of every field that changed but needs a restart.
Paths never carry values (secrets stay out of log lines).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from dtp_console.config.model import ConsoleConfig, PlantConfig

__all__ = [
    "LIVE_PLANT_FIELDS",
    "LIVE_TWINZO_FIELDS",
    "ReloadPlan",
    "plan_reload",
    "restart_warnings",
]

#: Plant fields (dotted paths) a running bridge applies from the next message on.
LIVE_PLANT_FIELDS = frozenset(
    {
        "vendor_label",
        "generic",
        "vda5050.min_localization_score",
        "vda5050.map_sectors",
        "vda5050.drop_unknown_maps",
        "device_map",
        "twinzo",
        "affine",
        "movement_threshold_mm",
        "bounds",
        "drop_out_of_bounds",
        "min_post_interval_ms",
        "max_payload_bytes",
        "stale_after_s",
        "timestamp_unit",
        "clock_tolerance_s",
        "clock_ahead",
        "clock_behind",
        "silence_reconnect_s",
        "ghost_after_s",
        "refused_after_s",
        "max_speed_mm_s",
        "drop_implausible",
    }
)

#: `twinzo` fields the posters apply from their next flush on (the rest live in the client).
LIVE_TWINZO_FIELDS = frozenset(
    {
        "password",
        "max_attempts",
        "backoff_initial_s",
        "backoff_max_s",
        "retry_after_max_s",
        "auth_backoff_s",
        "flush_interval_ms",
        "batch_max_devices",
        "drain_timeout_s",
    }
)

#: Paths named in one warning before the rest is counted.
_NAMED = 6

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The config that runs after a reload and what it left for a restart."""

    config: ConsoleConfig
    """New values of live fields, running values of the others (what actually runs)."""
    live: dict[str, list[str]] = field(default_factory=dict)
    """Per scope (`plants[NAME]`, `twinzo`), the live fields that changed."""
    restart: dict[str, list[str]] = field(default_factory=dict)
    """Per scope (`plants[NAME]`, `twinzo`, `config`), the paths that changed but wait."""


def plan_reload(
    running: ConsoleConfig, fresh: ConsoleConfig, running_plants: Collection[str]
) -> ReloadPlan:
    """Merge `fresh` into `running`; `running_plants` are the plants whose bridges run."""
    live: dict[str, list[str]] = {}
    restart: dict[str, list[str]] = {}
    new_by_name = {p.name: p for p in fresh.plants}
    old_names = {p.name for p in running.plants}
    plants: list[PlantConfig] = []
    for old in running.plants:
        scope = f"plants[{old.name}]"
        new = new_by_name.get(old.name)
        if new is None:
            restart[scope] = [f"{scope} (removed or renamed)"]
            plants.append(old)
            continue
        if old.name not in running_plants:
            waits = _changed(old, new, scope)
            if waits:
                restart[scope] = waits
            plants.append(old)
            continue
        merged, took, waits = _merge(old, new, LIVE_PLANT_FIELDS, scope)
        if took:
            live[scope] = took
        if waits:
            restart[scope] = waits
        plants.append(merged)
    for new in fresh.plants:
        if new.name not in old_names:
            restart[f"plants[{new.name}]"] = [f"plants[{new.name}] (added)"]
    twinzo, took, waits = _merge(running.twinzo, fresh.twinzo, LIVE_TWINZO_FIELDS, "twinzo")
    if took:
        live["twinzo"] = took
    if waits:
        restart["twinzo"] = waits
    others: list[str] = []
    for name in ConsoleConfig.model_fields:
        if name not in ("plants", "twinzo"):
            others += _changed(getattr(running, name), getattr(fresh, name), name)
    if others:
        restart["config"] = others
    config = running.model_copy(update={"plants": plants, "twinzo": twinzo})
    return ReloadPlan(config, live, restart)


def restart_warnings(plan: ReloadPlan) -> list[tuple[str | None, str]]:
    """One line per scope naming what changed but runs with the old value until a restart,
    with the plant it is about (None for the other sections)."""
    lines: list[tuple[str | None, str]] = []
    for scope, paths in plan.restart.items():
        plant = scope[len("plants[") : -1] if scope.startswith("plants[") else None
        named = ", ".join(paths[:_NAMED])
        if len(paths) > _NAMED:
            named += f" and {len(paths) - _NAMED} more"
            verb = "need"
        else:
            verb = "needs"
        values = "value" if len(paths) == 1 else "values"
        lines.append(
            (
                plant,
                f"config change to {named} {verb} a restart; still running with the old {values}",
            )
        )
    return lines


def _merge(
    old: _M, new: _M, live: frozenset[str], scope: str, prefix: str = ""
) -> tuple[_M, list[str], list[str]]:
    """`old` with the changed `live` fields of `new`; the live fields taken, the paths left."""
    update: dict[str, Any] = {}
    took: list[str] = []
    waits: list[str] = []
    for name in type(old).model_fields:
        path = f"{prefix}{name}"
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if path in live:
            update[name] = after
            took.append(path)
        elif any(f.startswith(f"{path}.") for f in live) and isinstance(before, BaseModel):
            merged, sub_took, sub_waits = _merge(before, after, live, scope, f"{path}.")
            if sub_took:
                update[name] = merged
            took += sub_took
            waits += sub_waits
        else:
            waits += _changed(before, after, f"{scope}.{path}")
    return (old.model_copy(update=update) if update else old), took, waits


def _changed(old: object, new: object, path: str) -> list[str]:
    """The paths under `path` whose values differ (models field by field, others whole)."""
    if old == new:
        return []
    if isinstance(old, BaseModel) and type(old) is type(new):
        paths: list[str] = []
        for name in type(old).model_fields:
            paths += _changed(getattr(old, name), getattr(new, name), f"{path}.{name}")
        # A difference the fields do not show (a private attribute): name the whole.
        return paths or [path]
    return [path]
