"""User info in URL fields is masked by `config show`, the banner and the stats JSON.

A `twinzo.base_url` (or S3 endpoint) holding `user:password@` is legal to load;
every place that shows it prints `***@` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mosquitto import free_port

pytestmark = pytest.mark.integration

SECRET = "Url-Pw-Qq91"


def _config(tmp: Path, base_url: str) -> Path:
    path = tmp / "console.yaml"
    path.write_text(
        f"""
twinzo:
  client: demo
  password: change-me
  api_key: change-me
  base_url: "{base_url}"
sandbox: {{enabled: false}}
registry: {{enabled: false}}
simulator: {{enabled: false}}
stores:
  enabled: true
  sqlite_path: {tmp}/platform.sqlite3
  blob_dir: {tmp}/blobs
  s3: {{endpoint: "http://minio:{SECRET}@127.0.0.1:{free_port()}", secure: false}}
logging: {{stats_interval_s: 0.5}}
plants: []
""",
        encoding="utf-8",
    )
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINZO_")}
    return subprocess.run(
        [sys.executable, "-m", "dtp_console", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("as_json", [False, True], ids=["yaml", "json"])
def test_config_show_masks_user_info(tmp_path: Path, as_json: bool) -> None:
    config = _config(tmp_path, f"https://tz:{SECRET}@twinzo.example.com")
    result = _cli(config, "config", "show", *(["--json"] if as_json else []))
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "https://***@twinzo.example.com" in result.stdout
    if as_json:
        assert json.loads(result.stdout)["twinzo"]["base_url"] == "https://***@twinzo.example.com"


def test_the_banner_and_the_stats_json_mask_user_info(tmp_path: Path) -> None:
    config = _config(tmp_path, f"https://tz:{SECRET}@127.0.0.1:{free_port()}")
    stats = tmp_path / "stats.json"
    result = _cli(config, "run", "--no-ui", "--for", "1.5s", "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    banner = [
        line for line in result.stdout.splitlines() if "dtp-console" in line and "twinzo" in line
    ]
    assert banner, result.stdout
    assert "https://***@127.0.0.1" in banner[0]
    assert SECRET not in result.stdout + result.stderr
    assert SECRET not in stats.read_text()
    assert json.loads(stats.read_text())["twinzo_url"].startswith("https://***@127.0.0.1")


def test_plaintext_twinzo_to_a_remote_host_warns_loudly(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1: nothing answers; the warning is printed before any request.
    config = _config(tmp_path, "http://192.0.2.10:8080")
    result = _cli(config, "run", "--no-ui", "--for", "1s")
    assert result.returncode == 0, result.stderr
    assert "WARN twinzo over plaintext http:// (http://192.0.2.10:8080)" in result.stdout


def test_a_twinzo_ca_file_that_cannot_work_is_refused_at_load(tmp_path: Path) -> None:
    config = _config(tmp_path, "https://twinzo.example.com")
    (tmp_path / "not-a-ca.pem").write_text("hello", encoding="utf-8")
    for ca, reason in (("missing.pem", "CA file not found"), ("not-a-ca.pem", "not a readable")):
        text = config.read_text(encoding="utf-8").replace(
            "  api_key: change-me\n", f"  api_key: change-me\n  ca_file: {tmp_path / ca}\n"
        )
        broken = tmp_path / f"broken-{ca}.yaml"
        broken.write_text(text, encoding="utf-8")
        result = _cli(broken, "config", "show")
        assert result.returncode == 2
        assert "twinzo.ca_file" in result.stderr
        assert reason in result.stderr
