"""HTTP API settings (imported by the config model; pydantic and stdlib only).

A non-loopback `listen` without TLS is refused at load unless
`allow_plaintext_remote` says the operator means it. Tokens are stored as
`sha256:<hex>` of the token, never the token itself: `dtp-console api token
create` prints both once.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import stat
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from dtp_console.config_base import ConfigModel

__all__ = [
    "ALL_TENANTS",
    "ApiConfig",
    "ApiTls",
    "ApiToken",
    "Role",
    "is_loopback_host",
    "parse_listen",
]

Role = Literal["viewer", "operator", "admin"]
#: A token's `tenants` entry that grants every tenant.
ALL_TENANTS = "*"

_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
_TENANT = re.compile(r"^\S{1,200}$")


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); ValueError when it is neither."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
    # ASCII digits only: `isdigit()` also passes '²' (int() refuses it) and '８' (int() reads it).
    digits = port_text.isascii() and port_text.isdigit()
    if not sep or not host or not digits or (":" in host and not text.startswith("[")):
        msg = "must be HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:8470"
        raise ValueError(msg)
    port = int(port_text)
    if port > 65535:
        msg = "port must be 0-65535"
        raise ValueError(msg)
    return host, port


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiTls(ConfigModel):
    """TLS for the API's listener (PEM files)."""

    cert_file: Path
    """Server certificate chain (PEM)."""
    key_file: Path
    """Private key of the certificate (PEM, unencrypted)."""

    @model_validator(mode="after")
    def _loads(self) -> ApiTls:
        for name, path in (("cert_file", self.cert_file), ("key_file", self.key_file)):
            if not path.is_file():
                msg = f"{name} {path} not found (or not a file)"
                raise ValueError(msg)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except FileNotFoundError:
            msg = "certificate or key file not found"
            raise ValueError(msg) from None
        except (OSError, ssl.SSLError):
            msg = "cert_file/key_file are not a readable PEM certificate and matching key"
            raise ValueError(msg) from None
        return self

    def key_file_warning(self) -> str | None:
        """A warning when users other than the owner may read the private key."""
        try:
            mode = stat.S_IMODE(self.key_file.stat().st_mode)
        except OSError:
            return None
        if not mode & 0o077:
            return None
        return (
            f"api.tls.key_file {self.key_file} is readable by other users (mode {mode:o}): "
            "anyone on this host can impersonate the API; chmod 600 it"
        )


class ApiToken(ConfigModel):
    """One bearer token: its hash, what it may do and which tenants it sees."""

    label: str
    """Who holds it (`portal`, `ops-script`); named in every `event_log` entry it writes."""
    hash: str
    """`sha256:<64 hex>` of the token, as `dtp-console api token create` prints it."""
    role: Role = "viewer"
    """`viewer`: GET and the stream; `operator`: also registry writes; `admin`: everything
    (also `/metrics`, `/healthz` and `/readyz` from other hosts)."""
    tenants: list[str] = Field(min_length=1)
    """Tenants whose twins and services it sees and changes; `"*"` is every tenant."""

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _LABEL.match(value):
            msg = "must be 1-64 letters, digits or _ . @ : - (starting with a letter or digit)"
            raise ValueError(msg)
        return value

    @field_validator("hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _HASH.match(value):
            # Never echo it: a token pasted here by mistake is a secret.
            msg = (
                "must be sha256:<64 lowercase hex> (the hash line `dtp-console api token "
                "create` prints, never the token itself)"
            )
            raise ValueError(msg)
        return value

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: list[str]) -> list[str]:
        for tenant in value:
            if not _TENANT.match(tenant):
                msg = f"a tenant must be non-empty with no spaces (got {tenant!r})"
                raise ValueError(msg)
        return value


class ApiConfig(ConfigModel):
    """The console's HTTP API: registry routes, the change stream, health and metrics."""

    enabled: bool = True
    """Serve the API while the console runs."""
    listen: str = "127.0.0.1:8470"
    """`HOST:PORT` to bind (`[::1]:8470` for IPv6; port 0 picks a free one, printed in
    the banner). A non-loopback host needs `tls` or `allow_plaintext_remote`. When the
    file leaves it unset, `$DTP_API_LISTEN` fills it."""
    tls: ApiTls | None = None
    """Serve HTTPS with this certificate and key."""
    allow_plaintext_remote: bool = False
    """Allow a non-loopback `listen` without TLS (tokens then cross the network in clear;
    the console warns at every start)."""
    tokens: list[ApiToken] = Field(default_factory=list)
    """Bearer tokens (hashes only). With none, only the open health routes answer."""
    open_health_on_loopback: bool = True
    """`/healthz`, `/readyz` and `/metrics` answer loopback peers without a token (not a
    request a local proxy relays, one with `Forwarded`/`X-Forwarded-For`/`X-Real-IP`); other
    peers need an `admin` token (or any token for `/healthz` and `/readyz`)."""
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=67_108_864)
    """Largest request body accepted (413 beyond it)."""
    stream_replay: int = Field(default=1_000, ge=0, le=100_000)
    """Change events kept for `Last-Event-ID` resume."""
    stream_queue: int = Field(default=256, ge=1, le=100_000)
    """Events queued per stream client; a client that falls this far behind is cut off
    (counted) so it never slows the registry or the other clients."""
    stream_heartbeat_s: float = Field(default=15.0, gt=0, le=3_600)
    """Seconds between heartbeat comments on an idle stream."""
    max_stream_clients: int = Field(default=200, ge=1, le=10_000)
    """Concurrent stream clients, the portal's and attached consoles' together; more are
    refused with 503."""
    max_connections: int = Field(default=400, ge=8, le=20_000)
    """Open connections to the API (streams included); past it a new one is closed at once
    (counted), so idle or trickling clients cannot take every file descriptor of the
    process the bridges and stores share. Must be more than `max_stream_clients`."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of `listen`."""
        return parse_listen(self.listen)

    @model_validator(mode="after")
    def _safe_bind(self) -> ApiConfig:
        errors: list[InitErrorDetails] = []
        host, _port = self.address
        plaintext = self.enabled and self.tls is None and not self.allow_plaintext_remote
        if plaintext and not is_loopback_host(host):
            error = PydanticCustomError(
                "plaintext_remote",
                "binding {host} (not loopback) without TLS would send bearer tokens in "
                "clear: set api.tls (cert_file, key_file) or api.allow_plaintext_remote: true",
                {"host": host},
            )
            errors.append(InitErrorDetails(type=error, loc=("listen",), input=None))
        if self.max_connections <= self.max_stream_clients:
            error = PydanticCustomError(
                "connections_below_streams",
                "must be more than max_stream_clients ({streams}): each stream is a connection",
                {"streams": self.max_stream_clients},
            )
            errors.append(InitErrorDetails(type=error, loc=("max_connections",), input=None))
        labels: set[str] = set()
        hashes: set[str] = set()
        for index, token in enumerate(self.tokens):
            if token.label in labels:
                error = PydanticCustomError(
                    "duplicate_label", "label {label!r} is used twice", {"label": token.label}
                )
                errors.append(
                    InitErrorDetails(type=error, loc=("tokens", index, "label"), input=None)
                )
            if token.hash in hashes:
                error = PydanticCustomError("duplicate_hash", "the same token is listed twice")
                errors.append(
                    InitErrorDetails(type=error, loc=("tokens", index, "hash"), input=None)
                )
            labels.add(token.label)
            hashes.add(token.hash)
        if errors:
            raise ValidationError.from_exception_data("ApiConfig", errors)
        return self
