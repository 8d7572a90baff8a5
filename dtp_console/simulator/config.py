"""Simulator settings (imported by the config model; pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PlantSimulatorConfig", "SimulatorConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class PlantSimulatorConfig(_Model):
    """Simulated robots of one plant."""

    enabled: bool = True
    """Run this plant's simulated fleet when the console runs."""
    robots: int = Field(default=4, ge=0, le=10_000)
    """How many robots (ids come from the device map first, then invented ones)."""
    rate_hz: float = Field(default=1.0, gt=0)
    """Messages per second per robot."""
    seed: int = 1
    """Random seed: the same seed repeats the same run."""


class SimulatorConfig(_Model):
    """Simulator-wide settings."""

    enabled: bool = False
    """Run the simulated fleets and twin generators inside the console."""
