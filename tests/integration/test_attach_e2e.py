"""Attach end to end (issue #21): the full console over the API to a real headless service.

`dtp-console run --no-ui` runs the demo config in a subprocess (embedded brokers,
simulator, sandbox, registry of the repo's twins) with API tokens configured; the
App attaches with `run_test`. Robots appear and move, the registry lists twins, an
operator's device-map edit lands in the service's file and running bridge, a
viewer's is refused with the reason, the service is killed and restarted under the
attached console (badge down, then up, robots move again), and the service's
counters still add up at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import TabbedContent

from dtp_console.api.tokens import hash_token
from dtp_console.attach.client import AttachError, RemoteEngine
from dtp_console.config.writer import DeviceMapConflictError
from dtp_console.ui.app import DtpConsoleApp
from dtp_console.ui.screens.device_map import DeviceMapEditor
from dtp_console.ui.widgets.badges import Badge
from dtp_console.ui.widgets.registry_panel import RegistryPanel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PLANT = "Old Plant"
#: Placeholder test tokens (never real ones).
OPERATOR = "attach-e2e-operator-token"
VIEWER = "attach-e2e-viewer-token"
#: The demo's Old Plant runs one robot nobody mapped: the edit maps it.
NEW_ID, NEW_LOGIN = "ati_amr_004", "tugger-08-old"


def _config(tmp_path: Path) -> Path:
    """The demo config, its registry and stores under `tmp_path`, with two API tokens."""
    text = (ROOT / "config" / "console.yaml").read_text(encoding="utf-8")
    tokens = (
        f"    - {{label: ops-operator, hash: {hash_token(OPERATOR)}, role: operator,"
        " tenants: ['*']}\n"
        f"    - {{label: ops-viewer, hash: {hash_token(VIEWER)}, role: viewer, tenants: ['*']}}\n"
    )
    api = "api:\n  enabled: true\n"
    assert api in text
    text = text.replace(api, api + "  tokens:\n" + tokens)
    text += (
        f"\nregistry:\n  twins_root: {ROOT / 'twins'}\n  sqlite_path: {tmp_path / 'reg.db'}\n"
        f"stores:\n  sqlite_path: {tmp_path / 'platform.db'}\n  blob_dir: {tmp_path / 'blobs'}\n"
    )
    path = tmp_path / "console.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Service:
    """`dtp-console run --no-ui` in a subprocess, its output in a file."""

    def __init__(self, config: Path, port: int, folder: Path) -> None:
        self.config, self.port, self.folder = config, port, folder
        self.url = f"http://127.0.0.1:{port}"
        self.stats = folder / "stats.json"
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    async def start(self) -> None:
        self.runs += 1
        out = (self.folder / f"service-{self.runs}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINZO_", "DTP_"))}
        env.update(DTP_API_LISTEN=f"127.0.0.1:{self.port}", PYTHONPATH=str(ROOT))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dtp_console",
            "-c",
            str(self.config),
            "run",
            "--no-ui",
            "--stats-json",
            str(self.stats),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=self.folder,
        )
        out.close()

    async def session_up(self, token: str = OPERATOR) -> RemoteEngine:
        """A `RemoteEngine` once the service's session answers (the service is up)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return await RemoteEngine.open(self.url, token)
            except AttachError:
                if time.monotonic() > deadline:
                    raise
                assert self.proc is not None
                assert self.proc.returncode is None, self.output()
                await asyncio.sleep(0.3)

    def output(self) -> str:
        logs = sorted(self.folder.glob("service-*.log"))
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 60)


async def _until(
    pilot: Pilot[int], check: Callable[[], bool], what: str, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await pilot.pause(0.1)


def _positions(engine: RemoteEngine) -> dict[str, tuple[float | None, float | None]]:
    plant = engine.state.plants.get(PLANT)
    if plant is None:
        return {}
    return {vid: (d.x, d.y) for vid, d in plant.devices.items() if d.x is not None}


async def _robots_move(pilot: Pilot[int], engine: RemoteEngine) -> None:
    await _until(pilot, lambda: len(_positions(engine)) >= 3, "robots in the replica")
    before = _positions(engine)
    await _until(
        pilot,
        lambda: any(_positions(engine).get(v) != p for v, p in before.items()),
        "a robot to move",
    )


async def _two_operators(service: Service) -> None:
    """Two consoles attached at once, editing one robot of the same map: the second save is a
    conflict naming it, never an overwrite."""
    first, second = await service.session_up(), await service.session_up()
    stop = asyncio.Event()
    runs = [asyncio.create_task(e.run(stop)) for e in (first, second)]
    try:
        async with asyncio.timeout(30):
            while first.link.state != "up" or second.link.state != "up":
                await asyncio.sleep(0.1)
        base = first.device_map(PLANT)
        assert base is not None
        assert second.device_map(PLANT) == base
        await first.save_device_map(PLANT, {**base, NEW_ID: "tugger-09-old"}, base)
        with pytest.raises(DeviceMapConflictError) as conflict:
            await second.save_device_map(PLANT, {**base, NEW_ID: "tugger-10-old"}, base)
        assert conflict.value.keys == [NEW_ID]
        assert conflict.value.current[NEW_ID] == "tugger-09-old"
        assert f"{NEW_ID}: tugger-09-old" in service.config.read_text(encoding="utf-8")
    finally:
        stop.set()
        await asyncio.gather(*runs)


def _link_badge(app: DtpConsoleApp) -> str:
    for badge in app.main.query(Badge):
        if badge.info.key == "link":
            return badge.info.label
    return ""


async def test_attach_to_a_running_service(tmp_path: Path) -> None:
    config = _config(tmp_path)
    service = Service(config, _free_port(), tmp_path)
    await service.start()
    try:
        engine = await service.session_up()
        assert [p.name for p in engine.plants] == ["Old Plant", "HiTech Plant", "VDA Plant"]
        app = DtpConsoleApp(engine)
        async with app.run_test(size=(160, 50)) as pilot:
            await _until(pilot, lambda: engine.link.state == "up", "the link")
            assert _link_badge(app) == "attach up"
            await _robots_move(pilot, engine)

            # The registry tab lists the repo's twins.
            app.main.query_one(TabbedContent).active = "tab-registry"
            panel = app.main.query_one(RegistryPanel)
            await _until(pilot, lambda: bool(panel.shown_ids), "the registry's twins")
            assert len(panel.shown_ids) >= 5
            app.main.query_one(TabbedContent).active = "tab-plant-0"
            await pilot.pause()

            # An operator's device-map edit, through the editor.
            await pilot.press("m")
            await _until(pilot, lambda: isinstance(app.screen, DeviceMapEditor), "the editor")
            await pilot.press("a", *NEW_ID, "enter", *NEW_LOGIN, "enter", "ctrl+s")
            await _until(pilot, lambda: not isinstance(app.screen, DeviceMapEditor), "the save")
            assert f"{NEW_ID}: {NEW_LOGIN}" in config.read_text(encoding="utf-8")
            mapped = engine.device_map(PLANT) or {}
            assert mapped.get(NEW_ID) == NEW_LOGIN
            # The running bridge took it: the robot it maps reports as a mapped device now.
            await _until(
                pilot,
                lambda: NEW_ID in engine.state.plants[PLANT].devices,
                "the newly mapped robot in the service's bridge",
            )

            # A calibration write and a twin's lifecycle go to the service too.
            affine = engine.plants[0].affine.model_dump()
            saved = await engine.save_affine(PLANT, affine, reason="attach e2e")
            assert saved.applied
            assert saved.written == config
            twins = engine.twins
            assert twins is not None
            twin_id = panel.shown_ids[0]
            assert (await twins.deprecate(twin_id)).status == "deprecated"
            assert (await twins.get(twin_id)).status == "deprecated"

            # The service dies under the attached console, and comes back.
            await service.kill()
            await _until(pilot, lambda: engine.link.state == "down", "the link to go down")
            await _until(pilot, lambda: _link_badge(app) == "attach down", "the badge")
            assert app.main.has_class("-link-down")
            assert _positions(engine)  # the last picture stays
            await service.start()
            await _until(pilot, lambda: engine.link.state == "up", "the link again", 90)
            await _until(pilot, lambda: _link_badge(app) == "attach up", "the badge up")
            assert not app.main.has_class("-link-down")
            assert engine.reconnects >= 1
            await _robots_move(pilot, engine)
            assert (engine.device_map(PLANT) or {}).get(NEW_ID) == NEW_LOGIN  # from the file
            # Every frame of the real service read cleanly: one snapshot per connection, the
            # kill the only drop, nothing skipped.
            assert (engine.snapshots, engine.reconnects) == (2, 1)
            assert (engine.bad_events, engine.crashes) == (0, 0)
            assert engine.frames > 20
            await pilot.press("q")
        assert app.return_code == 0

        # A viewer attaches read-only: the editor does not open, and the service refuses.
        viewer = await service.session_up(VIEWER)
        assert viewer.read_only is not None
        app = DtpConsoleApp(viewer)
        async with app.run_test(size=(160, 50)) as pilot:
            await _until(pilot, lambda: viewer.link.state == "up", "the viewer's link")
            await pilot.press("m")
            await pilot.pause(0.2)
            assert not isinstance(app.screen, DeviceMapEditor)
            notes = [n.message for n in app._notifications]
            assert any(viewer.read_only in n for n in notes), notes
            with pytest.raises(PermissionError):
                await viewer.save_device_map(PLANT, {"x": "y"}, viewer.device_map(PLANT))
            await pilot.press("q")
        assert service.proc is not None
        assert service.proc.returncode is None  # detaching left the service running
        await _two_operators(service)
    finally:
        code = await service.stop()
    assert code == 0, service.output()
    stats = json.loads(service.stats.read_text(encoding="utf-8"))
    for name, plant in stats["plants"].items():
        assert plant["pending"] == 0, name
        assert plant["received"] == sum(plant["outcomes"].values()), name
        assert plant["received"] > 0, name
