"""Load the YAML config: `.env`, `${VAR}` interpolation, legacy files, validation.

Precedence, highest first: a value written in the YAML (after interpolation),
a legacy environment variable or `hivemq_config.json` (see `legacy.py`) or
`$DTP_API_LISTEN` (for `api.listen`), the model's default. The process
environment wins over `.env` files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values
from pydantic import ValidationError

from dtp_console import yamlsafe
from dtp_console.config.legacy import apply_legacy
from dtp_console.config.model import ConsoleConfig
from dtp_console.yamlsafe import too_big

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "interpolate",
    "load_config",
    "load_env",
    "masked_dump",
    "secrets_permission_warning",
]

DEFAULT_CONFIG_PATH = Path("config/console.yaml")

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; names the file, the field path and the reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self._text())

    def _text(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        lines = [f"{self.source}: {len(self.problems)} problems"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def load_env(config_path: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to interpolate with: `.env` files under the process environment.

    `.env` is looked for in the working directory and beside the config file, as
    README says — not above it: a `.env` in some parent folder (a home directory, a
    deploy tree holding several consoles) is not this console's to read.
    """
    env: dict[str, str] = {}
    candidates = [Path.cwd() / ".env"]
    if config_path is not None:
        candidates.append(config_path.resolve().parent / ".env")
    seen: set[Path] = set()
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved in seen or not resolved.is_file():
            continue
        seen.add(resolved)
        for key, value in dotenv_values(resolved).items():
            if value is not None:
                env.setdefault(key, value)
    env.update(os.environ if environ is None else environ)
    return env


def interpolate(data: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of `data`; `$$` is a dollar."""
    if isinstance(data, dict):
        return {k: interpolate(v, env, _join(path, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def _sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                hint = f"set it, or write ${{{name}:-default}}"
                msg = f"{path or '<root>'}: environment variable {name} is not set ({hint})"
                raise _InterpolationError(msg)
            return default
        return value

    return _VAR.sub(_sub, data)


class _InterpolationError(ValueError):
    pass


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _loc_text(loc: tuple[int | str, ...], raw: Any) -> str:
    """`('plants', 0, 'broker', 'port')` → `plants[0] (Old Plant).broker.port`."""
    text = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                text += f" ({node['name']})"
        else:
            text = _join(text, part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "<root>"


_SECRET_HINTS = ("password", "api_key", "secret", "token", "dsn")
#: Types whose input is not shown: an unknown key may be a misspelt `password`.
_HIDDEN_INPUT_TYPES = frozenset({"missing", "extra_forbidden"})


def _shown(value: Any) -> str:
    """A short repr of a rejected value (a 5,000-digit int cannot even be repr'd)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number too long to show"
    return text if len(text) <= 80 else f"{text[:77]}..."


def _validation_problems(error: ValidationError, raw: Any) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        # Model-level validators report under the model's own location.
        loc = tuple(p for p in item["loc"] if p != "__root__")
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        hidden = isinstance(given, dict | list) or item["type"] in _HIDDEN_INPUT_TYPES
        shown = "" if hidden else given
        suffix = f" (got {_shown(shown)})" if shown not in ("", None) else ""
        if any(s in str(loc).lower() for s in _SECRET_HINTS):
            suffix = ""
        problems.append(f"{_loc_text(loc, raw)}: {message}{suffix}")
    return problems


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConsoleConfig:
    """Read, interpolate, overlay legacy files and validate; `ConfigError` on any problem."""
    path = path or DEFAULT_CONFIG_PATH
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text (byte {exc.start})"]) from None
    try:
        raw = yamlsafe.load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError(source, ["invalid YAML: nested too deeply"]) from None
    except ValueError as exc:
        # PyYAML's int() of a number with more than 4,300 digits.
        raise ConfigError(source, [f"invalid YAML: {str(exc)[:120]}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"the top level must be a mapping, not {type(raw).__name__}"])
    if (problem := too_big(raw)) is not None:
        raise ConfigError(source, [problem])
    env = load_env(path, environ)
    try:
        return _resolve(raw, env, path)
    except RecursionError:
        raise ConfigError(source, ["nested too deeply"]) from None


def _resolve(raw: dict[str, Any], env: Mapping[str, str], path: Path) -> ConsoleConfig:
    source = str(path)
    try:
        data = interpolate(raw, env)
    except _InterpolationError as exc:
        raise ConfigError(source, [str(exc)]) from None
    try:
        data = apply_legacy(data, env, path)
    except ValueError as exc:
        raise ConfigError(source, [str(exc)]) from None
    data = _api_listen_from_env(data, env)
    try:
        return ConsoleConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _validation_problems(exc, data)) from None


def _api_listen_from_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`$DTP_API_LISTEN` fills `api.listen` where the file leaves it unset.

    So a service unit (or a test run) can move the API off the default port without
    editing the file; a `listen` written in the file wins.
    """
    listen = env.get("DTP_API_LISTEN")
    api = data.get("api", {})
    if not listen or not isinstance(api, dict) or "listen" in api:
        return data
    return {**data, "api": {**api, "listen": listen}}


_SECRET_KEYS = frozenset({"password", "api_key", "secret_key", "token", "postgres_dsn", "dsn"})
_PLACEHOLDERS = frozenset({"", "change-me", "changeme"})


def _literal_secrets(data: Any) -> bool:
    if isinstance(data, dict):
        for key, value in data.items():
            if str(key) in _SECRET_KEYS and isinstance(value, str | int):
                text = str(value)
                if "${" not in text and text.strip().lower() not in _PLACEHOLDERS:
                    return True
            elif _literal_secrets(value):
                return True
    elif isinstance(data, list):
        return any(_literal_secrets(item) for item in data)
    return False


def secrets_permission_warning(path: Path) -> str | None:
    """A warning when `path` holds literal secrets and other users may read it."""
    try:
        mode = path.stat().st_mode
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError, RecursionError):
        return None
    if mode & 0o044 and _literal_secrets(raw):
        return (
            f"{path} holds secrets and is readable by other users "
            f"(mode {mode & 0o777:o}); chmod 600 it or use ${{VAR}} references"
        )
    return None


def masked_dump(config: ConsoleConfig) -> dict[str, Any]:
    """The resolved config as plain data with every secret masked."""
    return config.model_dump(mode="json")
