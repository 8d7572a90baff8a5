"""Configs that cannot work are refused at load (issue 13: FAIL 7 and its concerns).

Duplicate logins (in one plant and across plants on one branch), duplicate YAML
keys, plant names differing only in case, and where `.env` is read from.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dtp_console.cli import main
from dtp_console.config import ConfigError, load_config

HEAD = "twinzo: {client: demo, password: change-me, api_key: change-me}\nplants:\n"


def _plant(name: str, device_map: str, branch: str | None = None) -> str:
    twinzo = f"{{sector_id: 1, branch: {branch}}}" if branch else "{sector_id: 1}"
    return (
        f"  - name: {name}\n    format: hitech\n    device_map: {device_map}\n"
        f"    twinzo: {twinzo}\n"
    )


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _problem(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return str(info.value)


def test_two_vendor_ids_on_one_login_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + _plant("Hall A", "{amr-1: tugger-01, amr-2: tugger-01}"))
    text = _problem(path)
    assert "plants[0] (Hall A).device_map" in text
    assert "login 'tugger-01' is mapped from 'amr-1' and 'amr-2'" in text


def test_logins_differing_only_in_case_are_one_device(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + _plant("Hall A", "{amr-1: Tugger-01, amr-2: tugger-01}"))
    assert "is mapped from 'amr-1' and 'amr-2'" in _problem(path)


def test_one_login_in_two_plants_on_one_branch_is_refused(tmp_path: Path) -> None:
    text = HEAD + _plant("Hall A", "{amr-1: tugger-01}") + _plant("Hall B", "{x-9: tugger-01}")
    problem = _problem(_write(tmp_path, text))
    assert "plants[1] (Hall B).device_map: login 'tugger-01' (from 'x-9')" in problem
    assert "also mapped in plant 'Hall A' (from 'amr-1')" in problem


def test_one_login_in_two_plants_on_different_branches_is_allowed(tmp_path: Path) -> None:
    text = (
        HEAD
        + _plant("Hall A", "{amr-1: tugger-01}", branch="b-1")
        + _plant("Hall B", "{x-9: tugger-01}", branch="b-2")
    )
    config = load_config(_write(tmp_path, text), environ={})
    assert [p.device_map for p in config.plants] == [{"amr-1": "tugger-01"}, {"x-9": "tugger-01"}]


def test_a_duplicate_login_exits_2_naming_the_plant_and_login(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, HEAD + _plant("Hall A", "{amr-1: tugger-01, amr-2: tugger-01}"))
    with pytest.raises(SystemExit) as info:
        main(["-c", str(path), "config", "show"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "(Hall A).device_map" in err
    assert "'tugger-01'" in err


def test_a_duplicate_yaml_key_is_refused_with_key_and_lines(tmp_path: Path) -> None:
    text = (
        HEAD
        + "  - name: Hall A\n    format: hitech\n"
        + "    device_map: {amr-1: tugger-01}\n"
        + "    twinzo: {sector_id: 1}\n"
        + "    device_map: {amr-1: tugger-02}\n"
    )
    problem = _problem(_write(tmp_path, text))
    assert "line 7, column 5: invalid YAML: duplicate key 'device_map' (first at line 5)" in problem


def test_a_duplicate_key_in_a_flow_mapping_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + _plant("Hall A", "{amr-1: tugger-01, amr-1: tugger-02}"))
    assert "duplicate key 'amr-1'" in _problem(path)


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    text = (
        HEAD
        + "  - &hall {name: Hall A, format: hitech, twinzo: {sector_id: 1}}\n"
        + "  - {<<: *hall, name: Hall B}\n"
    )
    config = load_config(_write(tmp_path, text), environ={})
    assert [p.name for p in config.plants] == ["Hall A", "Hall B"]


def test_plant_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    text = HEAD + _plant("Hall A", "{}") + _plant("HALL a", "{}")
    assert "plant names 'Hall A' and 'HALL a' differ only in case" in _problem(
        _write(tmp_path, text)
    )


def test_dotenv_is_read_beside_the_config_and_in_cwd_not_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("HALL_LOGIN", raising=False)
    config_text = HEAD + _plant("Hall A", "{amr-1: '${HALL_LOGIN}'}")
    path = _write(tmp_path, config_text, "deploy/conf/c.yaml")
    # The config's grandparent: not a place README promises, so not read.
    _write(tmp_path, "HALL_LOGIN=from-grandparent\n", "deploy/.env")
    assert "HALL_LOGIN is not set" in _problem(path)
    _write(tmp_path, "HALL_LOGIN=beside\n", "deploy/conf/.env")
    assert load_config(path, environ={}).plants[0].device_map == {"amr-1": "beside"}
    (tmp_path / "deploy/conf/.env").unlink()
    _write(tmp_path, "HALL_LOGIN=from-cwd\n", "work/.env")
    assert load_config(path, environ={}).plants[0].device_map == {"amr-1": "from-cwd"}
