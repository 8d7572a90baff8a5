"""The platform's stores: one adapter per backend, embedded defaults, spool, health, check."""

from __future__ import annotations

__all__: list[str] = []
