"""URLs and DSNs that never leak: masking, DSN parsing at load, plaintext checks (stdlib only).

`mask_url()` is the one helper every place that shows or logs a URL uses
(config show, the banner, the stats JSON, store errors). It masks generously:
everything between `://` and the last `@` of a URL, because a password with
an unescaped `/`, `#` or `?` fools a strict URL parser into a "host" that is
really half the password.

`parse_pg_dsn()` applies the rules asyncpg 0.30+ applies (`urlparse`, the
netloc split at the first `@`, `host[:port]` lists, a strict query string) and
refuses what asyncpg would misread or fail on later — with a reason that never
contains any part of the DSN.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "SSLMODES",
    "DsnError",
    "PgDsn",
    "check_url",
    "is_loopback",
    "mask_url",
    "parse_pg_dsn",
]

#: libpq's sslmode values (asyncpg accepts the same).
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_MASK = "***"
# scheme:// then the longest run of non-space characters ending in '@' (see module docstring).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)\S*@")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")
# A query parameter that carries a credential (`?token=…`, `&sslpassword=…`, a presigned
# S3 URL's signature): its value is masked too. Names compared case-insensitively.
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_.-]*[_.-])?(?:access_token|token|password|passwd|pwd"
    r"|sslpassword|secret|api_?key|apikey|sig|signature|credential|x-amz-signature"
    r"|x-amz-credential|x-amz-security-token)=)[^&;#\s]*",
    re.IGNORECASE,
)


class DsnError(ValueError):
    """A DSN or URL that cannot work; the message never quotes it."""


def mask_url(text: str) -> str:
    """`text` with the user info of every URL in it, and the values of query parameters
    that carry credentials (`?token=`, `&password=`, `sslpassword`, `api_key`, S3
    signatures, …), replaced by `***`.

    `postgresql://dtp:pw@db:5432/dtp` → `postgresql://***@db:5432/dtp`,
    `https://h/x?token=abc&n=1` → `https://h/x?token=***&n=1`; text without either
    is returned unchanged, so it is safe on any message.
    """
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{_MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('name')}{_MASK}", text)


def is_loopback(host: str | None) -> bool:
    """Whether `host` is this machine (`localhost`, 127.0.0.0/8, ::1, or a Unix socket path)."""
    if not host or host.startswith("/"):
        return True  # no host means a local socket to libpq/asyncpg
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class PgDsn:
    """What a PostgreSQL DSN says, without its password."""

    hosts: tuple[tuple[str, int | None], ...]
    """`(host, port)` pairs in order; empty means the local socket."""
    database: str | None
    user: str | None
    has_password: bool
    sslmode: str | None
    """The DSN's own `?sslmode=`, when given."""

    def target(self) -> str:
        """`host:port/db` (the most a message may say about the DSN)."""
        hosts = ",".join(f"{h}:{p}" if p else h for h, p in self.hosts) or "local socket"
        return f"{hosts}/{self.database}" if self.database else hosts

    def remote(self) -> bool:
        """Whether any host is not this machine."""
        return any(not is_loopback(host) for host, _ in self.hosts)


def _port(text: str) -> int | None:
    if text == "":
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65_535:
        msg = "a port is not a number in 1..65535"
        raise DsnError(msg)
    return int(text)


def _hosts(spec: str) -> tuple[tuple[str, int | None], ...]:
    out: list[tuple[str, int | None]] = []
    for part in spec.split(","):
        if part.startswith("["):
            host, bracket, rest = part[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                msg = "an IPv6 host is not written [addr] or [addr]:port"
                raise DsnError(msg)
            out.append((host, _port(rest[1:])))
            continue
        host, _, port = part.partition(":")
        out.append((urllib.parse.unquote(host), _port(port)))
    return tuple(out)


def parse_pg_dsn(dsn: str) -> PgDsn:
    """Parse a `postgresql://` DSN as asyncpg does; `DsnError` (value never quoted) if unusable."""
    if _CONTROL.search(dsn):
        msg = "it contains spaces or control characters (percent-encode them)"
        raise DsnError(msg)
    try:
        parsed = urllib.parse.urlparse(dsn)
    except ValueError:
        msg = "it is not a URL (is a '[' or ']' in the password not percent-encoded?)"
        raise DsnError(msg) from None
    if parsed.scheme not in ("postgresql", "postgres"):
        msg = "it must start with postgresql:// or postgres://"
        raise DsnError(msg)
    if parsed.fragment or "#" in dsn:
        msg = "it contains '#' (write a '#' in the password as %23)"
        raise DsnError(msg)
    if parsed.netloc.count("@") > 1:
        msg = "it contains more than one '@' (write an '@' in the password as %40)"
        raise DsnError(msg)
    auth, at, hostspec = parsed.netloc.rpartition("@")
    if not at:
        auth, hostspec = "", parsed.netloc
    database = parsed.path.removeprefix("/") or None
    if database is not None and ("/" in database or "@" in database):
        msg = "the database name contains '/' or '@' (write a '/' in the password as %2F)"
        raise DsnError(msg)
    query: dict[str, str] = {}
    if parsed.query:
        try:
            pairs = urllib.parse.parse_qsl(parsed.query, strict_parsing=True)
        except ValueError:
            msg = "its query is not key=value pairs (write a '?' in the password as %3F)"
            raise DsnError(msg) from None
        query = dict(pairs)
    hosts = _hosts(hostspec) if hostspec else ()
    if not hosts and "host" in query:
        hosts = _hosts(query["host"])
    if "port" in query:
        for port in query["port"].split(","):
            _port(port)
    sslmode = query.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        msg = f"sslmode must be one of {', '.join(SSLMODES)}"
        raise DsnError(msg)
    user, colon, password = auth.partition(":")
    return PgDsn(
        hosts=hosts,
        database=urllib.parse.unquote(database) if database else query.get("dbname"),
        user=urllib.parse.unquote(user) or query.get("user"),
        has_password=bool((colon and password) or query.get("password")),
        sslmode=sslmode,
    )


def check_url(url: str, schemes: tuple[str, ...], *, userinfo_hint: str) -> str:
    """`url` if it is `scheme://host[:port]…` with one of `schemes` and no user info.

    Raises `DsnError` (without quoting the URL) otherwise; `userinfo_hint`
    says where the credentials belong instead.
    """
    if _CONTROL.search(url):
        msg = "it contains spaces or control characters"
        raise DsnError(msg)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        msg = "its host or port is not valid (a port is a number in 1..65535)"
        raise DsnError(msg) from None
    if parts.scheme.lower() not in schemes:
        msg = f"the scheme must be one of {', '.join(s + '://' for s in schemes)}"
        raise DsnError(msg)
    if "@" in parts.netloc or parts.username is not None:
        msg = f"a user name or password in the URL is not supported ({userinfo_hint})"
        raise DsnError(msg)
    if not parts.hostname:
        msg = "it has no host"
        raise DsnError(msg)
    if port == 0:
        msg = "its port is not a number in 1..65535"
        raise DsnError(msg)
    return url
