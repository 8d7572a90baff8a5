"""Development helpers shared by `tests/` and `bench/`: local servers and what they record.

Not shipped with dtp_console (the wheel packages `dtp_console*` only) and never
importing `tests`: a benchmark runs with this package and the code under test on
the path, without the test suite.
"""

from __future__ import annotations

__all__: list[str] = []
