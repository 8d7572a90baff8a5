"""`dtp-console registry …` end to end on a temporary config, twins folder and SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dtp_console.cli import main


@pytest.fixture
def root(tmp_path: Path) -> Path:
    twins = tmp_path / "twins"
    for folder, body in {
        "lift": '"@id": dt:Lift_001\nname: Goods lift\nmetadata:\n  status: active\n',
        "fleet": (
            '"@id": dt:Fleet_001\nname: AMR fleet\ntenant: plant-a\n'
            "dependencies:\n  static: [dt:Lift_001, dt:Ghost_001]\n"
        ),
    }.items():
        (twins / folder).mkdir(parents=True)
        (twins / folder / "twin.yaml").write_text(body, encoding="utf-8")
    return twins


@pytest.fixture
def config(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "console.yaml"
    path.write_text(
        f"registry:\n  twins_root: {root}\n  sqlite_path: {tmp_path / 'reg.sqlite3'}\n",
        encoding="utf-8",
    )
    return path


def _run(config: Path, *args: str) -> int:
    return main(["registry", "-c", str(config), *args])


def test_scan_list_show(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(config, "scan") == 0
    out, err = capsys.readouterr()
    assert "2 files: 2 new, 0 updated, 0 unchanged, 0 deprecated, 0 problems" in out
    assert "WARN dt:Fleet_001: depends on unknown twins: dt:Ghost_001" in err

    assert _run(config, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "TENANT", "STATUS", "API", "NOTE"]
    header = ["ID", "NAME", "TENANT", "STATUS", "API", "NOTE"]
    starts = [lines[0].index(word) for word in header]
    expected = [
        ["dt:Fleet_001", "AMR fleet", "plant-a", "instantiated", "-", "unknown deps: dt:Ghost_001"],
        ["dt:Lift_001", "Goods lift", "demo", "active", "-"],
    ]
    for line, cells in zip(lines[1:], expected, strict=True):
        for start, cell in zip(starts, cells, strict=False):
            assert line[start:].startswith(cell), (line, cell)  # every column aligned

    assert _run(config, "list", "--tenant", "plant-a", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in listed] == ["dt:Fleet_001"]
    assert listed[0]["unknown_dependencies"] == ["dt:Ghost_001"]

    assert _run(config, "list", "--status", "active") == 0
    out = capsys.readouterr().out
    assert "dt:Lift_001" in out
    assert "dt:Fleet_001" not in out

    assert _run(config, "show", "dt:Lift_001", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "active"
    assert [h["to_status"] for h in shown["history"]] == ["active"]

    assert _run(config, "show", "dt:Lift_001") == 0
    out = capsys.readouterr().out
    assert "status:       active" in out
    assert "(new) → active" in out


def test_scan_exits_non_zero_after_registering_the_good_files(
    config: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = root / "broken" / "twin.yaml"
    bad.parent.mkdir()
    bad.write_text("interfaces:\n  data_streams: [not-a-stream]\n", encoding="utf-8")
    assert _run(config, "scan") == 1
    out, err = capsys.readouterr()
    assert "ERROR " in err
    assert "broken/twin.yaml: interfaces.data_streams: " in err
    assert "2 new" in out
    assert _run(config, "list", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_deprecate_activate_delete(
    config: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "scan") == 0
    capsys.readouterr()
    assert _run(config, "deprecate", "dt:Lift_001") == 0
    out = capsys.readouterr().out
    assert "dt:Lift_001: deprecated" in out
    assert "still exists" in out
    assert _run(config, "activate", "dt:Lift_001") == 0
    assert "dt:Lift_001: active" in capsys.readouterr().out
    assert _run(config, "delete", "dt:Fleet_001") == 0
    assert "dt:Fleet_001: removed" in capsys.readouterr().out
    assert _run(config, "show", "dt:Fleet_001") == 1
    assert "no twin 'dt:Fleet_001' is registered" in capsys.readouterr().err


def test_illegal_or_unknown_changes_fail_clearly(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "deprecate", "dt:Nope") == 1
    assert "registry: no twin 'dt:Nope' is registered" in capsys.readouterr().err


def test_root_override_and_empty_listing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(config, "scan", "--root", str(empty)) == 0
    assert "0 files" in capsys.readouterr().out
    assert _run(config, "list") == 0
    assert capsys.readouterr().out.strip() == "no twins registered"
    assert _run(config, "services") == 0
    assert capsys.readouterr().out.strip() == "no services registered"


def test_registry_commands_do_not_import_textual() -> None:
    code = (
        "import sys\n"
        "import dtp_console.cli.registry, dtp_console.registry.service, "
        "dtp_console.registry.watch, dtp_console.registry.postgres_repo\n"
        "assert 'textual' not in sys.modules, 'textual imported'\n"
        "import dtp_console.registry.config\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_import_of_registry_settings_stays_light() -> None:
    # The config model imports it on every start: pydantic and the stdlib only.
    code = (
        "import sys\n"
        "import dtp_console\n"
        "before = set(sys.modules)\n"
        "import dtp_console.registry.config\n"
        "allowed = set(sys.stdlib_module_names) | {'dtp_console', 'pydantic', 'pydantic_core',\n"
        "    'typing_extensions', 'annotated_types', 'typing_inspection'}\n"
        "added = {m.split('.')[0] for m in set(sys.modules) - before if m[0] != '_'} - allowed\n"
        "assert not added, added\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
