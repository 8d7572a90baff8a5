"""Hypothesis profiles for the fuzz suite.

`ci` is derandomized so a CI run is repeatable (the same examples every time);
`dev` draws new examples each run, to find what CI has not. Neither keeps an
example database, so nothing is written into the work tree. Choose one with
`HYPOTHESIS_PROFILE=ci|dev`; by default CI (`CI` set) gets `ci`, a developer `dev`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Examples take well under a millisecond, but a 1 MB payload on a slow CI machine
# must not turn into a flaky DeadlineExceeded.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=_SLOW_IS_FINE
)
settings.register_profile("dev", database=None, deadline=None, suppress_health_check=_SLOW_IS_FINE)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
