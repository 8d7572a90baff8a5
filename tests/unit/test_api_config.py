"""`api:` settings, tokens and `dtp-console api token create`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dtp_console.api.config import ApiConfig, ApiToken, parse_listen
from dtp_console.api.tokens import TokenTable, hash_token, new_token
from dtp_console.cli import main
from dtp_console.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
HASH = hash_token("test-token")


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "console.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8470", ("127.0.0.1", 8470)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_listen_parses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "8470",
        "127.0.0.1",
        ":8470",
        "::1:8470",
        "h:99999",
        "h:x",
        # `str.isdigit()` passes these; int() reads the fullwidth and Arabic ones.
        "127.0.0.1:\uff18\uff14\uff17\uff10",
        "127.0.0.1:\u0668\u0660",
        "127.0.0.1:\u00b2",
        "[::1]:\u00b2",
    ],
)
def test_bad_listen_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|0-65535"):
        parse_listen(text)


def test_a_remote_bind_without_tls_is_refused_at_load_naming_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "api: {listen: '0.0.0.0:8470'}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "api.listen: binding 0.0.0.0 (not loopback) without TLS" in str(caught.value)
    ok = _write(tmp_path, "api: {listen: '0.0.0.0:8470', allow_plaintext_remote: true}\n")
    assert load_config(ok, environ={}).api.allow_plaintext_remote
    off = _write(tmp_path, "api: {listen: '0.0.0.0:8470', enabled: false}\n")
    assert not load_config(off, environ={}).api.enabled


def test_the_cli_exits_2_on_a_remote_plaintext_bind(tmp_path: Path) -> None:
    path = _write(tmp_path, "api: {listen: '10.1.2.3:8470'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "dtp_console", "-c", str(path), "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 2
    assert "api.listen" in result.stderr


def test_a_token_pasted_as_its_hash_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "dtp_" + "s" * 43
    path = _write(tmp_path, f"api:\n  tokens:\n    - {{label: x, hash: {secret}, tenants: [a]}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    text = str(caught.value)
    assert "api.tokens[0].hash: must be sha256:<64 lowercase hex>" in text
    assert secret not in text


def test_duplicate_labels_and_tokens_are_refused() -> None:
    entry = {"label": "a", "hash": HASH, "tenants": ["t"]}
    with pytest.raises(ValueError, match=r"tokens\.1\.label") as caught:
        ApiConfig.model_validate({"tokens": [entry, entry]})
    assert "same token is listed twice" in str(caught.value)
    with pytest.raises(ValueError, match="tenants"):
        ApiToken.model_validate({**entry, "tenants": []})
    with pytest.raises(ValueError, match="label"):
        ApiToken.model_validate({**entry, "label": "two words"})


def test_dtp_api_listen_fills_listen_only_where_the_file_leaves_it(tmp_path: Path) -> None:
    env = {"DTP_API_LISTEN": "127.0.0.1:0"}
    assert load_config(_write(tmp_path, "{}\n"), environ=env).api.listen == "127.0.0.1:0"
    fixed = _write(tmp_path, "api: {listen: '127.0.0.1:9999'}\n")
    assert load_config(fixed, environ=env).api.listen == "127.0.0.1:9999"
    assert load_config(_write(tmp_path, "{}\n"), environ={}).api.listen == "127.0.0.1:8470"


def test_tokens_are_looked_up_by_hash() -> None:
    token = new_token()
    assert token.startswith("dtp_")
    assert len(token) > 40
    assert hash_token(token) != hash_token(new_token())
    table = TokenTable(
        [
            ApiToken(label="a", hash=hash_token(token), role="operator", tenants=["p"]),
            ApiToken(label="b", hash=HASH, role="viewer", tenants=["*"]),
        ]
    )
    found = table.lookup(token)
    assert found is not None
    assert (found.label, found.role, found.sees("p"), found.sees("q")) == (
        "a",
        "operator",
        True,
        False,
    )
    star = table.lookup("test-token")
    assert star is not None
    assert star.sees("anything")
    assert not star.can("operator")
    for wrong in ("", token[:-1], token + "x", "x" * 10_000, "\udcff"):
        assert table.lookup(wrong) is None


def test_token_create_prints_the_token_once_and_a_config_line_that_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "api",
            "token",
            "create",
            "--role",
            "operator",
            "--tenant",
            "plant-a",
            "--tenant",
            "*",
            "--label",
            "portal",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    token = out[1].strip()
    assert token.startswith("dtp_")
    line = out[3]
    assert token not in line
    path = _write(tmp_path, "api:\n  tokens:\n" + line.replace("  - ", "    - ", 1) + "\n")
    entry = load_config(path, environ={}).api.tokens[0]
    assert (entry.label, entry.role, entry.tenants) == ("portal", "operator", ["plant-a", "*"])
    assert entry.hash == hash_token(token)
    assert yaml.safe_load(line.strip()[2:])["hash"] == hash_token(token)
    assert sum(token in text for text in out) == 1


def test_token_create_refuses_a_bad_label(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["api", "token", "create", "--role", "viewer", "--tenant", "a", "--label", "a b"])
    assert code == 2
    err = capsys.readouterr()
    assert "label" in err.err
    assert "dtp_" not in err.out
