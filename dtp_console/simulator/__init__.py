"""Simulated AMR fleets, twin generators and the embedded demo broker.

Modules: `config` (settings, imported by the config model), `routes` (the
aisle grid), `amr` (robots and `AmrFleet`), `payloads` (vendor formats and the
inverse affine), `faults` (the fault mix), `generators` (lift, energy/HVAC,
room sensor), `broker` (`EmbeddedBroker`), `runner` (`run_simulator`). Nothing
is imported here, so loading the config stays cheap and free of cycles.
"""

from __future__ import annotations

__all__: list[str] = []
