"""Errors the registry raises; each names the twin or service and says what to do."""

from __future__ import annotations

__all__ = [
    "IllegalTransitionError",
    "RegistryError",
    "ServiceNotFoundError",
    "TwinNotFoundError",
]


class RegistryError(Exception):
    """Base of every registry error."""


class TwinNotFoundError(RegistryError, LookupError):
    """No twin with that id is registered."""

    def __init__(self, twin_id: str) -> None:
        self.twin_id = twin_id
        super().__init__(f"no twin {twin_id!r} is registered")


class ServiceNotFoundError(RegistryError, LookupError):
    """No service with that id is registered."""

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        super().__init__(f"no service {service_id!r} is registered")


class IllegalTransitionError(RegistryError, ValueError):
    """A lifecycle status change the lifecycle does not allow."""

    def __init__(self, twin_id: str, current: str, target: str, allowed: list[str]) -> None:
        self.twin_id = twin_id
        self.current = current
        self.target = target
        self.allowed = allowed
        hint = f"allowed from {current}: {', '.join(allowed)}" if allowed else "it is final"
        super().__init__(f"twin {twin_id!r} cannot go from {current} to {target} ({hint})")
