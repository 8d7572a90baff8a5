"""High-availability settings (imported by the config model; pydantic and stdlib only).

With `ha.enabled`, every plant's bridge runs as the **active** (it holds the
plant's PostgreSQL advisory lock and posts) or a **standby** (subscribed and
parsing, posting nothing). See `dtp_console/ha.py` and README "High availability".
"""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from dtp_console.config_base import ConfigModel
from dtp_console.stores.config import SslMode, validate_ca_file, validate_dsn

__all__ = ["MAX_INSTANCE_BYTES", "HaConfig", "instance_problem"]

#: PostgreSQL keeps `application_name` to NAMEDATALEN - 1 bytes.
MAX_INSTANCE_BYTES = 63


def instance_problem(value: str) -> str | None:
    """Why `value` cannot be an instance identity (PostgreSQL's `application_name`), or None.

    PostgreSQL replaces anything but printable ASCII in `application_name` with `?`
    and cuts it at 63 bytes: the identity would not be read back as written.
    """
    if not value:
        return "it is empty"
    for index, char in enumerate(value):
        if not 0x20 <= ord(char) <= 0x7E:
            return f"character {index + 1} is U+{ord(char):04X} (printable ASCII only)"
    if len(value) > MAX_INSTANCE_BYTES:
        return f"it is longer than {MAX_INSTANCE_BYTES} characters"
    return None


class HaConfig(ConfigModel):
    """Hot standby: two consoles on one plant, one posts; PostgreSQL decides which."""

    enabled: bool = False
    """Run every plant as active or standby, decided by a session-level PostgreSQL
    advisory lock per plant (key: the plant name and `twinzo.client`). Needs `dsn`."""
    dsn: SecretStr | None = None
    """PostgreSQL shared by the consoles (`postgresql://user:pass@host:5432/db`); any
    database and user may take advisory locks, no table is created. Write `${HA_PG_DSN}`
    to keep the password out of the file; masked wherever shown."""
    sslmode: SslMode | None = None
    """TLS to the server, as libpq's `sslmode` (see `stores.postgres.sslmode`)."""
    ca_file: Path | None = None
    """PEM file of the CA(s) that signed the server's certificate; the system store when unset."""
    poll_s: float = Field(default=1.0, ge=0.1, le=60.0)
    """A standby tries the lock this often; the active checks its lock connection this
    often (`SELECT 1`, timeout `poll_s / 2`) and stops posting as soon as a check fails
    or is late. A failover takes about `poll_s` plus one flush."""
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300.0)
    """Give up connecting to PostgreSQL after this long (then retry every `poll_s`)."""
    instance: str | None = None
    """This console's identity, shown as the lock holder (`application_name` of the lock
    connection): printable ASCII, at most 63 characters. `<host>:<pid>` when unset. Two
    consoles usually share one config file: set it per console (`${HA_INSTANCE}`), or
    leave it unset."""

    _dsn_parses = field_validator("dsn")(validate_dsn)
    _ca_loads = field_validator("ca_file")(validate_ca_file)

    @field_validator("instance")
    @classmethod
    def _usable_instance(cls, value: str | None) -> str | None:
        if value is not None and (problem := instance_problem(value)) is not None:
            raise ValueError(f"not usable as PostgreSQL application_name: {problem}")
        return value

    @model_validator(mode="after")
    def _dsn_when_enabled(self) -> HaConfig:
        # Located at `dsn` and raised with no input, so the loader never echoes anything.
        if self.enabled and self.dsn is None:
            error = PydanticCustomError(
                "ha_dsn",
                "ha.enabled needs the PostgreSQL the consoles share (e.g. dsn: ${HA_PG_DSN})",
            )
            details = [InitErrorDetails(type=error, loc=("dsn",), input=None)]
            raise ValidationError.from_exception_data("HaConfig", details)
        return self
