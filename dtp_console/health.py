"""`/healthz` and `/readyz`: is the process up, and is every enabled part of it working.

`liveness()` answers as long as the event loop does (version, pid, uptime).
`readiness()` is False until `Engine.ready` is set (every worker started), and
then until every enabled part is up: each bridge's MQTT session is connected,
each store's last health check passed, the registry worker has its repository
open, and the twinzo client exists (with its sandbox, when enabled) and not
every device login that tried to authenticate failed. The body says why in
`not_ready`, one short line per part that is down, and gives each part's facts.

Both bodies are JSON-safe (str, int, float, bool, None, lists and dicts; no
NaN) and free of secrets: URLs pass through `mask_url`, tokens and passwords
are never read. Outside text (a plant name, a broker's error) stays as it is;
the JSON encoder escapes it, and readers must treat it as text.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from dtp_console import __version__
from dtp_console.urls import mask_url

if TYPE_CHECKING:
    from dtp_console.runtime import Engine
    from dtp_console.state import PlantState
    from dtp_console.stores.service import StoreService

__all__ = ["liveness", "plant_silence", "readiness"]

#: Failed device logins listed in the twinzo part (the count covers them all).
_MAX_LISTED_FAILURES = 20


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_url(text)


def _uptime(engine: Engine) -> tuple[float | None, float | None]:
    started = engine.state.started_at or None
    if started is None:
        return None, None
    return started, round(max(0.0, time.time() - started), 3)


def liveness(engine: Engine) -> dict[str, Any]:
    """The `/healthz` body: the process answers (always 200 while it can)."""
    started, uptime = _uptime(engine)
    return {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "started_at": started,
        "uptime_s": uptime,
    }


def plant_silence(engine: Engine, plant: str) -> str | None:
    """Why `plant` counts as silent past its bound, or None when it is not (or not known).

    The bridge's silence watchdog sets `PlantState.silent` while no message has
    arrived for `silence_reconnect_s` although robots were reporting before (it
    also reconnects). A silent plant is not ready, unlike health checks that stay
    green with no data; the reason shows in the bridge's `silent` field and in
    `not_ready`.
    """
    state = engine.state.plants.get(plant)
    if state is None or not state.silent:
        return None
    now = time.monotonic()
    ages = [a for d in state.devices.values() if (a := d.message_age_s(now)) is not None]
    bound = next((p.silence_reconnect_s for p in engine.plants if p.name == plant), None)
    quiet = f"no message for {min(ages):.0f} s" if ages else "no message"
    return f"{quiet} (silence_reconnect_s {bound:g} s)" if bound else quiet


def _bridge(engine: Engine, name: str, plant: PlantState | None) -> tuple[bool, dict[str, Any]]:
    address = engine.addresses.get(name)
    broker = f"{address[0]}:{address[1]}" if address else None
    if plant is None:
        return False, {"up": False, "mqtt": "not started", "broker": broker}
    connected = plant.mqtt == "connected"
    silent = plant_silence(engine, name)
    # High availability: a standby is ready (it takes over by itself); a plant whose
    # lock's PostgreSQL is out of reach or in doubt posts for nobody: not ready.
    no_lock = plant.ha_role == "no_lock"
    up = connected and silent is None and not no_lock
    return up, {
        "up": up,
        "mqtt": plant.mqtt,
        "connected": connected,
        "since": round(plant.mqtt_since, 3) if plant.mqtt_since is not None else None,
        "broker": _masked(broker),
        "detail": _masked(plant.mqtt_detail) or None,
        "last_error": _masked(plant.mqtt_error),
        "connects": plant.connects,
        "silent": silent,
        "ha": None
        if plant.ha_role == "off"
        else {"role": plant.ha_role, "holder": plant.ha_holder, "detail": _masked(plant.ha_detail)},
    }


def _bridges(engine: Engine, problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for plant in engine.plants:
        up, facts = _bridge(engine, plant.name, engine.state.plants.get(plant.name))
        out[plant.name] = facts
        if not up:
            ha = facts.get("ha") or {}
            lockless = ha.get("role") == "no_lock" and facts["connected"] and not facts["silent"]
            why = (
                f"no HA lock ({_masked(ha.get('detail')) or 'PostgreSQL out of reach'})"
                if lockless
                else facts.get("silent") or f"MQTT {facts['mqtt']}"
            )
            problems.append(f"bridge {plant.name}: {why}")
    return out


def _stores(engine: Engine, problems: list[str]) -> dict[str, Any]:
    if not engine.config.stores.enabled:
        return {"enabled": False, "up": True, "stores": {}}
    service: StoreService | None = engine.stores
    if service is None or service.plan is None:
        problems.append("stores: not started")
        return {"enabled": True, "up": False, "stores": {}}
    stores: dict[str, Any] = {}
    for name in service.plan.stores:
        health = service.health.get(name)
        role = service.plan.role_of(name)
        if health is None:
            stores[name] = {"up": False, "role": role, "error": "no health check yet"}
        else:
            stores[name] = {
                "up": health.ok,
                "role": role,
                "latency_ms": health.latency_ms,
                "last_success": health.last_success,
                "error": _masked(health.error),
            }
    for bad in service.plan.unavailable:
        stores[bad.name] = {"up": False, "role": bad.role, "error": mask_url(bad.error)}
    for name, facts in stores.items():
        if not facts["up"]:
            problems.append(f"store {name}: {facts['error'] or 'down'}")
    return {"enabled": True, "up": all(f["up"] for f in stores.values()), "stores": stores}


def _registry(engine: Engine, problems: list[str]) -> dict[str, Any]:
    config = engine.config.registry
    if not config.enabled:
        return {"enabled": False, "up": True}
    repository = "postgres" if config.postgres_dsn is not None else "sqlite"
    if not config.twins_root.is_dir():
        # The engine does not start the worker then (it says so in the log): idle, not down.
        return {"enabled": True, "up": True, "running": False, "detail": "no twins folder"}
    up = engine.registry is not None
    if not up:
        problems.append("registry: repository not open")
    return {"enabled": True, "up": up, "running": up, "repository": repository}


def _twinzo(engine: Engine, problems: list[str]) -> dict[str, Any]:
    state = engine.state
    sandbox = engine.config.sandbox.enabled
    statuses = Counter(auth.status for auth in state.auth.values())
    failed = sorted(login for login, auth in state.auth.items() if auth.status == "failed")
    client = bool(state.twinzo_url)
    down: str | None = None
    if not client:
        down = "client not started"
    elif sandbox and engine.sandbox is None:
        down = "sandbox not running"
    elif failed and len(failed) == sum(statuses.values()):
        down = f"every device login failed to authenticate ({len(failed)})"
    if down is not None:
        problems.append(f"twinzo: {down}")
    return {
        "up": down is None,
        "url": _masked(state.twinzo_url) or None,
        "sandbox": sandbox,
        "tokens": dict(sorted(statuses.items())),
        "failed_logins": {
            login: state.auth[login].last_result for login in failed[:_MAX_LISTED_FAILURES]
        },
    }


async def readiness(engine: Engine) -> tuple[bool, dict[str, Any]]:
    """`(ready, body)` for `/readyz`: answer 200 when ready, 503 otherwise.

    Reads only in-memory state (and one `stat` of the twins folder); never waits on
    a broker or a store: their workers' latest results are what counts.
    """
    problems: list[str] = []
    started = engine.ready.is_set()
    if not started:
        problems.append("workers not started")
    bridges = _bridges(engine, problems)
    stores = _stores(engine, problems)
    registry = _registry(engine, problems)
    twinzo = _twinzo(engine, problems)
    platform = _platform(engine, problems)
    ready = not problems
    return ready, {
        "ready": ready,
        "started": started,
        "not_ready": problems,
        "version": __version__,
        "bridges": bridges,
        "stores": stores,
        "registry": registry,
        "twinzo": twinzo,
        "platform": platform,
    }


def _platform(engine: Engine, problems: list[str]) -> dict[str, Any] | None:
    """The platform worker (`dtp/#`): its MQTT session, when it runs; None when off."""
    state = engine.state.platform
    if state is None:
        return None
    up = state.mqtt == "connected"
    if not up:
        problems.append(f"platform broker: {state.mqtt_error or state.mqtt}")
    return {
        "up": up,
        "mqtt": state.mqtt,
        "since": state.mqtt_since,
        "last_error": state.mqtt_error,
        "broker": state.mqtt_detail or None,
    }
