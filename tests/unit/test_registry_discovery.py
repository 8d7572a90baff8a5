"""Discovery: the recursive scan, per-file problems, duplicate ids, incremental updates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dtp_console.registry.discovery import TwinCatalog, parse_twin_file, scan

REPO_TWINS = Path(__file__).resolve().parents[2] / "twins"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _twin(root: Path, folder: str, twin_id: str | None = None, name: str = "twin.yaml") -> Path:
    body = f'"@id": {twin_id}\n' if twin_id else ""
    return _write(root / folder / name, body + "metadata:\n  domain: [test]\n")


#: Nine lines that expand to a billion strings when walked.
_ALIAS_BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 10)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_recursive_scan_finds_all_three_file_names(tmp_path: Path) -> None:
    _twin(tmp_path, "a", "dt:A_001")
    _twin(tmp_path, "deep/er/b", "dt:B_001", name="twin.yml")
    _write(tmp_path / "c" / "twin.json", json.dumps({"@id": "dt:C_001", "tenant": "t1"}))
    _write(tmp_path / "d" / "not-a-twin.yaml", "x: 1\n")
    result = scan(tmp_path)
    assert result.ok
    assert result.files == 3
    assert set(result.twins) == {"dt:A_001", "dt:B_001", "dt:C_001"}
    assert result.twins["dt:C_001"].tenant == "t1"
    assert result.sources["dt:B_001"] == tmp_path / "deep/er/b/twin.yml"


def test_hidden_and_vendored_folders_are_skipped(tmp_path: Path) -> None:
    _twin(tmp_path, ".git/x", "dt:Hidden_001")
    _twin(tmp_path, "ui/node_modules/y", "dt:Vendored_001")
    _twin(tmp_path, "real", "dt:Real_001")
    assert set(scan(tmp_path).twins) == {"dt:Real_001"}


@pytest.mark.parametrize(
    ("name", "content", "field", "words"),
    [
        ("twin.yaml", "name: [unclosed\n", "<file>", "line 2, column 1: invalid YAML"),
        ("twin.yaml", "@id: dt:X\n", "<file>", 'quote keys that start with @: "@id":'),
        ("twin.yaml", "", "<file>", "empty"),
        ("twin.yaml", "- a\n- b\n", "<file>", "mapping, not list"),
        ("twin.json", '{"@id": "dt:X",}', "<file>", "invalid JSON"),
        ("twin.yaml", _ALIAS_BOMB, "<file>", "more than 100,000 values (YAML aliases"),
        ("twin.yaml", "a: " + "[" * 5000 + "]" * 5000, "<file>", "nested too deeply"),
        (
            "twin.yaml",
            "interfaces:\n  data_streams: [nope]\n",
            "interfaces.data_streams",
            "PROTOCOL",
        ),
        ("twin.yaml", "dependencies:\n  static: 5\n", "dependencies.static", "list"),
        ("twin.yaml", "metadata:\n  status: retired\n", "metadata.status", "'active'"),
        ("twin.yaml", "tenant: 3\n", "tenant", "string"),
        ("twin.yaml", "colour: red\n", "colour", "Extra inputs"),
    ],
)
def test_a_bad_file_reports_path_field_and_reason(
    tmp_path: Path, name: str, content: str, field: str, words: str
) -> None:
    bad = _write(tmp_path / "bad" / name, content)
    parsed = parse_twin_file(bad, {})
    assert parsed.twin is None
    assert [p.path for p in parsed.problems] == [bad]
    assert [p.field for p in parsed.problems] == [field]
    assert words in parsed.problems[0].reason
    assert str(parsed.problems[0]).startswith(f"{bad}: {field}: ")


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    _twin(tmp_path, "a", "dt:A_001")
    bad = _write(tmp_path / "b" / "twin.yaml", "metadata: {domain: [x]\n")
    _twin(tmp_path, "c", "dt:C_001")
    result = scan(tmp_path)
    assert set(result.twins) == {"dt:A_001", "dt:C_001"}
    assert not result.ok
    assert [p.path for p in result.errors] == [bad]
    assert result.invalid == {bad}


def test_duplicate_id_first_in_path_order_wins_and_the_other_is_named(tmp_path: Path) -> None:
    # "a-b" < "a/…" as strings, but folder by folder "a" comes before "a-b".
    loser = _twin(tmp_path, "a-b", "dt:Same_001")
    winner = _twin(tmp_path, "a/inner", "dt:Same_001")
    result = scan(tmp_path)
    assert result.sources["dt:Same_001"] == winner
    [problem] = result.problems
    assert problem.path == loser
    assert problem.field == "@id"
    assert str(winner) in problem.reason
    assert "wins" in problem.reason
    assert problem.severity == "error"
    assert not result.ok
    assert loser not in result.invalid  # its id is known: it is not "broken"


def test_two_files_in_one_folder_without_ids_collide(tmp_path: Path) -> None:
    _twin(tmp_path, "lift", name="twin.yaml")
    _write(tmp_path / "lift" / "twin.json", "{}")
    result = scan(tmp_path)
    assert result.sources["dt:Lift_001"] == tmp_path / "lift" / "twin.json"  # .json < .yaml
    assert [p.path.name for p in result.errors] == ["twin.yaml"]


def test_broken_compose_is_a_warning_and_the_twin_still_registers(tmp_path: Path) -> None:
    _twin(tmp_path, "lift", "dt:Lift_001")
    compose = _write(tmp_path / "lift" / "compose.yaml", "services: [\n")
    result = scan(tmp_path)
    assert result.ok
    assert result.twins["dt:Lift_001"].interfaces.api is None
    [warning] = result.problems
    assert (warning.path, warning.severity) == (compose, "warning")
    assert "interfaces.api left unset" in warning.reason


def test_missing_root_is_one_problem(tmp_path: Path) -> None:
    result = scan(tmp_path / "nope")
    assert result.twins == {}
    assert [p.field for p in result.errors] == ["<root>"]


def test_catalog_update_rereads_only_what_changed(tmp_path: Path) -> None:
    a = _twin(tmp_path, "a", "dt:A_001")
    _twin(tmp_path, "b/x", "dt:B_001")
    catalog = TwinCatalog(tmp_path)
    assert set(catalog.scan().twins) == {"dt:A_001", "dt:B_001"}

    _write(a, '"@id": dt:A_001\nname: renamed\n')
    _twin(tmp_path, "c", "dt:C_001")
    result = catalog.update([a, tmp_path / "c" / "twin.yaml"])
    assert result.twins["dt:A_001"].name == "renamed"
    assert "dt:C_001" in result.twins

    shutil.rmtree(tmp_path / "b")  # a folder removed: only the folder is reported
    assert "dt:B_001" not in catalog.update([tmp_path / "b"]).twins

    moved = tmp_path / "incoming"
    _twin(tmp_path / "elsewhere", "d", "dt:D_001")
    (tmp_path / "elsewhere").rename(moved)  # a folder moved in
    assert "dt:D_001" in catalog.update([moved]).twins

    a.unlink()
    assert "dt:A_001" not in catalog.update([a]).twins


def test_catalog_compose_change_reinfers_the_api(tmp_path: Path) -> None:
    _twin(tmp_path, "lift", "dt:Lift_001")
    catalog = TwinCatalog(tmp_path)
    assert catalog.scan().twins["dt:Lift_001"].interfaces.api is None
    compose = _write(
        tmp_path / "lift" / "compose.yaml", "services:\n  ui:\n    ports: ['8181:80']\n"
    )
    assert catalog.update([compose]).twins["dt:Lift_001"].interfaces.api == "http://localhost:8181"


def test_shipped_example_twins_are_valid_and_linked() -> None:
    result = scan(REPO_TWINS)
    assert result.problems == ()
    twins = result.twins
    assert {"dt:Lift_001", "dt:EnergyHvac_001", "dt:Room1_001"} <= set(twins)
    streams = {i: t.interfaces.data_streams for i, t in twins.items()}
    fleets = {i for i, s in streams.items() if any(x.startswith("MQTT:ati_fm/") for x in s)}
    assert [streams[i] for i in fleets] == [["MQTT:ati_fm/sherpa/status"]]
    hitech = [i for i, s in streams.items() if "MQTT:hitech/amr/+/position" in s]
    assert len(hitech) == 1
    for fleet in [*fleets, *hitech]:
        deps = twins[fleet].dependencies.all()
        assert "dt:Lift_001" in deps
        assert set(deps) <= set(twins), "fleet dependencies name shipped twins"
    assert twins["dt:Lift_001"].interfaces.api == "http://localhost:8081"  # from compose.yaml
    assert twins["dt:Room1_001"].tenant == "demo"  # no tenant, no @id in the file
    assert "MQTT:dtp/sensors/room1/temp" in twins["dt:Room1_001"].interfaces.data_streams
