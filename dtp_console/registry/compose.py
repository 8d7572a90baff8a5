"""The `ui` service's host port in a twin folder's compose file → the twin's `api` URL.

The platform's twins often leave `interfaces.api` out and publish their UI with
docker compose instead; the URL is then `http://localhost:<host port>` of the
first published port of the `ui` service. Every port syntax compose accepts is
understood: `"8080:80"`, `"127.0.0.1:8080:80/tcp"`, `"8080-8081:80"`,
`"${UI_PORT:-8080}:80"`, and the long form `{target: 80, published: 8080}`.
A port without a host side (`"80"`, `80`) publishes nothing and is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["COMPOSE_FILE_NAMES", "ComposeError", "find_compose_file", "infer_ui_api"]

#: Compose file names, in the order compose itself prefers them.
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - compared against, never bound


class ComposeError(ValueError):
    """A compose file that exists but cannot tell the `ui` port; `field` says where."""

    def __init__(self, path: Path, field: str, reason: str) -> None:
        self.path = path
        self.field = field
        self.reason = reason
        super().__init__(f"{path}: {field}: {reason}")


def find_compose_file(folder: Path) -> Path | None:
    """The compose file of a twin folder, if it has one."""
    for name in COMPOSE_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def infer_ui_api(folder: Path, environ: Mapping[str, str]) -> str | None:
    """`http://<host>:<port>` of the folder's compose `ui` service, or None.

    None when there is no compose file, no `ui` service or no published port;
    `ComposeError` when the compose file is unreadable or its `ui` ports are malformed.
    """
    path = find_compose_file(folder)
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(path, "<file>", f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ComposeError(path, "<file>", f"invalid YAML: {_yaml_reason(exc)}") from None
    except RecursionError:
        raise ComposeError(path, "<file>", "invalid YAML: nested too deeply") from None
    services = data.get("services") if isinstance(data, dict) else None
    ui = services.get("ui") if isinstance(services, dict) else None
    if not isinstance(ui, dict):
        return None
    ports = ui.get("ports") or []
    if not isinstance(ports, list):
        raise ComposeError(path, "services.ui.ports", "must be a list")
    for index, entry in enumerate(ports):
        field = f"services.ui.ports[{index}]"
        published = _published(entry, environ, path, field)
        if published is not None:
            host, port = published
            return f"http://{host}:{port}"
    return None


def _published(
    entry: Any, environ: Mapping[str, str], path: Path, field: str
) -> tuple[str, int] | None:
    """(host, port) published by one `ports` entry, or None when it publishes nothing."""
    if isinstance(entry, bool):
        raise ComposeError(path, field, f"not a port: {entry!r}")
    if isinstance(entry, int):
        return None  # a bare container port: compose picks a random host port
    if isinstance(entry, dict):
        published = entry.get("published")
        if published is None:
            return None
        host = str(entry.get("host_ip") or "")
        return _host(host), _port(_expand(str(published), environ, path, field), path, field)
    if not isinstance(entry, str):
        raise ComposeError(path, field, f"not a port: {entry!r}")
    text = _expand(entry, environ, path, field).split("/", 1)[0].strip()
    # `[::1]:8080:80` → host `[::1]`; otherwise split from the right.
    host = ""
    if text.startswith("["):
        end = text.find("]")
        host, text = text[: end + 1], text[end + 2 :]
    parts = text.rsplit(":", 2) if not host else text.split(":")
    if len(parts) == 1:
        return None  # container port only
    if len(parts) == 3:
        host, parts = parts[0], parts[1:]
    if not parts[0]:
        return None  # `:80` publishes on a random host port
    return _host(host), _port(parts[0], path, field)


def _port(text: str, path: Path, field: str) -> int:
    first = text.strip().split("-", 1)[0]  # a range publishes from its first port
    if not first.isdigit() or not 0 < int(first) < 65536:
        raise ComposeError(path, field, f"not a host port: {text!r}")
    return int(first)


def _host(host: str) -> str:
    return "localhost" if host in _WILDCARD_HOSTS else host


def _expand(text: str, environ: Mapping[str, str], path: Path, field: str) -> str:
    """Compose-style `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$VAR`."""

    def _sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        value = environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise ComposeError(path, field, f"${{{name}}} is not set and has no default")

    return _VAR.sub(_sub, text)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return str(exc)
