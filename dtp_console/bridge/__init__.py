"""The plant bridge: MQTT source → parse → device map → affine → movement → outbox → twinzo."""

from __future__ import annotations

__all__: list[str] = []
