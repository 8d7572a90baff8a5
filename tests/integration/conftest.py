"""Servers for integration tests: private mosquittos (plain and TLS) and the twinzo sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dtp_console.config.model import SandboxConfig
from dtp_console.twinzo.sandbox import TwinzoSandbox
from tests.support.mosquitto import MosquittoServer, TlsFiles, make_tls_files

SANDBOX_CREDENTIALS = {"client": "demo", "password": "test-device-pw", "api_key": "test-api-key"}


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """An anonymous mosquitto on a free 127.0.0.1 port."""
    with MosquittoServer(tmp_path / "mosquitto") as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a server certificate (IP SAN 127.0.0.1), generated once per session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A second, unrelated CA (for the wrong-CA test)."""
    return make_tls_files(tmp_path_factory.mktemp("tls-other"), name="other-CA")


@pytest.fixture
def tls_mosquitto(tmp_path: Path, tls_files: TlsFiles) -> Iterator[MosquittoServer]:
    """A TLS mosquitto with a password file (user `bridge`, password `test-pass`)."""
    with MosquittoServer(
        tmp_path / "mosquitto-tls", tls=tls_files, users={"bridge": "test-pass"}
    ) as server:
        yield server


@pytest.fixture
async def sandbox() -> AsyncIterator[TwinzoSandbox]:
    """The twinzo sandbox on a free loopback port, seeded for repeatable faults."""
    async with TwinzoSandbox(
        SandboxConfig(),
        client=SANDBOX_CREDENTIALS["client"],
        password=SANDBOX_CREDENTIALS["password"],
        api_key=SANDBOX_CREDENTIALS["api_key"],
        seed=7,
    ) as server:
        yield server
