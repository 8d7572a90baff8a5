"""Choosing the registry's repository adapter from the config.

Apart from `repository.py` (the protocol the adapters import), so that the
protocol module never imports its implementations.
"""

from __future__ import annotations

from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.repository import TwinRepository

__all__ = ["open_repository"]


def open_repository(config: RegistryConfig) -> TwinRepository:
    """The configured repository (not yet opened): PostgreSQL with a DSN, else SQLite."""
    if config.postgres_dsn is not None:
        from dtp_console.registry.postgres_repo import PostgresRepository

        return PostgresRepository(
            config.postgres_dsn.get_secret_value(),
            sslmode=config.postgres_sslmode,
            ca_file=config.postgres_ca_file,
        )
    from dtp_console.registry.sqlite_repo import SqliteRepository

    return SqliteRepository(config.sqlite_path)
