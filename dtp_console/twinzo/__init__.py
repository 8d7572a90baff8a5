"""twinzo: the API client (auth, token cache, localization) and the loopback sandbox server."""

from __future__ import annotations

__all__: list[str] = []
