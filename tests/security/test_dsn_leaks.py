"""DSNs and URLs never leak: refused at load without the value, masked wherever shown.

Issue 13 FAIL 5: a registry (or stores) DSN with `/`, `@`, `#` or `?` in the
password made asyncpg raise `ValueError("invalid literal for int() …: '<first
part of the password>'")`, which reached FAIL lines, `event_log` and tracebacks.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from dtp_console.config.loader import ConfigError, load_config
from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.pg import describe_pg_error, plaintext_warning, ssl_argument
from dtp_console.registry.errors import RegistryError
from dtp_console.registry.postgres_repo import PostgresRepository
from dtp_console.runtime import Engine
from dtp_console.stores.config import PostgresConfig, StoresConfig
from dtp_console.stores.mapping import event_from_log
from dtp_console.stores.postgres import PostgresStore
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.service import StoreService, plaintext_warnings
from dtp_console.urls import DsnError, mask_url, parse_pg_dsn
from tests.support.mosquitto import free_port

FIRST, SECOND = "Leak1x", "Leak2y"
BASE = "twinzo: {client: demo, password: change-me, api_key: change-me}\n"


def _load(tmp_path: Path, body: str) -> None:
    path = tmp_path / "console.yaml"
    path.write_text(BASE + body, encoding="utf-8")
    load_config(path, environ={})


def _dsn(char: str, port: int = 5432) -> str:
    return f"postgresql://dtp:{FIRST}{char}{SECOND}@127.0.0.1:{port}/dtp"


FIELDS = {
    "stores.postgres.dsn": "stores: {{postgres: {{dsn: {value}}}}}\n",
    "registry.postgres_dsn": "registry: {{postgres_dsn: {value}}}\n",
}


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("char", ["/", "@", "#", "?"])
def test_a_reserved_character_in_the_password_is_refused_at_load_without_the_value(
    tmp_path: Path, field: str, char: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, FIELDS[field].format(value=f"'{_dsn(char)}'"))
    message = str(caught.value)
    assert f"{field}: invalid DSN" in message
    assert FIRST not in message
    assert SECOND not in message


@pytest.mark.parametrize(
    "value",
    [
        f"'postgresql://dtp:{FIRST}\\x1b[2J{SECOND}@db.example.com/dtp'",
        f'"postgresql://dtp:{FIRST}\\n{SECOND}@db.example.com/dtp"',
        f"'mysql://dtp:{FIRST}@db.example.com/dtp'",
        f"'{FIRST}:{SECOND}@db.example.com'",
        f"'postgresql://dtp:{FIRST}@db.example.com:{SECOND}/dtp'",
        f"'postgresql://dtp:{FIRST}@db.example.com:99999/dtp'",
        f"'postgresql://dtp:{FIRST}@db.example.com/dtp?sslmode={SECOND}'",
        f"'postgresql://dtp:{FIRST}/{'x' * 100_000}{SECOND}@db.example.com/dtp'",
    ],
    ids=["escape", "newline", "scheme", "no-scheme", "port-text", "port-range", "sslmode", "huge"],
)
def test_hostile_dsns_are_refused_naming_the_field_only(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, FIELDS["stores.postgres.dsn"].format(value=value))
    message = str(caught.value)
    assert "stores.postgres.dsn: invalid DSN" in message
    assert FIRST not in message
    assert SECOND not in message
    assert len(message) < 400


def test_a_dsn_of_the_wrong_type_is_refused_without_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "stores: {postgres: {dsn: [831577]}}\n")
    assert "stores.postgres.dsn" in str(caught.value)
    assert "831577" not in str(caught.value)


def test_percent_encoded_and_non_ascii_passwords_load(tmp_path: Path) -> None:
    _load(tmp_path, FIELDS["stores.postgres.dsn"].format(value=f"'{_dsn('%2F')}'"))
    _load(tmp_path, FIELDS["registry.postgres_dsn"].format(value="'postgresql://dtp:päss@db/dtp'"))
    parsed = parse_pg_dsn(_dsn("%40"))
    assert parsed.has_password
    assert parsed.target() == "127.0.0.1:5432/dtp"
    assert parsed.user == "dtp"


def test_an_empty_dsn_means_unset(tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text(
        BASE + "stores: {postgres: {dsn: '${PG_DSN:-}'}}\nregistry: {postgres_dsn: ''}\n"
    )
    config = load_config(path, environ={})
    assert config.stores.postgres.dsn is None
    assert config.registry.postgres_dsn is None


def test_parse_errors_never_quote_the_dsn() -> None:
    for char in "/@#?":
        with pytest.raises(DsnError) as caught:
            parse_pg_dsn(_dsn(char))
        assert FIRST not in str(caught.value)
        assert SECOND not in str(caught.value)


async def test_the_registry_repository_maps_a_dsn_parse_error_to_invalid_dsn() -> None:
    # Bypasses load-time validation (a caller building the repository itself).
    repo = PostgresRepository(_dsn("/"))
    with pytest.raises(RegistryError) as caught:
        await repo.open()
    assert "invalid DSN" in str(caught.value)
    assert FIRST not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_the_postgres_store_maps_a_dsn_parse_error_to_invalid_dsn() -> None:
    config = PostgresConfig.model_construct(dsn=SecretStr(_dsn("#")), connect_timeout_s=1.0)
    store = PostgresStore(config)
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "invalid DSN" in str(caught.value)
    assert FIRST not in str(caught.value)


async def test_fail_lines_and_event_log_records_of_a_down_store_hold_no_dsn(
    tmp_path: Path,
) -> None:
    dsn = f"postgresql://dtp:{FIRST}@127.0.0.1:{free_port()}/dtp"
    config = StoresConfig(
        postgres=PostgresConfig(dsn=SecretStr(dsn), connect_timeout_s=1.0),
        sqlite_path=tmp_path / "platform.sqlite3",
        blob_dir=tmp_path / "blobs",
        probe_timeout_s=2.0,
    )
    bus = Bus()
    lines = bus.subscribe()
    async with StoreService(config, bus, OpsLog(bus, 60.0)) as service:
        health = await service.check_health()
    shown = [e for e in lines.drain() if isinstance(e, LogLine)]
    assert any(e.level == "FAIL" and "postgres" in e.text for e in shown)
    assert not [h for h in health if h.error and FIRST in h.error]
    for line in shown:
        assert FIRST not in line.render()
        record = event_from_log(line)
        assert record is None or FIRST not in str(record.body)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://api.platform.twinzo.com", "https://api.platform.twinzo.com"),
        ("bolt://neo:pw@graph.example.com:7687", "bolt://***@graph.example.com:7687"),
        (_dsn("/"), "postgresql://***@127.0.0.1:5432/dtp"),
        (_dsn("@"), "postgresql://***@127.0.0.1:5432/dtp"),
        ("cannot reach http://u:p@h:1: refused", "cannot reach http://***@h:1: refused"),
        ("no url here: a@b", "no url here: a@b"),
    ],
)
def test_mask_url(text: str, expected: str) -> None:
    assert mask_url(text) == expected


def test_describe_pg_error_never_echoes_a_value_error() -> None:
    assert describe_pg_error(ValueError(f"invalid literal for int(): '{FIRST}'")) == "invalid DSN"


def test_sslmode_and_ca_file_become_asyncpg_ssl_arguments(tmp_path: Path) -> None:
    assert ssl_argument(None, None) is None
    assert ssl_argument("disable", None) == "disable"
    assert ssl_argument("require", None) == "require"
    full = ssl_argument("verify-full", None)
    assert isinstance(full, ssl.SSLContext)
    assert full.check_hostname
    assert full.verify_mode == ssl.CERT_REQUIRED
    ca = ssl_argument("verify-ca", None)
    assert isinstance(ca, ssl.SSLContext)
    assert not ca.check_hostname
    assert ca.verify_mode == ssl.CERT_REQUIRED
    # libpq: `require` with a root certificate verifies the chain (not the host name).
    bundle = Path(ssl.get_default_verify_paths().cafile or "/nonexistent")
    if not bundle.is_file():
        pytest.skip(f"no CA bundle at {bundle}")
    pinned = ssl_argument("require", bundle)
    assert isinstance(pinned, ssl.SSLContext)
    assert pinned.verify_mode == ssl.CERT_REQUIRED
    assert not pinned.check_hostname


def test_a_missing_or_non_pem_ca_file_is_refused_at_load(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    for value in (tmp_path / "missing.pem", bogus):
        with pytest.raises(ConfigError, match=r"stores\.postgres\.ca_file"):
            _load(tmp_path, f"stores: {{postgres: {{ca_file: '{value}'}}}}\n")
        with pytest.raises(ConfigError, match=r"registry\.postgres_ca_file"):
            _load(tmp_path, f"registry: {{postgres_ca_file: '{value}'}}\n")


def test_plaintext_to_a_remote_host_with_a_password_warns_without_the_password() -> None:
    remote = f"postgresql://dtp:{FIRST}@db.example.com:5432/dtp"
    warning = plaintext_warning("stores.postgres", remote, None, None)
    assert warning is not None
    assert "db.example.com:5432/dtp" in warning
    assert "sslmode=prefer" in warning
    assert FIRST not in warning
    assert plaintext_warning("stores.postgres", remote, "verify-full", None) is None
    assert plaintext_warning("stores.postgres", remote + "?sslmode=verify-full", None, None) is None
    local = f"postgresql://dtp:{FIRST}@127.0.0.1:5432/dtp"
    assert plaintext_warning("stores.postgres", local, "disable", None) is None
    no_password = "postgresql://dtp@db.example.com:5432/dtp"
    assert plaintext_warning("stores.postgres", no_password, "disable", None) is None


def test_http_influx_and_bolt_neo4j_with_credentials_to_a_remote_host_warn() -> None:
    config = StoresConfig.model_validate(
        {
            "influx": {"url": "http://influx.example.com:8086", "token": FIRST},
            "neo4j": {"uri": "bolt://graph.example.com:7687", "password": SECOND},
        }
    )
    warnings = plaintext_warnings(config)
    assert len(warnings) == 2
    assert "stores.influx" in warnings[0]
    assert "influx.example.com:8086" in warnings[0]
    assert "stores.neo4j" in warnings[1]
    assert not [w for w in warnings if FIRST in w or SECOND in w]
    safe = StoresConfig.model_validate(
        {
            "influx": {"url": "https://influx.example.com:8086", "token": FIRST},
            "neo4j": {"uri": "bolt+s://graph.example.com:7687", "password": SECOND},
            "postgres": {"dsn": "postgresql://dtp:pw@127.0.0.1/dtp"},
        }
    )
    assert plaintext_warnings(safe) == []
    local = StoresConfig.model_validate(
        {"neo4j": {"uri": "bolt://127.0.0.1:7687", "password": SECOND}}
    )
    assert plaintext_warnings(local) == []


async def test_the_store_service_and_the_engine_warn_at_start(tmp_path: Path) -> None:
    config = StoresConfig.model_validate(
        {
            "sqlite_path": str(tmp_path / "platform.sqlite3"),
            "blob_dir": str(tmp_path / "blobs"),
            # The driver connects lazily: nothing is sent to this host by the test.
            "neo4j": {"uri": "bolt://graph.example.com:7687", "password": SECOND},
        }
    )
    bus = Bus()
    feed = bus.subscribe()
    async with StoreService(config, bus, OpsLog(bus, 60.0)):
        pass
    warned = [e for e in feed.drain() if isinstance(e, LogLine) and e.level == "WARN"]
    assert any("stores.neo4j" in e.text and "in clear" in e.text for e in warned)
    assert not [e for e in warned if SECOND in e.text]

    path = tmp_path / "console.yaml"
    remote = f"postgresql://dtp:{FIRST}@db.example.com:5432/dtp"
    path.write_text(BASE + f"registry: {{postgres_dsn: '{remote}'}}\nstores: {{enabled: false}}\n")
    engine = Engine(load_config(path, environ={}))
    lines = engine.bus.subscribe()
    engine._warn_plaintext_registry()
    shown = [e.render() for e in lines.drain() if isinstance(e, LogLine)]
    assert len(shown) == 1
    assert shown[0].startswith(
        "WARN registry.postgres_dsn: the password to db.example.com:5432/dtp"
    )
    assert FIRST not in shown[0]
