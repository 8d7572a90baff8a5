"""`registry:` settings in the console config, and the repository they choose."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

import dtp_console.registry as registry_pkg
from dtp_console.config import ConfigError, load_config, masked_dump
from dtp_console.registry.backends import open_repository
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.postgres_repo import PostgresRepository
from dtp_console.registry.sqlite_repo import SqliteRepository


def test_defaults() -> None:
    config = RegistryConfig()
    assert config.twins_root == Path("twins")
    assert config.sqlite_path == Path("var/registry.sqlite3")
    assert config.postgres_dsn is None
    assert config.watch is True
    assert config.debounce_ms == 200
    assert config.resync_s == 60


def test_every_field_is_documented() -> None:
    for name, field in RegistryConfig.model_fields.items():
        assert field.description, f"registry.{name} has no docstring"


def test_dsn_comes_from_the_environment_and_is_masked(tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text(
        "registry:\n  postgres_dsn: ${REG_DSN}\n  twins_root: my-twins\n  watch: false\n",
        encoding="utf-8",
    )
    dsn = "postgresql://registry:placeholder-pw@127.0.0.1:5432/dtp"
    config = load_config(path, environ={"REG_DSN": dsn})
    assert config.registry.postgres_dsn == SecretStr(dsn)
    assert config.registry.twins_root == Path("my-twins")
    assert config.registry.watch is False
    assert "placeholder-pw" not in str(masked_dump(config))
    assert "placeholder-pw" not in repr(config.registry)


def test_misspelt_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text("registry:\n  twin_root: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"registry\.twin_root"):
        load_config(path, environ={})


@pytest.mark.parametrize("debounce", [0, 9, 60_000])
def test_debounce_is_bounded(debounce: int) -> None:
    with pytest.raises(ValidationError):
        RegistryConfig(debounce_ms=debounce)


@pytest.mark.parametrize("resync", [-1, 0.5, 86_401, float("nan"), float("inf")])
def test_resync_is_off_or_bounded(resync: float, tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text(f"registry:\n  resync_s: {resync}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"registry\.resync_s"):
        load_config(path, environ={})


@pytest.mark.parametrize("resync", [0, 1, 60, 86_400])
def test_resync_accepts_off_and_sane_periods(resync: float) -> None:
    assert RegistryConfig(resync_s=resync).resync_s == resync


def test_open_repository_picks_postgres_only_with_a_dsn(tmp_path: Path) -> None:
    sqlite = open_repository(RegistryConfig(sqlite_path=tmp_path / "r.sqlite3"))
    assert isinstance(sqlite, SqliteRepository)
    assert sqlite.path == tmp_path / "r.sqlite3"
    dsn = SecretStr("postgresql://postgres@127.0.0.1:5432/x")
    assert isinstance(open_repository(RegistryConfig(postgres_dsn=dsn)), PostgresRepository)


def test_package_exports_resolve() -> None:
    for name in registry_pkg.__all__:
        assert getattr(registry_pkg, name) is not None, name
    with pytest.raises(AttributeError):
        _ = registry_pkg.nothing_like_this
