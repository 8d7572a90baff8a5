"""Console screens; each screen's `.tcss` lives beside it."""

from __future__ import annotations

__all__: list[str] = []
