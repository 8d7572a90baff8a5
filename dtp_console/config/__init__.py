"""Configuration: the model tree, loading with env interpolation, legacy files."""

from __future__ import annotations

from dtp_console.config.loader import ConfigError, load_config, masked_dump
from dtp_console.config.model import (
    Affine,
    Bounds,
    BrokerConfig,
    ConsoleConfig,
    PlantConfig,
    TwinzoConfig,
)

__all__ = [
    "Affine",
    "Bounds",
    "BrokerConfig",
    "ConfigError",
    "ConsoleConfig",
    "PlantConfig",
    "TwinzoConfig",
    "load_config",
    "masked_dump",
]
