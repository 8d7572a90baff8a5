"""Every config section is strict in the same way: one base, no drift."""

from __future__ import annotations

import subprocess
import sys
import typing
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError

from dtp_console.config.model import ConsoleConfig
from dtp_console.config_base import ConfigModel


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        stack: list[object] = [field.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from _models(kind, seen)
            stack.extend(typing.get_args(kind))


SECTIONS = sorted(_models(ConsoleConfig, set()), key=lambda m: m.__name__)


def test_the_tree_is_found() -> None:
    names = {m.__name__ for m in SECTIONS}
    assert {"ConsoleConfig", "StoresConfig", "SimulatorConfig", "ApiConfig"} <= names
    assert {"RegistryConfig", "HaConfig", "PlantConfig", "LoggingConfig"} <= names


@pytest.mark.parametrize("model", SECTIONS, ids=lambda m: m.__name__)
def test_every_section_forbids_unknown_keys_and_documents_fields(model: type[BaseModel]) -> None:
    assert issubclass(model, ConfigModel)
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("use_attribute_docstrings") is True


def test_a_misspelt_key_names_itself() -> None:
    with pytest.raises(ValidationError, match="stats_intervall_s"):
        ConsoleConfig.model_validate({"logging": {"stats_intervall_s": 1}})


@pytest.mark.parametrize(
    "module",
    [
        "dtp_console.stores.config",
        "dtp_console.simulator.config",
        "dtp_console.api.config",
        "dtp_console.registry.config",
    ],
)
def test_a_section_imports_first_without_a_circle(module: str) -> None:
    """Each section module imports on its own (the base sits outside `dtp_console.config`)."""
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
