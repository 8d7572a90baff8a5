"""The twin registry: `twin.yaml` discovery and watch, lifecycle, services, change events.

Imports are lazy so that `dtp_console.registry.config` (read by the config
model on every start) costs no more than pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dtp_console.registry.backends import open_repository
    from dtp_console.registry.config import RegistryConfig
    from dtp_console.registry.discovery import Problem, ScanResult, TwinCatalog, scan
    from dtp_console.registry.errors import (
        IllegalTransitionError,
        RegistryError,
        ServiceNotFoundError,
        TwinNotFoundError,
    )
    from dtp_console.registry.lifecycle import TwinStatus
    from dtp_console.registry.model import (
        ServiceRecord,
        ServiceSpec,
        TwinRecord,
        TwinSpec,
    )
    from dtp_console.registry.repository import TwinRepository
    from dtp_console.registry.runner import open_registry, run_registry
    from dtp_console.registry.service import RegisterResult, RegistryService, SyncReport
    from dtp_console.registry.watch import TwinWatcher

__all__ = [
    "IllegalTransitionError",
    "Problem",
    "RegisterResult",
    "RegistryConfig",
    "RegistryError",
    "RegistryService",
    "ScanResult",
    "ServiceNotFoundError",
    "ServiceRecord",
    "ServiceSpec",
    "SyncReport",
    "TwinCatalog",
    "TwinNotFoundError",
    "TwinRecord",
    "TwinRepository",
    "TwinSpec",
    "TwinStatus",
    "TwinWatcher",
    "open_registry",
    "open_repository",
    "run_registry",
    "scan",
]

_HOME = {
    "RegistryConfig": "config",
    "Problem": "discovery",
    "ScanResult": "discovery",
    "TwinCatalog": "discovery",
    "scan": "discovery",
    "IllegalTransitionError": "errors",
    "RegistryError": "errors",
    "ServiceNotFoundError": "errors",
    "TwinNotFoundError": "errors",
    "TwinStatus": "lifecycle",
    "ServiceRecord": "model",
    "ServiceSpec": "model",
    "TwinRecord": "model",
    "TwinSpec": "model",
    "TwinRepository": "repository",
    "open_repository": "backends",
    "open_registry": "runner",
    "run_registry": "runner",
    "RegisterResult": "service",
    "RegistryService": "service",
    "SyncReport": "service",
    "TwinWatcher": "watch",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
