"""The replaced scripts' settings, mapped onto the model unchanged.

The old deployment read `.env` (`TWINZO_CLIENT`, `TWINZO_PASSWORD`,
`TWINZO_API_KEY`, `ATI_MQTT_HOST/PORT/USERNAME/PASSWORD/TOPIC`, `AFFINE_A`…
`AFFINE_TY`, `LOG_EVERY_N`) and `config/hivemq_config.json` (`host`, `port`,
`username`, `password`). Each fills the matching field only where the YAML
leaves it unset, so an explicit YAML value always wins:

| legacy                     | fills                                               |
|----------------------------|-----------------------------------------------------|
| `TWINZO_CLIENT`            | `twinzo.client`                                     |
| `TWINZO_PASSWORD`          | `twinzo.password`                                   |
| `TWINZO_API_KEY`           | `twinzo.api_key`                                    |
| `LOG_EVERY_N`              | `logging.log_every_n`                               |
| `ATI_MQTT_HOST/PORT/...`   | `broker.*` of every `ati_sherpa` plant (TLS on for 8883)|
| `ATI_MQTT_TOPIC`           | `broker.topics` of every `ati_sherpa` plant         |
| `AFFINE_A` … `AFFINE_TY`   | `affine` of every `ati_sherpa` plant                |
| `hivemq_config.json`       | `broker.*` of every `hitech` plant (TLS on for 8883)|
| `MQTT_TOPIC`               | `simulator.generators.room.topic` (+ `platform.topics`) |
| `PUBLISH_INTERVAL_SEC`     | `simulator.generators.room.interval_s`              |
| `SIM_SIGNAL_NAME`          | `simulator.generators.room.name`                    |
| `SIM_SIGNAL_UNIT`          | `simulator.generators.room.unit`                    |

The last four are the platform simulator's: one signal published every
`PUBLISH_INTERVAL_SEC` on `MQTT_TOPIC`, which the platform worker ingests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["HIVEMQ_JSON_NAME", "apply_legacy", "find_hivemq_json"]

HIVEMQ_JSON_NAME = "hivemq_config.json"

_TWINZO = {"TWINZO_CLIENT": "client", "TWINZO_PASSWORD": "password", "TWINZO_API_KEY": "api_key"}
_ATI_BROKER = {
    "ATI_MQTT_HOST": "host",
    "ATI_MQTT_PORT": "port",
    "ATI_MQTT_USERNAME": "username",
    "ATI_MQTT_PASSWORD": "password",
}
_AFFINE = ("A", "B", "C", "D", "TX", "TY")


def find_hivemq_json(env: Mapping[str, str], config_path: Path | None) -> Path | None:
    """Where the legacy HiveMQ JSON is: `DTP_HIVEMQ_CONFIG`, beside the config, or `config/`."""
    if env.get("DTP_HIVEMQ_CONFIG"):
        return Path(env["DTP_HIVEMQ_CONFIG"])
    candidates = []
    if config_path is not None:
        candidates.append(config_path.resolve().parent / HIVEMQ_JSON_NAME)
    candidates.append(Path.cwd() / "config" / HIVEMQ_JSON_NAME)
    return next((c for c in candidates if c.is_file()), None)


def _read_hivemq(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot use the legacy HiveMQ config: {exc}"
        raise ValueError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path}: the legacy HiveMQ config must be a JSON object"
        raise ValueError(msg)
    unknown = set(data) - {"host", "port", "username", "password"}
    if unknown:
        msg = f"{path}: unknown keys in the legacy HiveMQ config: {', '.join(sorted(unknown))}"
        raise ValueError(msg)
    return data


def _fill(target: dict[str, Any], key: str, value: Any) -> None:
    if value not in (None, "") and key not in target:
        target[key] = value


def apply_legacy(
    data: dict[str, Any], env: Mapping[str, str], config_path: Path | None
) -> dict[str, Any]:
    """Return `data` with unset fields filled from legacy env vars and the HiveMQ JSON."""
    data = dict(data)
    twinzo = _section(data.get("twinzo"))
    if twinzo is not None:
        for var, key in _TWINZO.items():
            _fill(twinzo, key, env.get(var))
        if twinzo:
            data["twinzo"] = twinzo
    logging = _section(data.get("logging"))
    if env.get("LOG_EVERY_N") and logging is not None:
        _fill(logging, "log_every_n", env["LOG_EVERY_N"])
        data["logging"] = logging

    _legacy_platform_simulator(data, env)

    plants = data.get("plants")
    if not isinstance(plants, list):
        return data
    hivemq: dict[str, Any] | None = None
    if any(isinstance(p, dict) and p.get("format") == "hitech" for p in plants):
        json_path = find_hivemq_json(env, config_path)
        hivemq = _read_hivemq(json_path) if json_path else None
    data["plants"] = [_legacy_plant(p, env, hivemq) for p in plants]
    return data


_ROOM_SIGNAL = {
    "MQTT_TOPIC": "topic",
    "PUBLISH_INTERVAL_SEC": "interval_s",
    "SIM_SIGNAL_NAME": "name",
    "SIM_SIGNAL_UNIT": "unit",
}


def _legacy_platform_simulator(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """The platform simulator's signal keys → the room sensor generator and the platform."""
    if not any(env.get(var) for var in _ROOM_SIGNAL):
        return
    simulator = _section(data.get("simulator"))
    generators = _section(simulator.get("generators")) if simulator is not None else None
    room = _section(generators.get("room")) if generators is not None else None
    if simulator is None or generators is None or room is None:
        return  # not mappings: validation names the field
    for var, key in _ROOM_SIGNAL.items():
        _fill(room, key, env.get(var))
    generators["room"] = room
    simulator["generators"] = generators
    data["simulator"] = simulator
    topic = env.get("MQTT_TOPIC")
    if topic and not topic.startswith("dtp/"):
        platform = _section(data.get("platform"))
        if platform is not None and "topics" not in platform:
            platform["topics"] = ["dtp/#", topic]
            data["platform"] = platform


def _section(value: Any) -> dict[str, Any] | None:
    """A copy of a mapping section to fill; None when it is no mapping (validation says so)."""
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else None


def _legacy_plant(plant: Any, env: Mapping[str, str], hivemq: dict[str, Any] | None) -> Any:
    if not isinstance(plant, dict):
        return plant
    plant = dict(plant)
    broker = _section(plant.get("broker"))
    if broker is None:
        return plant
    if plant.get("format") == "ati_sherpa":
        for var, key in _ATI_BROKER.items():
            _fill(broker, key, env.get(var))
        _tls_for_8883(broker)
        if env.get("ATI_MQTT_TOPIC"):
            _fill(broker, "topics", [env["ATI_MQTT_TOPIC"]])
        if "affine" not in plant and any(f"AFFINE_{k}" in env for k in _AFFINE):
            plant["affine"] = {
                k.lower(): env[f"AFFINE_{k}"] for k in _AFFINE if f"AFFINE_{k}" in env
            }
    elif plant.get("format") == "hitech" and hivemq is not None:
        for key in ("host", "port", "username", "password"):
            _fill(broker, key, hivemq.get(key))
        _tls_for_8883(broker)
    if broker:
        plant["broker"] = broker
    return plant


def _tls_for_8883(broker: dict[str, Any]) -> None:
    # 8883 is MQTT over TLS: the old scripts' users put the port there and expected
    # their password to be encrypted. An explicit `tls: false` in the YAML still wins.
    if str(broker.get("port")).strip() == "8883":
        _fill(broker, "tls", True)
