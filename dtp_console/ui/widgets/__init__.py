"""Reusable console widgets; each carries its own `DEFAULT_CSS`."""

from __future__ import annotations

__all__: list[str] = []
