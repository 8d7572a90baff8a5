"""`dtp-console sniff`: show a plant's broker traffic with parse results and mapped logins."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

import aiomqtt

from dtp_console.bridge.formats import parser_for
from dtp_console.bridge.geometry import apply_affine
from dtp_console.bridge.parse import Reading, Rejection, StatusOnly
from dtp_console.bridge.robot_status import position_verdict
from dtp_console.cli.common import add_config_arg, load_or_exit, parse_duration
from dtp_console.config.model import PlantConfig
from dtp_console.mqtt.client import client_kwargs, describe_mqtt_error, payload_bytes
from dtp_console.state import PlantState
from dtp_console.textsafe import safe_text

__all__ = ["describe", "register"]


def register(sub: Any) -> None:
    """Add the `sniff` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "sniff", help="print a plant's MQTT messages with their parse result"
    )
    add_config_arg(parser)
    parser.add_argument("--plant", required=True, metavar="NAME", help="the plant to sniff")
    parser.add_argument("--for", dest="duration", type=parse_duration, metavar="DURATION")
    parser.add_argument("--limit", type=int, default=None, help="stop after N messages")
    parser.set_defaults(func=_sniff)


def describe(plant: PlantConfig, topic: str, payload: bytes) -> str:
    """Two lines: topic and payload (shortened), then what the bridge would do with it.

    Control characters from the broker are escaped visibly (`textsafe.safe_text`).
    """
    shown = payload[:160].decode("utf-8", "replace") + ("…" if len(payload) > 160 else "")
    if len(payload) > plant.max_payload_bytes:
        verdict = f"rejected:oversize ({len(payload)} bytes)"
    else:
        result = parser_for(plant)(topic, payload)
        if isinstance(result, Rejection):
            verdict = f"rejected:{result.reason} ({result.detail})"
        else:
            login = plant.device_map.get(result.vendor_id)
            who = f"{result.vendor_id} -> {login}" if login else f"{result.vendor_id} -> UNKNOWN"
            if isinstance(result, StatusOnly):
                verdict = f"{who} status only (battery {result.battery})"
            else:
                assert isinstance(result, Reading)
                x, y = apply_affine(plant.affine, result.x, result.y)
                verdict = f"{who} at ({x:.0f}, {y:.0f}) mm"
            if result.report is not None:
                verdict = _vda_verdict(plant, result, verdict)
    # Topic, payload, ids and parse details are the vendor's: each printed line is
    # escaped whole, so a newline or ESC in any of them is shown, never obeyed.
    return f"{safe_text(f'{topic}  {shown}')}\n    => {safe_text(verdict)}"


def _vda_verdict(plant: PlantConfig, result: Reading | StatusOnly, verdict: str) -> str:
    """A VDA 5050 message's verdict with its topic, headerId and what the robot says."""
    report = result.report
    assert report is not None
    parts = [
        f"{report.topic} #{report.header_id}" if report.header_id is not None else report.topic
    ]
    if report.connection is not None:
        parts.append(report.connection)
    if isinstance(result, Reading):
        sector, problem = position_verdict(plant, PlantState(plant.name), report)
        if problem is not None:
            verdict = f"{verdict}, rejected:{problem[0]} ({problem[1]})"
        else:
            shown = plant.twinzo.sector_id if sector is None else sector
            parts.append(f"map {report.map_id} -> sector {shown}")
    if report.operating_mode is not None:
        parts.append(report.operating_mode)
    if report.driving is not None:
        parts.append("driving" if report.driving else "standing")
    if report.e_stop not in (None, "NONE"):
        parts.append(f"E-STOP {report.e_stop}")
    if report.errors:
        parts.append("errors " + "; ".join(f"{level} {text}" for level, text in report.errors))
    return f"{verdict} [{', '.join(parts)}]"


def _sniff(args: argparse.Namespace) -> int:
    config = load_or_exit(args)
    try:
        plant = config.plant(args.plant)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if plant.broker.embedded:
        print(
            f"error: {plant.name} uses the embedded broker, which exists only inside a running "
            "console; sniff a real broker",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_sniff_async(plant, args.duration, args.limit))


async def _sniff_async(plant: PlantConfig, duration: float | None, limit: int | None) -> int:
    seen = 0
    connected = False

    async def _loop() -> None:
        nonlocal seen, connected
        # The plant's own TLS, login and MQTT version; a random id and a clean session,
        # so the running bridge keeps its session (`client_kwargs`).
        kwargs = client_kwargs(plant, plant.broker.host, plant.broker.port, role="sniff")
        async with aiomqtt.Client(**kwargs) as client:
            connected = True
            for topic in plant.topics:
                await client.subscribe(topic, qos=plant.broker.qos)
            print(
                safe_text(
                    f"sniffing {plant.name} on {plant.broker.host}:{plant.broker.port} "
                    f"({', '.join(plant.topics)})"
                ),
                flush=True,
            )
            async for message in client.messages:
                payload = payload_bytes(message.payload)
                print(describe(plant, message.topic.value, payload), flush=True)
                seen += 1
                if limit is not None and seen >= limit:
                    return

    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_loop(), duration)
    except aiomqtt.MqttError as exc:
        reason = describe_mqtt_error(exc, tls=None if connected else plant.broker.tls)
        print(safe_text(f"error: MQTT {plant.name}: {reason}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print(f"{seen} messages", flush=True)
    return 0
