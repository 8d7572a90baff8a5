"""The console's HTTP API: registry routes, the live change stream, tokens, health.

Imports are lazy so that `dtp_console.api.config` (read by the config model on
every start) does not import aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dtp_console.api.config import ApiConfig, ApiToken
    from dtp_console.api.errors import ApiBindError
    from dtp_console.api.server import ApiServer
    from dtp_console.api.stream import StreamHub
    from dtp_console.api.tokens import Principal, hash_token, new_token

__all__ = [
    "ApiBindError",
    "ApiConfig",
    "ApiServer",
    "ApiToken",
    "Principal",
    "StreamHub",
    "hash_token",
    "new_token",
]

_HOME = {
    "ApiConfig": "config",
    "ApiToken": "config",
    "ApiBindError": "errors",
    "ApiServer": "server",
    "StreamHub": "stream",
    "Principal": "tokens",
    "hash_token": "tokens",
    "new_token": "tokens",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
