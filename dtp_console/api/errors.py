"""Errors of the API's lifetime (stdlib only: the CLI reads them without aiohttp)."""

from __future__ import annotations

__all__ = ["ApiBindError"]


class ApiBindError(Exception):
    """The API could not bind `api.listen` (in use, not permitted, no such address)."""
