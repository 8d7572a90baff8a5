"""The one atomic-file writer: whole content or the old one, no temporary left behind."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from dtp_console.atomic import write_bytes_atomic, write_json_atomic

PACKAGE = Path(__file__).resolve().parents[2] / "dtp_console"


def test_replaces_the_content_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "stats.json"
    write_json_atomic(target, {"ok": True, "name": "Hala Ä"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"ok": True, "name": "Hala Ä"}
    write_bytes_atomic(target, b"\x00\xffnew")
    assert target.read_bytes() == b"\x00\xffnew"
    assert sorted(p.name for p in target.parent.iterdir()) == ["stats.json"]


def test_mode_is_set_else_private(tmp_path: Path) -> None:
    private, shared = tmp_path / "private", tmp_path / "shared"
    write_bytes_atomic(private, b"x")
    write_bytes_atomic(shared, b"x", mode=0o644)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "kept.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_json_atomic(target, {"not json": object()})
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "text, not bytes")  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_an_unwritable_folder_is_an_os_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            write_bytes_atomic(folder / "x", b"x")
    finally:
        folder.chmod(0o700)


def test_no_other_module_renames_files_into_place() -> None:
    """One writer: `os.replace` / `Path.replace` / `os.rename` appear only in `atomic.py`."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "atomic.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"replace", "rename"}:
                owner = ast.unparse(node.value)
                # `str.replace` is everywhere; a rename goes through `os.` or a path.
                if owner == "os" or owner.endswith(("tmp", "temporary", "path")):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
