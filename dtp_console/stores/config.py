"""Store settings (imported by the config model; pydantic and stdlib only).

Each role has an embedded default so the demo needs nothing installed:
observations, events and relationships go to one SQLite file, blobs to a local
folder. Configuring a server for a role (a DSN, a URL, an endpoint) moves that
role there.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from dtp_console.config_base import ConfigModel
from dtp_console.urls import DsnError, check_url, parse_pg_dsn

__all__ = [
    "InfluxConfig",
    "Neo4jConfig",
    "PostgresConfig",
    "S3Config",
    "SslMode",
    "StoresConfig",
    "validate_ca_file",
    "validate_dsn",
]

#: libpq's `sslmode` values.
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
_NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def validate_dsn(value: SecretStr | None) -> SecretStr | None:
    """A DSN asyncpg can parse, else `ValueError("invalid DSN: …")` that never quotes it.

    An empty DSN (`${STORES_PG_DSN:-}` with the variable unset) means unset.
    """
    if value is not None and not value.get_secret_value().strip():
        return None
    if value is not None:
        try:
            parse_pg_dsn(value.get_secret_value())
        except DsnError as exc:
            msg = f"invalid DSN: {exc}"
            raise ValueError(msg) from None
    return value


def validate_ca_file(value: Path | None) -> Path | None:
    """A CA file that exists and holds PEM certificates (a bad one can never connect)."""
    if value is not None:
        try:
            ssl.create_default_context(cafile=str(value))
        except FileNotFoundError:
            msg = "CA file not found"
            raise ValueError(msg) from None
        except (OSError, ssl.SSLError):
            msg = "not a readable PEM CA file"
            raise ValueError(msg) from None
    return value


def _check_url_field(
    data: Any, key: str, schemes: tuple[str, ...], hint: str, *, query: bool = True
) -> None:
    """Validate `data[key]` as a URL; runs before field parsing so the value is never echoed.

    (The loader shows a rejected field's input; at model level it shows none.)
    """
    if not isinstance(data, dict) or not isinstance(data.get(key), str) or not data[key]:
        return
    try:
        check_url(data[key], schemes, userinfo_hint=hint)
    except DsnError as exc:
        msg = f"{key}: invalid URL: {exc}"
        raise ValueError(msg) from None
    if not query and "?" in data[key]:
        msg = f"{key}: invalid URL: a query string needs a neo4j:// scheme (routing context)"
        raise ValueError(msg)


class PostgresConfig(ConfigModel):
    """PostgreSQL / TimescaleDB: observations (`observation`, `signal`) and the event log."""

    dsn: SecretStr | None = None
    """DSN (`postgresql://user:pass@host:5432/db`); unset keeps observations and events in
    SQLite. Write `${STORES_PG_DSN}` to keep the password out of the file. Parsed at load:
    write `/`, `@`, `#`, `?` in the password as `%2F`, `%40`, `%23`, `%3F`."""
    pool_size: int = Field(default=4, ge=1, le=100)
    """Most connections the pool opens."""
    batch_size: int = Field(default=5_000, ge=1, le=1_000_000)
    """Most observations written in one batch (one COPY into a staging table)."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """Give up connecting (or on one statement of a probe) after this many seconds."""
    sslmode: SslMode | None = None
    """TLS to the server, as libpq's `sslmode`: `verify-full` checks the certificate and
    the host name, `verify-ca` the certificate only, `require` encrypts without a check
    (with `ca_file`: as `verify-ca`); `prefer`/`allow`/`disable` may send the password in
    clear. Unset: the DSN's `?sslmode=`, else `prefer`. A warning is logged at start
    when the password can travel unverified to a host other than this machine."""
    ca_file: Path | None = None
    """PEM file of the CA(s) that signed the server's certificate (for `verify-ca` /
    `verify-full`); unset uses the system's trust store."""

    _dsn_parses = field_validator("dsn")(validate_dsn)
    _ca_loads = field_validator("ca_file")(validate_ca_file)


class InfluxConfig(ConfigModel):
    """InfluxDB 2: observations as measurement `observation`, tag `signal_id`, field `value`."""

    url: str | None = None
    """Base URL (`http://127.0.0.1:8086`); unset means observations do not go to InfluxDB.
    No user info in it: the token goes in `token`."""
    token: SecretStr | None = None
    """API token (masked wherever shown). Write `${INFLUX_TOKEN}`."""
    org: str = "dtp"
    """Organisation."""
    bucket: str = "signals"
    """Bucket the observations are written to."""
    batch_size: int = Field(default=5_000, ge=1, le=1_000_000)
    """Most points written in one request."""
    timeout_s: float = Field(default=10.0, gt=0)
    """HTTP timeout of one request."""

    @model_validator(mode="before")
    @classmethod
    def _url_works(cls, data: Any) -> Any:
        _check_url_field(data, "url", ("http", "https"), "put the token in `token`")
        return data


class Neo4jConfig(ConfigModel):
    """Neo4j 5: twins, assets, dependencies, plants and their devices."""

    uri: str | None = None
    """Bolt URI (`bolt://127.0.0.1:7687`, `bolt+s://…`, `neo4j://…`); unset keeps relationships
    in SQLite. No user info in it: the credentials go in `user` and `password`."""
    user: str = "neo4j"
    """User name."""
    password: SecretStr | None = None
    """Password (masked wherever shown). Write `${NEO4J_PASSWORD}`."""
    database: str | None = None
    """Database name; the server's default when unset."""
    connection_acquisition_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for a connection from the driver's pool before failing."""

    @model_validator(mode="before")
    @classmethod
    def _uri_works(cls, data: Any) -> Any:
        hint = "set `user` and `password` instead"
        uri = data.get("uri") if isinstance(data, dict) else None
        direct = isinstance(uri, str) and uri.lower().startswith("bolt")
        _check_url_field(data, "uri", _NEO4J_SCHEMES, hint, query=not direct)
        return data


class S3Config(ConfigModel):
    """MinIO / S3: blobs (device-map snapshots, twin file archives) with a manifest beside each."""

    endpoint: str | None = None
    """`host:port` of the S3 endpoint (`127.0.0.1:9000`); unset keeps blobs in `blob_dir`."""
    access_key: str | None = None
    """Access key id."""
    secret_key: SecretStr | None = None
    """Secret key (masked wherever shown). Write `${MINIO_SECRET_KEY}`."""
    bucket: str = "dtp-blobs"
    """Bucket the blobs are kept in (created when missing)."""
    secure: bool = True
    """Use HTTPS. Turn off only for a local MinIO on plain HTTP."""
    region: str | None = None
    """Region; the server's default when unset."""


class StoresConfig(ConfigModel):
    """The platform's stores: which backend serves each role, the spool, health checks."""

    enabled: bool = True
    """Feed the stores from the console's workers (platform topics, bridge failures,
    registry changes, device-map edits)."""
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    """PostgreSQL / TimescaleDB (observations and events)."""
    influx: InfluxConfig = Field(default_factory=InfluxConfig)
    """InfluxDB 2 (observations, alongside or instead of PostgreSQL)."""
    neo4j: Neo4jConfig = Field(default_factory=Neo4jConfig)
    """Neo4j (relationships)."""
    s3: S3Config = Field(default_factory=S3Config)
    """MinIO / S3 (blobs)."""
    sqlite_path: Path = Path("var/platform.sqlite3")
    """Embedded default for observations, events and relationships: one SQLite file
    (its folder is created on first use)."""
    blob_dir: Path = Path("var/blobs")
    """Embedded default for blobs: objects and their manifests under this folder."""
    health_interval_s: float = Field(default=10.0, gt=0)
    """Seconds between health checks of each store (published for the UI's badges)."""
    probe_timeout_s: float = Field(default=10.0, gt=0)
    """A health check or a `check` probe taking longer than this fails."""
    spool: Literal["disk", "memory"] = "disk"
    """Where records wait for their store: `disk` (one SQLite file per store and role
    under `spool_dir`, kept across restarts and crashes, replayed first on start) or
    `memory` (lost when the process stops; for benchmarks and tests)."""
    spool_dir: Path | None = None
    """Folder of the disk spools (`<spool_dir>/<store>/<role>.sqlite3`); unset: `spool`
    beside `sqlite_path` (`var/spool`). It must be writable: a read-only or full folder
    refuses the start (exit 2)."""
    spool_max: int = Field(default=100_000, ge=1, le=10_000_000)
    """Most records kept per store while it is down or slow; beyond that the oldest are
    dropped, counted and logged."""
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=4096, le=1 << 40)
    """Most bytes of records kept in one disk spool; beyond that the oldest are dropped,
    counted and logged."""
    spool_sync: Literal["normal", "full"] = "normal"
    """SQLite `synchronous` of the disk spools: `normal` survives a crash or `kill -9` of
    the process; `full` also a power cut, at the price of an fsync per batch."""
    flush_interval_ms: int = Field(default=500, ge=1, le=60_000)
    """Longest a record waits in the spool before a write is attempted."""
    retry_initial_s: float = Field(default=0.5, gt=0)
    """First retry delay after a failed write; doubles per failure (with jitter) up to
    `retry_max_s`."""
    retry_max_s: float = Field(default=30.0, gt=0)
    """Longest delay between retries of a failed write."""
    drain_timeout_s: float = Field(default=5.0, ge=0)
    """On shutdown, time allowed to write what is still spooled; the rest is counted as dropped."""

    @property
    def spool_root(self) -> Path:
        """The folder the disk spools live in (`spool_dir`, else `spool` beside `sqlite_path`)."""
        return self.spool_dir if self.spool_dir is not None else self.sqlite_path.parent / "spool"
