"""`dtp-console attach`: the token only from a file or the environment, refusals exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dtp_console.cli import main
from dtp_console.cli.attach import default_url

SECRET = "attach-cli-placeholder-token"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["attach", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_no_token_is_exit_2_naming_both_ways(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DTP_API_TOKEN", raising=False)
    code, text = _run(capsys, "http://127.0.0.1:9")
    assert code == 2
    assert "--token-file" in text
    assert "DTP_API_TOKEN" in text


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_a_token_is_not_an_argument_and_is_never_echoed(
    capsys: pytest.CaptureFixture[str], form: str
) -> None:
    # Found: argparse read `--token X` as an abbreviation of `--token-file X`, and the
    # "cannot read it" error then printed the token.
    args = ["--token", SECRET] if form == "separate" else [f"--token={SECRET}"]
    with pytest.raises(SystemExit) as refused:
        main(["attach", "http://127.0.0.1:9", *args])
    assert refused.value.code == 2
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err


@pytest.mark.parametrize("content", [None, b"", b"x" * 5000, b"two words\n"])
def test_an_unusable_token_file_is_exit_2_and_never_echoed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    code, text = _run(capsys, "http://127.0.0.1:9", "--token-file", str(path))
    assert code == 2
    assert str(path) in text or "token" in text
    assert "two words" not in text


def test_an_unreachable_service_is_exit_2_and_the_token_is_never_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n", encoding="utf-8")
    code, text = _run(capsys, "http://127.0.0.1:9", "--token-file", str(path))
    assert code == 2
    assert "cannot attach to http://127.0.0.1:9" in text
    assert SECRET not in text


def test_plaintext_to_another_host_warns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DTP_API_TOKEN", raising=False)
    _, text = _run(capsys, "http://192.0.2.10:8470")
    assert "WARN 192.0.2.10 is not loopback" in text
    _, text = _run(capsys, "http://localhost:8470")
    assert "WARN" not in text


def test_credentials_in_the_url_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(capsys, f"http://ops:{SECRET}@127.0.0.1:9")
    assert code == 2
    assert "must not carry credentials" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    ("api", "url"),
    [
        ("api: {listen: '127.0.0.1:9123'}", "http://127.0.0.1:9123"),
        ("api: {listen: '0.0.0.0:9123', allow_plaintext_remote: true}", "http://127.0.0.1:9123"),
        ("api: {listen: '[::1]:9123'}", "http://[::1]:9123"),
    ],
)
def test_the_default_url_is_the_local_configs_api_listen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: str, url: str
) -> None:
    monkeypatch.delenv("DTP_API_LISTEN", raising=False)
    path = tmp_path / "console.yaml"
    twinzo = "twinzo: {client: demo, password: change-me, api_key: change-me}\n"
    path.write_text(twinzo + api + "\nplants: []\n", encoding="utf-8")
    assert default_url(argparse.Namespace(config=str(path))) == url
