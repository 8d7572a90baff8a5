"""Config files that tests write: as an operator keeps them, comments included."""

from __future__ import annotations

__all__ = ["OPERATOR_CONFIG"]

#: One plant on a broker at `{port}` (fill with `.format(port=...)`), the sandbox
#: as twinzo, and comments the config writer must keep.
OPERATOR_CONFIG = """\
# plant config kept by operators
twinzo: {{client: demo, password: change-me, api_key: change-me}}
sandbox: {{enabled: true}}
registry: {{enabled: false}}
stores: {{enabled: false}}
plants:
  - name: Old Plant
    format: ati_sherpa
    broker: {{host: 127.0.0.1, port: {port}}}
    device_map:
      ati_amr_001: tugger-05-old   # the first tugger
    twinzo: {{sector_id: 2}}
"""
