"""The generated configuration reference matches the model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_doc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_demo_config_loads() -> None:
    from dtp_console.config import load_config

    config = load_config(ROOT / "config" / "console.yaml", environ={})
    assert [p.name for p in config.plants] == ["Old Plant", "HiTech Plant", "VDA Plant"]
    assert config.sandbox.enabled
    assert all(p.broker.embedded for p in config.plants)
