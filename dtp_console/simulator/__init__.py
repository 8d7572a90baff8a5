"""Simulated AMR fleets, twin generators and the embedded demo broker."""

from __future__ import annotations

__all__: list[str] = []
