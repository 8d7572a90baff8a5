"""Twin registry settings (imported by the config model; pydantic and stdlib only)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from dtp_console.config_base import ConfigModel
from dtp_console.stores.config import SslMode, validate_ca_file, validate_dsn

__all__ = ["RegistryConfig"]


class RegistryConfig(ConfigModel):
    """The twin registry: where twin files are found and where twins are kept."""

    enabled: bool = True
    """Run the registry (scan, and watch when `watch` is on) inside the console."""
    twins_root: Path = Path("twins")
    """Folder searched recursively for `twin.yaml`, `twin.yml` and `twin.json`
    (relative to the working directory)."""
    sqlite_path: Path = Path("var/registry.sqlite3")
    """SQLite file the registry keeps twins in when no `postgres_dsn` is set
    (its folder is created on first use)."""
    postgres_dsn: SecretStr | None = None
    """PostgreSQL DSN (`postgresql://user:pass@host:5432/db`); when set, twins are kept
    there instead of SQLite. Write `${REGISTRY_PG_DSN}` to keep the password out of the file.
    Parsed at load: write `/`, `@`, `#`, `?` in the password as `%2F`, `%40`, `%23`, `%3F`."""
    postgres_sslmode: SslMode | None = None
    """TLS to the registry's PostgreSQL, as libpq's `sslmode` (see `stores.postgres.sslmode`);
    unset: the DSN's `?sslmode=`, else `prefer`."""
    postgres_ca_file: Path | None = None
    """PEM file of the CA(s) that signed the registry PostgreSQL's certificate; unset uses
    the system's trust store."""
    watch: bool = True
    """Watch the twins folder: created or edited files re-register, deleted files deprecate."""
    debounce_ms: int = Field(default=200, ge=10, le=5_000)
    """Changes arriving within this many milliseconds are handled as one batch."""
    resync_s: float = Field(default=60.0, ge=0, le=86_400)
    """While watching, scan the whole twins folder every this many seconds and correct
    the registry where it differs (a change the watcher missed: an event lost under load,
    a full kernel queue); each correcting resync is logged. `0` turns it off; else at least 1."""

    _dsn_parses = field_validator("postgres_dsn")(validate_dsn)
    _ca_loads = field_validator("postgres_ca_file")(validate_ca_file)

    @field_validator("resync_s")
    @classmethod
    def _resync_off_or_sane(cls, value: float) -> float:
        if 0 < value < 1:
            msg = "0 (off) or at least 1 second (each resync reads every twin file)"
            raise ValueError(msg)
        return value
