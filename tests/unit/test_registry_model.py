"""twin.yaml model and normalisation, including the compose `ui` port inference."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from dtp_console.registry.compose import ComposeError, infer_ui_api
from dtp_console.registry.model import TwinFile, TwinSpec, default_twin_id, normalise


def _spec(data: dict[str, object], folder: Path, environ: dict[str, str] | None = None) -> TwinSpec:
    return normalise(TwinFile.model_validate(data), folder, environ or {})


def test_full_file_is_kept_as_written(tmp_path: Path) -> None:
    spec = _spec(
        {
            "@id": "dt:Lift_001",
            "name": "Goods lift",
            "tenant": "plant-a",
            "metadata": {"domain": ["manufacturing"], "status": "active", "floors": 3},
            "interfaces": {"api": "http://lift:8000", "data_streams": ["MQTT:dtp/lift/alerts"]},
            "dependencies": {"static": ["dt:Room1_001"], "dynamic": ["dt:EnergyHvac_001"]},
        },
        tmp_path / "lift",
    )
    assert spec.id == "dt:Lift_001"
    assert spec.name == "Goods lift"
    assert spec.tenant == "plant-a"
    assert spec.declared_status == "active"
    assert spec.metadata == {"domain": ["manufacturing"], "floors": 3}
    assert spec.interfaces.api == "http://lift:8000"
    assert spec.interfaces.data_streams == ["MQTT:dtp/lift/alerts"]
    assert spec.dependencies.all() == ["dt:Room1_001", "dt:EnergyHvac_001"]


def test_missing_fields_get_the_platform_defaults(tmp_path: Path) -> None:
    spec = _spec({}, tmp_path / "room1")
    assert spec.id == "dt:Room1_001"
    assert spec.name == "room1"
    assert spec.tenant == "demo"
    assert spec.declared_status is None
    assert spec.interfaces.api is None
    assert spec.interfaces.data_streams == []
    assert spec.dependencies.static == []
    assert spec.dependencies.dynamic == []
    assert spec.metadata == {"domain": []}


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("lift", "dt:Lift_001"),
        ("energy_hvac", "dt:Energy_hvac_001"),
        ("roomSensor", "dt:RoomSensor_001"),
        ("old plant", "dt:Old_plant_001"),
    ],
)
def test_default_id_comes_from_the_folder(folder: str, expected: str) -> None:
    assert default_twin_id(Path("/twins") / folder) == expected


def test_plain_id_key_and_single_domain_string_are_accepted(tmp_path: Path) -> None:
    spec = _spec({"id": "dt:X_001", "metadata": {"domain": "energy"}}, tmp_path)
    assert spec.id == "dt:X_001"
    assert spec.metadata["domain"] == ["energy"]


def test_free_metadata_keys_become_json_values(tmp_path: Path) -> None:
    spec = _spec(
        {"metadata": {"installed": dt.date(2024, 5, 1), "spec": {"max_kg": 2000}}}, tmp_path
    )
    assert spec.metadata["installed"] == "2024-05-01"
    assert spec.metadata["spec"] == {"max_kg": 2000}


def test_description_is_kept_in_metadata(tmp_path: Path) -> None:
    assert _spec({"description": "goods lift"}, tmp_path).metadata["description"] == "goods lift"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"interfaces": {"data_streams": ["dtp/lift/alerts"]}}, "data_streams", "PROTOCOL:"),
        ({"interfaces": {"api": "lift:8000/x"}}, "api", "absolute URL"),
        ({"interfaces": {"data_streams": "MQTT:a/b"}}, "data_streams", "list"),
        ({"@id": "dt:has space"}, "@id", "no spaces"),
        ({"metadata": {"status": "retired"}}, "status", "instantiated"),
        ({"dependencies": {"static": "dt:X"}}, "static", "list"),
        ({"dependencies": {"later": ["dt:X"]}}, "later", "Extra inputs"),
        ({"dependancies": {}}, "dependancies", "Extra inputs"),
        ({"name": "  "}, "name", "blank"),
    ],
)
def test_invalid_content_names_the_field(data: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TwinFile.model_validate(data)
    errors = caught.value.errors()
    assert any(field in map(str, e["loc"]) and words in e["msg"] for e in errors), errors


def _compose(folder: Path, ports: str, name: str = "compose.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(
        f"services:\n  db:\n    image: x\n    ports: ['5432:5432']\n"
        f"  ui:\n    image: y\n    ports: {ports}\n",
        encoding="utf-8",
    )
    return folder


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ('["8080:80"]', "http://localhost:8080"),
        ('["127.0.0.1:9000:80/tcp"]', "http://127.0.0.1:9000"),
        ('["0.0.0.0:9001:80"]', "http://localhost:9001"),
        ('["[::1]:9002:80"]', "http://[::1]:9002"),
        ('["8000-8001:80-81"]', "http://localhost:8000"),
        ('[80, "3000", "8088:80"]', "http://localhost:8088"),
        ("[{target: 80, published: 8443}]", "http://localhost:8443"),
        ('[{target: 80, published: "8444", host_ip: 10.0.0.5}]', "http://10.0.0.5:8444"),
        ('["${UI_PORT:-8090}:80"]', "http://localhost:8090"),
        ('[":80"]', None),
        ("[80]", None),
        ("[]", None),
    ],
)
def test_ui_host_port_inference(tmp_path: Path, ports: str, expected: str | None) -> None:
    assert infer_ui_api(_compose(tmp_path, ports), {}) == expected


def test_compose_variables_come_from_the_environment(tmp_path: Path) -> None:
    folder = _compose(tmp_path, '["${UI_PORT:-8090}:80"]')
    assert infer_ui_api(folder, {"UI_PORT": "7070"}) == "http://localhost:7070"


def test_docker_compose_file_names_count_too(tmp_path: Path) -> None:
    folder = _compose(tmp_path, '["8111:80"]', name="docker-compose.yml")
    assert infer_ui_api(folder, {}) == "http://localhost:8111"


def test_no_compose_or_no_ui_service_infers_nothing(tmp_path: Path) -> None:
    assert infer_ui_api(tmp_path, {}) is None
    (tmp_path / "compose.yaml").write_text("services:\n  api:\n    ports: ['80:80']\n")
    assert infer_ui_api(tmp_path, {}) is None


def test_missing_api_is_inferred_and_a_written_api_wins(tmp_path: Path) -> None:
    folder = _compose(tmp_path / "lift", '["8081:80"]')
    assert _spec({}, folder).interfaces.api == "http://localhost:8081"
    written = _spec({"interfaces": {"api": "https://lift.example.invalid"}}, folder)
    assert written.interfaces.api == "https://lift.example.invalid"


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        ("services: [unclosed", "<file>", "invalid YAML"),
        ("services:\n  ui:\n    ports: '8080:80'\n", "services.ui.ports", "must be a list"),
        ("services:\n  ui:\n    ports: ['http:80']\n", "services.ui.ports[0]", "host port"),
        ("services:\n  ui:\n    ports: ['${NOPE}:80']\n", "services.ui.ports[0]", "NOPE"),
    ],
)
def test_broken_compose_is_a_clear_error(
    tmp_path: Path, content: str, field: str, words: str
) -> None:
    (tmp_path / "compose.yaml").write_text(content, encoding="utf-8")
    with pytest.raises(ComposeError) as caught:
        infer_ui_api(tmp_path, {})
    assert caught.value.field == field
    assert words in caught.value.reason
    assert caught.value.path == tmp_path / "compose.yaml"
