"""Twin files the registry must not trust (issue 13 concerns): symlinks leading out of
`twins/`, huge files, duplicate keys, and secrets under unknown keys."""

from __future__ import annotations

import os
from pathlib import Path

from dtp_console.registry.discovery import MAX_TWIN_FILE_BYTES, TwinCatalog, parse_twin_file

TWIN = '"@id": dtp:twin:lift\nmetadata:\n  domain: [test]\n'


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _reasons(catalog_root: Path) -> list[str]:
    return [str(p) for p in TwinCatalog(catalog_root).scan().problems]


def test_a_symlinked_twin_file_outside_the_root_is_refused_with_why(tmp_path: Path) -> None:
    secret = _write(tmp_path / "elsewhere" / "secret.yaml", TWIN)
    root = tmp_path / "twins"
    (root / "lift").mkdir(parents=True)
    (root / "lift" / "twin.yaml").symlink_to(secret)
    result = TwinCatalog(root).scan()
    assert result.twins == {}
    (problem,) = result.problems
    assert problem.severity == "error"
    assert "outside the twins folder" in problem.reason
    assert str(secret) in problem.reason


def test_a_symlinked_folder_outside_the_root_is_refused_on_update(tmp_path: Path) -> None:
    _write(tmp_path / "elsewhere" / "twin.yaml", TWIN)
    root = tmp_path / "twins"
    root.mkdir()
    (root / "lift").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    catalog = TwinCatalog(root)
    catalog.scan()
    result = catalog.update([root / "lift" / "twin.yaml"])
    assert result.twins == {}
    assert any("outside the twins folder" in p.reason for p in result.problems)


def test_a_symlink_inside_the_root_is_still_followed(tmp_path: Path) -> None:
    root = tmp_path / "twins"
    real = _write(root / "shared" / "lift.yaml", TWIN)
    (root / "lift").mkdir()
    (root / "lift" / "twin.yaml").symlink_to(real)
    assert list(TwinCatalog(root).scan().twins) == ["dtp:twin:lift"]


def test_a_twin_file_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    huge = _write(tmp_path / "twins" / "big" / "twin.yaml", TWIN)
    with huge.open("ab") as stream:
        stream.truncate(MAX_TWIN_FILE_BYTES + 1)  # sparse: a size to check, not 1 MiB to write
    parsed = parse_twin_file(huge, {})
    assert parsed.twin is None
    (problem,) = parsed.problems
    assert f"{MAX_TWIN_FILE_BYTES + 1:,} bytes, more than the {MAX_TWIN_FILE_BYTES:,}" in str(
        problem
    )


def test_a_twin_file_at_the_cap_is_read(tmp_path: Path) -> None:
    text = TWIN + "#" * (MAX_TWIN_FILE_BYTES - len(TWIN) - 1) + "\n"
    assert len(text) == MAX_TWIN_FILE_BYTES
    path = _write(tmp_path / "twins" / "big" / "twin.yaml", text)
    assert parse_twin_file(path, {}).twin is not None


def test_a_fifo_named_twin_yaml_does_not_hang_the_scan(tmp_path: Path) -> None:
    root = tmp_path / "twins"
    (root / "pipe").mkdir(parents=True)
    os.mkfifo(root / "pipe" / "twin.yaml")
    assert any("not a regular file" in r for r in _reasons(root))


def test_a_duplicate_key_in_twin_yaml_is_refused_with_key_and_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "twins" / "lift" / "twin.yaml", TWIN + "metadata:\n  domain: [x]\n")
    (problem,) = parse_twin_file(bad, {}).problems
    assert "line 4, column 1: invalid YAML: duplicate key 'metadata' (first at line 2)" in str(
        problem
    )


def test_an_unknown_key_is_named_but_its_value_not_echoed(tmp_path: Path) -> None:
    bad = _write(tmp_path / "twins" / "lift" / "twin.yaml", TWIN + "pasword: hunter2-secret\n")
    problems = [str(p) for p in parse_twin_file(bad, {}).problems]
    assert any("pasword" in p for p in problems)
    assert not any("hunter2-secret" in p for p in problems)
