"""Development helpers shared by `tests/` and `bench/`: local servers, records, seeded engines.

Not shipped with dtp_console (the wheel packages `dtp_console*` only) and never
importing `tests`: a benchmark runs with this package and the code under test on
the path, without the test suite. `ports` (free loopback ports), `pgcluster` (a
private PostgreSQL), `postlog` (who posted what to the sandbox), `seeded` and
`seeded_twins` (the deterministic engine of the UI snapshots and the UI bench).
"""

from __future__ import annotations

__all__: list[str] = []
