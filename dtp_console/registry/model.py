"""The `twin.yaml` model, its normalisation, and the records the registry keeps.

`TwinFile` is the file as written (`@id`, `name`, `tenant`, `metadata`,
`interfaces`, `dependencies`); `normalise` turns it into a `TwinSpec` the way
the platform did: a missing `@id` becomes `dt:<Folder>_001`, a missing tenant
`demo`, a missing `interfaces.api` the host port of the folder's compose `ui`
service. `TwinRecord` is a registered twin: the spec plus lifecycle status,
source file and timestamps.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dtp_console.registry.compose import infer_ui_api
from dtp_console.registry.lifecycle import TwinStatus

__all__ = [
    "DEFAULT_TENANT",
    "Dependencies",
    "Health",
    "Interfaces",
    "ServiceRecord",
    "ServiceSpec",
    "StatusChange",
    "TwinFile",
    "TwinMetadata",
    "TwinRecord",
    "TwinSpec",
    "default_twin_id",
    "jsonable",
    "normalise",
]

#: Tenant of a twin whose file names none.
DEFAULT_TENANT = "demo"

Health = Literal["unknown", "healthy", "degraded", "unhealthy"]

_ID = re.compile(r"^\S+$")
_STREAM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_FOLDER_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        msg = f"{what} must be non-empty and contain no spaces (got {value!r})"
        raise ValueError(msg)
    return value


class TwinMetadata(BaseModel):
    """`metadata`: the domain list, the declared status, and any free keys."""

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)

    domain: list[str] = Field(default_factory=list)
    """Domains the twin belongs to (`[manufacturing, logistics]`); one string is a list of one."""
    status: TwinStatus | None = None
    """Declared lifecycle status: `instantiated`, `active` or `deprecated`."""

    @field_validator("domain", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Interfaces(_Strict):
    """`interfaces`: how to reach the twin."""

    api: str | None = None
    """Base URL of the twin's API; inferred from the compose `ui` service when missing."""
    data_streams: list[str] = Field(default_factory=list)
    """Streams the twin publishes or reads, as `PROTOCOL:address` (`MQTT:dtp/lift/alerts`)."""

    @field_validator("api")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc:
            msg = f"must be an absolute URL like http://host:port (got {value!r})"
            raise ValueError(msg)
        return value

    @field_validator("data_streams")
    @classmethod
    def _streams(cls, value: list[str]) -> list[str]:
        for stream in value:
            if not _STREAM.match(stream):
                msg = f"{stream!r} is not PROTOCOL:address (e.g. MQTT:dtp/lift/alerts)"
                raise ValueError(msg)
        return value


class Dependencies(_Strict):
    """`dependencies`: ids of the twins this one depends on."""

    static: list[str] = Field(default_factory=list)
    """Dependencies fixed by design (the lift an AMR fleet rides)."""
    dynamic: list[str] = Field(default_factory=list)
    """Dependencies that come and go at run time."""

    @field_validator("static", "dynamic")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for twin_id in value:
            _check_id(twin_id, "a dependency id")
        return value

    def all(self) -> list[str]:
        """Static then dynamic ids, each once."""
        return list(dict.fromkeys([*self.static, *self.dynamic]))


class TwinFile(_Strict):
    """A `twin.yaml` / `twin.yml` / `twin.json` as written (unknown top-level keys are errors)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    id: str | None = Field(default=None, alias="@id")
    """Twin id (`dt:Lift_001`); `dt:<Folder>_001` when missing. Quote it in YAML: `"@id":`."""
    name: str | None = None
    """Human name; the folder name when missing."""
    tenant: str | None = None
    """Tenant owning the twin; `demo` when missing."""
    description: str | None = None
    """Free text (kept as `metadata.description`)."""
    metadata: TwinMetadata = Field(default_factory=TwinMetadata)
    """Domain list, declared status and free keys."""
    interfaces: Interfaces = Field(default_factory=Interfaces)
    """API URL and data streams."""
    dependencies: Dependencies = Field(default_factory=Dependencies)
    """Twins this one depends on."""

    @field_validator("id", "tenant")
    @classmethod
    def _no_spaces(cls, value: str | None) -> str | None:
        return None if value is None else _check_id(value, "the value")

    @field_validator("name")
    @classmethod
    def _non_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            msg = "must not be blank"
            raise ValueError(msg)
        return value


class TwinSpec(_Strict):
    """A normalised twin, ready to register."""

    id: str
    """Twin id."""
    name: str
    """Human name."""
    tenant: str = DEFAULT_TENANT
    """Tenant owning the twin."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """`domain` and free keys (JSON values); the status lives in `declared_status`."""
    interfaces: Interfaces = Field(default_factory=Interfaces)
    """API URL and data streams."""
    dependencies: Dependencies = Field(default_factory=Dependencies)
    """Twins this one depends on."""
    declared_status: TwinStatus | None = None
    """The status the file asks for (see `lifecycle.status_on_register`)."""


class TwinRecord(_Strict):
    """A registered twin."""

    id: str
    """Twin id."""
    name: str
    """Human name."""
    tenant: str
    """Tenant owning the twin."""
    status: TwinStatus
    """Lifecycle status."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """`domain` and free keys."""
    interfaces: Interfaces = Field(default_factory=Interfaces)
    """API URL and data streams."""
    dependencies: Dependencies = Field(default_factory=Dependencies)
    """Twins this one depends on."""
    source: str | None = None
    """Absolute path of the file it was registered from; None when registered by API."""
    created_at: dt.datetime
    """When it was first registered (UTC)."""
    updated_at: dt.datetime
    """When it last changed (UTC)."""
    unknown_dependencies: list[str] = Field(default_factory=list)
    """Dependencies naming no registered twin (computed when read; never stored)."""

    def same_content(self, other: TwinRecord | None) -> bool:
        """Equal apart from timestamps and the computed dependency flags."""
        if other is None:
            return False
        skip = {"created_at", "updated_at", "unknown_dependencies"}
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)


class StatusChange(_Strict):
    """One entry of a twin's status history."""

    twin_id: str
    """The twin."""
    from_status: TwinStatus | None
    """Status before; None when the twin was first registered."""
    to_status: TwinStatus
    """Status after."""
    reason: str
    """Why (`registered`, `file deleted`, `deprecate`, …)."""
    at: dt.datetime
    """When (UTC)."""


class ServiceSpec(_Strict):
    """A service to register: something that serves twins (a UI, an API, a bridge)."""

    id: str
    """Service id (`svc:lift-ui`)."""
    name: str
    """Human name."""
    category: str
    """What kind of service (`ui`, `api`, `bridge`, `store`, …)."""
    tenant: str = DEFAULT_TENANT
    """Tenant owning the service."""
    twin_id: str | None = None
    """The twin this service belongs to, if any."""
    interfaces: dict[str, Any] = Field(default_factory=dict)
    """How to reach it (`{"api": "http://…", "data_streams": [...]}`)."""
    health: Health = "unknown"
    """`unknown`, `healthy`, `degraded` or `unhealthy`."""
    health_detail: str = ""
    """What the last health check said."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, "a service id")


class ServiceRecord(ServiceSpec):
    """A registered service."""

    registered_at: dt.datetime
    """When it was first registered (UTC)."""
    updated_at: dt.datetime
    """When it last changed (UTC)."""

    def same_content(self, other: ServiceRecord | None) -> bool:
        """Equal apart from timestamps."""
        if other is None:
            return False
        skip = {"registered_at", "updated_at"}
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)


def default_twin_id(folder: Path) -> str:
    """`dt:<Folder>_001`: the folder name with its first letter upper-cased."""
    name = _FOLDER_CHARS.sub("_", folder.name) or "Twin"
    return f"dt:{name[:1].upper()}{name[1:]}_001"


def jsonable(value: Any) -> Any:
    """YAML values made JSON-safe: dates become ISO strings, keys strings, tuples lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def normalise(
    raw: TwinFile, folder: Path, environ: Mapping[str, str], *, infer_api: bool = True
) -> TwinSpec:
    """A `TwinSpec` from a file's content and its folder, with the platform's defaults.

    Raises `compose.ComposeError` when `api` must be inferred and the compose file is broken.
    """
    interfaces = raw.interfaces
    if interfaces.api is None and infer_api:
        api = infer_ui_api(folder, environ)
        if api is not None:
            interfaces = interfaces.model_copy(update={"api": api})
    extra = raw.metadata.model_extra or {}
    metadata = {"domain": list(raw.metadata.domain), **jsonable(extra)}
    if raw.description is not None:
        metadata.setdefault("description", raw.description)
    return TwinSpec(
        id=raw.id or default_twin_id(folder),
        name=raw.name or folder.name,
        tenant=raw.tenant or DEFAULT_TENANT,
        metadata=metadata,
        interfaces=interfaces,
        dependencies=raw.dependencies,
        declared_status=raw.metadata.status,
    )
