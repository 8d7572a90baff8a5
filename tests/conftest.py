"""Shared test setup."""

from __future__ import annotations

import os

# Snapshots and colour assertions break under NO_COLOR; tests own their environment.
os.environ.pop("NO_COLOR", None)
