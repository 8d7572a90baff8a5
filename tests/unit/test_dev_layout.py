"""Who may import whom outside the package: bench/ and devtools/ never import tests/,
and dtp_console never imports either (a benchmark runs without the test suite on the
path; the shipped package without both). Read with `ast`, nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _top_level_imports(path: Path) -> set[str]:
    """The top-level package of every absolute import in `path`, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _offenders(folder: str, forbidden: set[str]) -> list[str]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return [
        f"{path.relative_to(ROOT)}: {sorted(found)}"
        for path in files
        if (found := _top_level_imports(path) & forbidden)
    ]


def test_bench_and_devtools_do_not_import_the_tests() -> None:
    assert _offenders("bench", {"tests"}) == []
    assert _offenders("devtools", {"tests"}) == []


def test_the_package_imports_neither_devtools_nor_tests() -> None:
    assert _offenders("dtp_console", {"tests", "devtools", "bench"}) == []


def test_the_scan_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def later():\n    from tests.support import x\n", encoding="utf-8")
    assert _top_level_imports(module) == {"tests"}
