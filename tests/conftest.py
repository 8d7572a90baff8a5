"""Shared test setup."""

from __future__ import annotations

import os

# Snapshots and colour assertions break under NO_COLOR; tests own their environment.
os.environ.pop("NO_COLOR", None)
# Engines started by tests (in-process, and subprocesses, which inherit this) serve the API
# on a free port: many run at once, and none may take the fixed default 8470.
os.environ["DTP_API_LISTEN"] = "127.0.0.1:0"
