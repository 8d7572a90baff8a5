"""What `GET /api/console/session` says: the service's config, plants and maps, and this token.

Read once before the UI starts (its tabs are laid out from it) and again on every
reconnect; anything that does not read as a session of this protocol is an
`AttachError` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dtp_console.attach.http import error_message, request_json
from dtp_console.attach.replica import MAX_PLANTS
from dtp_console.attach.wire import PROTOCOL, config_from_wire, map_etag
from dtp_console.config.model import Affine
from dtp_console.textsafe import safe_text

if TYPE_CHECKING:
    import aiohttp

    from dtp_console.config.model import ConsoleConfig

__all__ = ["AttachError", "Session", "fetch_session", "parse_maps", "parse_session"]


class AttachError(Exception):
    """The service could not be attached to (unreachable, refused the token, another protocol)."""


@dataclass(frozen=True, slots=True)
class Session:
    """What `GET /api/console/session` says about the service and this token."""

    config: ConsoleConfig
    plants: tuple[str, ...]
    """Plant names this token sees, in tab order."""
    device_maps: dict[str, dict[str, str]]
    etags: dict[str, str]
    read_only: str | None
    principal: str
    """`label (role)` of the token."""
    host: str
    """`host pid N` of the service."""
    config_path: str | None
    affines: dict[str, Affine] = field(default_factory=dict)
    """The running affine of each plant whose bridge runs."""


def parse_session(body: Mapping[str, Any]) -> Session:
    """The session body as a `Session` (`AttachError` when it is not one this console reads)."""
    if body.get("protocol") != PROTOCOL:
        msg = (
            f"the service speaks attach protocol {body.get('protocol')!r}, this console {PROTOCOL}"
        )
        raise AttachError(msg)
    try:
        # One tab per plant: a service cannot make the console lay out thousands.
        plants = body["plants"]
        wired = body["config"].get("plants") or []
        if len(plants) > MAX_PLANTS or len(wired) > MAX_PLANTS:
            msg = f"the service runs more than {MAX_PLANTS} plants (a replica is bounded)"
            raise AttachError(msg)
        config = config_from_wire(body["config"])
        # The service's log file is on its host: this console writes no file of its own there.
        config = config.model_copy(
            update={"logging": config.logging.model_copy(update={"file": None})}
        )
        maps, etags = parse_maps(body.get("device_maps") or {})
        engine = body.get("engine") or {}
        principal = body.get("principal") or {}
        read_only = body.get("read_only")
        path = body.get("config_path")
        return Session(
            config=config,
            plants=tuple(str(name) for name in plants),
            device_maps=maps,
            etags=etags,
            read_only=None if read_only is None else safe_text(str(read_only), 200),
            principal=safe_text(f"{principal.get('label', '?')} ({principal.get('role', '?')})"),
            host=safe_text(f"{engine.get('host', '?')} pid {engine.get('pid', '?')}", 200),
            config_path=None if path is None else str(path),
            affines={
                str(plant): Affine.model_validate(values)
                for plant, values in (body.get("affines") or {}).items()
            },
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"the service's session cannot be read ({type(exc).__name__}: {exc})"
        raise AttachError(msg[:400]) from None


def parse_maps(wire: Mapping[str, Any]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    maps: dict[str, dict[str, str]] = {}
    etags: dict[str, str] = {}
    for plant, entry in wire.items():
        mapping = {str(k): str(v) for k, v in entry["map"].items()}
        maps[str(plant)] = mapping
        etags[str(plant)] = str(entry.get("etag") or map_etag(mapping))
    return maps, etags


async def fetch_session(http: aiohttp.ClientSession, url: str) -> Session:
    status, body = await request_json(http, "GET", url + "/api/console/session")
    if status != 200:
        raise AttachError(f"{url}: HTTP {status}: {error_message(body)}")
    return parse_session(body)
