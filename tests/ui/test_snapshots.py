"""Snapshots of the console's screens from a seeded, stepped engine on a fixed clock.

Regenerate after an intended change: `pytest tests/ui/test_snapshots.py --snapshot-update`,
then look at the pictures (`scripts/screenshots.py`) before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.ui.harness import SCREENS, make_app, prepare

SnapCompare = Callable[..., bool]


@pytest.mark.parametrize("name", list(SCREENS))
def test_screen(snap_compare: SnapCompare, tmp_path: Path, name: str) -> None:
    shot = SCREENS[name]
    app = make_app(tmp_path)
    assert snap_compare(app, terminal_size=shot.size, run_before=partial(prepare, shot=shot))
