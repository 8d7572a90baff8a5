"""Simulator settings: documented, strict, and accepted inside the console config."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from dtp_console.cli import build_parser
from dtp_console.config.model import ConsoleConfig
from dtp_console.simulator import config as sim_config
from dtp_console.simulator.config import PlantSimulatorConfig, SimulatorConfig, stable_signal_id
from dtp_console.simulator.runner import select_plants, with_simulated

MODELS: list[type[pydantic.BaseModel]] = [
    sim_config.PlantSimulatorConfig,
    sim_config.PlatformBrokerConfig,
    sim_config.LiftGeneratorConfig,
    sim_config.EnergyGeneratorConfig,
    sim_config.RoomSensorConfig,
    sim_config.GeneratorsConfig,
    sim_config.SimulatorConfig,
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_is_documented(model: type[pydantic.BaseModel]) -> None:
    undocumented = [name for name, f in model.model_fields.items() if not f.description]
    assert undocumented == []


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_unknown_keys_are_errors(model: type[pydantic.BaseModel]) -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        model.model_validate({"no_such_key": 1})


@pytest.mark.parametrize(("raw", "shape"), [(3, "3"), (6, "6"), ("mixed", "mixed"), ("6", "6")])
def test_pose_shape_accepts_yaml_ints(raw: object, shape: str) -> None:
    assert PlantSimulatorConfig.model_validate({"pose_shape": raw}).pose_shape == shape


def test_bad_pose_shape_and_fault_kind_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        PlantSimulatorConfig.model_validate({"pose_shape": 4})
    with pytest.raises(pydantic.ValidationError):
        PlantSimulatorConfig.model_validate({"fault_kinds": ["gremlins"]})


def test_charge_levels_must_make_sense() -> None:
    with pytest.raises(pydantic.ValidationError, match="charge_until_pct"):
        PlantSimulatorConfig(charge_below_pct=50, charge_until_pct=40)


def test_defaults() -> None:
    cfg = PlantSimulatorConfig()
    assert (cfg.rate_hz, cfg.unmapped, cfg.fault_rate) == (1.0, 1, 0.0)
    sim = SimulatorConfig()
    assert sim.broker.embedded
    assert sim.generators.room.interval_s == 5.0
    assert sim.generators.room.resolved_signal_id == stable_signal_id("dtp/sensors/room1/temp")


def test_console_config_takes_a_full_simulator_section() -> None:
    config = ConsoleConfig.model_validate(
        {
            "simulator": {
                "enabled": True,
                "broker": {"host": "embedded", "port": 0},
                "generators": {
                    "lift": {"threshold": 5.0, "rate_hz": 2},
                    "energy": {"price_per_kwh": 0.3},
                    "room": {"interval_s": 5},
                },
            },
            "plants": [
                {
                    "name": "Old Plant",
                    "format": "ati_sherpa",
                    "twinzo": {"sector_id": 2},
                    "simulator": {"robots": 3, "pose_shape": "mixed", "fault_rate": 0.02},
                }
            ],
        }
    )
    assert config.simulator.generators.lift.threshold == 5.0
    plant_sim = config.plants[0].simulator
    assert plant_sim is not None
    assert plant_sim.pose_shape == "mixed"


def test_simulate_command_arguments() -> None:
    args = build_parser().parse_args(
        ["simulate", "--plant", "Old Plant", "--rate", "2", "--for", "1.5m", "--no-generators"]
    )
    assert args.plant == ["Old Plant"]
    assert args.rate == 2.0
    assert args.duration == 90.0
    assert args.no_generators is True


def test_simulate_refuses_an_unknown_plant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("plants: []\n")
    args = build_parser().parse_args(["simulate", "-c", str(path), "--plant", "Nowhere"])
    assert args.func(args) == 2
    assert "no plant named 'Nowhere'" in capsys.readouterr().err


def _three_plants() -> ConsoleConfig:
    def plant(name: str, simulator: dict[str, object] | None) -> dict[str, object]:
        data: dict[str, object] = {"name": name, "format": "hitech", "twinzo": {"sector_id": 1}}
        if simulator is not None:
            data["simulator"] = simulator
        return data

    return ConsoleConfig.model_validate(
        {
            "plants": [
                plant("Simulated", {"robots": 2}),
                plant("Switched Off", {"enabled": False}),
                plant("Real Vendor", None),
            ]
        }
    )


def test_only_plants_with_an_enabled_simulator_section_are_simulated() -> None:
    config = _three_plants()
    assert [p.name for p, _ in select_plants(config, None)] == ["Simulated"]
    # Naming plants narrows the choice; it never adds a real vendor's plant.
    assert [p.name for p, _ in select_plants(config, ["real vendor", "simulated"])] == ["Simulated"]
    assert select_plants(config, []) == []
    with pytest.raises(KeyError, match="Nowhere"):
        select_plants(config, ["Nowhere"])


def test_with_simulated_turns_named_plants_on_with_defaults() -> None:
    config = _three_plants()
    chosen = with_simulated(config, ["real vendor", "Switched Off"])
    assert [p.name for p, _ in select_plants(chosen, None)] == [
        "Simulated",
        "Switched Off",
        "Real Vendor",
    ]
    assert chosen.plant("Real Vendor").simulator == PlantSimulatorConfig()
    assert config.plant("Real Vendor").simulator is None  # the original is untouched
