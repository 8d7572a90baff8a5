"""Ghost robots: robots that look present but are not getting through.

Per robot there are two ages: since its last vendor message and since twinzo
last accepted one of its positions. A robot is a ghost when

- `quiet`: its messages stopped for `ghost_after_s` while other robots of its
  plant still report (a plant that went silent as a whole is the silence
  watchdog's case, not a ghost);
- `refused`: its messages keep arriving but twinzo has refused its positions
  for `refused_after_s` (401, `Success: false`, a 4xx: not an outage that the
  poster retries through).

Each episode is logged when it starts and when it ends (floods folded per
plant), counted per robot and per plant, and shown in the AMR table and on the map.
"""

from __future__ import annotations

from dtp_console.config.model import PlantConfig
from dtp_console.events import OpsLog
from dtp_console.state import DeviceState, GhostKind, PlantState

__all__ = ["ghost_kind", "update_ghosts"]


def ghost_kind(
    plant: PlantConfig, device: DeviceState, now: float, plant_alive: bool
) -> GhostKind | None:
    """What kind of ghost `device` is at monotonic `now`, or None.

    `plant_alive`: another robot of the plant reported within `stale_after_s`.
    A quiet ghost stays one until the robot reports again, whatever the plant does.
    """
    age = device.heard_age_s(now)
    if age is None:
        return None
    if device.robot is not None and device.robot.offline:
        # A VDA 5050 robot that said OFFLINE (or whose last will said CONNECTIONBROKEN)
        # is shown offline: its silence is explained, so it is not a ghost.
        return None
    flowing = age <= plant.stale_after_s
    refused_for = None if device.refusing_since is None else now - device.refusing_since
    bound = plant.refused_after_s
    if flowing and bound > 0 and refused_for is not None and refused_for > bound:
        return "refused"
    quiet = plant.ghost_after_s
    if quiet > 0 and age > quiet and (plant_alive or device.ghost == "quiet"):
        return "quiet"
    return None


def update_ghosts(plant: PlantConfig, state: PlantState, log: OpsLog, now: float) -> None:
    """Set every robot's ghost flag as of monotonic `now`; log and count changes."""
    devices = state.devices
    fresh = [
        d.vendor_id
        for d in devices.values()
        if (age := d.heard_age_s(now)) is not None and age <= plant.stale_after_s
    ]
    for device in devices.values():
        alive = len(fresh) > 1 or (len(fresh) == 1 and fresh[0] != device.vendor_id)
        kind = ghost_kind(plant, device, now, alive)
        if kind == device.ghost:
            continue
        if device.ghost is not None:
            _ended(plant, device, log, now)
        device.ghost, device.ghost_since = kind, None
        if kind is not None:
            device.ghost_since = now
            device.ghost_episodes[kind] += 1
            state.ghost_episodes[kind] += 1
            _started(plant, device, log, kind, now)


def _who(plant: PlantConfig, device: DeviceState) -> str:
    return f"{device.login} ({plant.label}:{device.vendor_id}) in {plant.name}"


def _started(
    plant: PlantConfig, device: DeviceState, log: OpsLog, kind: GhostKind, now: float
) -> None:
    if kind == "quiet":
        age = device.heard_age_s(now) or 0.0
        text = (
            f"Ghost robot {_who(plant, device)}: no message for {age:.0f}s while its plant reports"
        )
    else:
        since = device.refusing_since if device.refusing_since is not None else now
        status = device.last_post_status or "?"
        text = (
            f"Ghost robot {_who(plant, device)}: twinzo has refused its positions for "
            f"{now - since:.0f}s while its messages arrive (last: {status})"
        )
    log.distinct(
        "WARN",
        f"ghost:{plant.name}:{kind}",
        device.vendor_id,
        text,
        plant.name,
        noun=f"{kind} ghost robots",
    )


def _ended(plant: PlantConfig, device: DeviceState, log: OpsLog, now: float) -> None:
    lasted = 0.0 if device.ghost_since is None else now - device.ghost_since
    if device.ghost == "quiet":
        what = "reports again"
    elif device.refusing_since is None:
        what = "is accepted by twinzo again"
    else:
        what = "stopped sending while twinzo refused it"
    log.distinct(
        "INFO",
        f"ghost-end:{plant.name}:{device.ghost}",
        device.vendor_id,
        f"Robot {_who(plant, device)} {what} (ghost for {lasted:.0f}s)",
        plant.name,
        noun=f"{device.ghost} ghost robots back",
    )
