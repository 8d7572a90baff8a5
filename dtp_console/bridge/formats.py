"""Which parser reads a plant's payloads: the one place that knows every format.

Apart from `parse` (the proprietary formats and the shared helpers) because the
VDA 5050 parser builds on those helpers: dispatching from `parse` would make the
two modules import each other.
"""

from __future__ import annotations

import functools

from dtp_console.bridge.parse import Parser, parse_ati, parse_generic, parse_hitech
from dtp_console.bridge.vda5050 import parse_vda5050
from dtp_console.config.model import PlantConfig

__all__ = ["parser_for"]


def parser_for(plant: PlantConfig) -> Parser:
    """The parser of a plant's payload format."""
    if plant.format == "vda5050":
        return functools.partial(parse_vda5050, plant=plant)
    if plant.format == "ati_sherpa":
        return parse_ati
    if plant.format == "hitech":
        return functools.partial(parse_hitech, unit=plant.timestamp_unit)
    return parse_generic(plant.generic, plant.timestamp_unit)
