"""Shared test setup."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

# Snapshots and colour assertions break under NO_COLOR; tests own their environment.
os.environ.pop("NO_COLOR", None)
# Engines started by tests (in-process, and subprocesses, which inherit this) serve the API
# on a free port: many run at once, and none may take the fixed default 8470.
os.environ["DTP_API_LISTEN"] = "127.0.0.1:0"

#: The API's fixed default port (`api.listen`).
DEFAULT_API_PORT = 8470


@pytest.fixture(scope="session", autouse=True)
def _hold_the_default_api_port() -> Iterator[None]:
    """Hold 127.0.0.1:8470 for the whole run, so a test whose engine would bind the
    fixed default fails every time instead of only when something else holds it (an
    operator's console on the same machine, or two such tests at once)."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", DEFAULT_API_PORT))
        holder.listen()
    except OSError:
        holder.close()  # already held by someone else: those tests fail anyway
        yield
        return
    try:
        yield
    finally:
        holder.close()
