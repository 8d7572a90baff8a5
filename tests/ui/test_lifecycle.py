"""The App around the engine: quitting drains, `--for` quits, a crashed engine exits 1, logging."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest

from devtools.seeded import CONFIG, SeededEngine, write_config
from dtp_console.events import Bus, LogLine
from dtp_console.headless import HeadlessRenderer
from dtp_console.oplog import format_line
from dtp_console.state import EngineState
from dtp_console.ui.app import DtpConsoleApp, run_ui
from dtp_console.ui.display import FixedClock

HOSTILE = "evil\x1b[2J\nOK forged [red]x[/red] \x9b2J"


class DrainingEngine(SeededEngine):
    """Takes a while to drain after `stop`, like a bridge emptying its outbox."""

    drained = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.release = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await super().run(stop)
        await self.release.wait()  # the outbox is still draining until the test says so
        self.drained = True


class CrashingEngine(SeededEngine):
    async def run(self, stop: asyncio.Event) -> None:
        raise RuntimeError("broker port in use")


async def test_quit_sets_stop_waits_for_the_drain_then_exits(tmp_path: Path) -> None:
    clock = FixedClock()
    engine = DrainingEngine(write_config(tmp_path), clock=clock, steps=4)
    app = DtpConsoleApp(engine, clock=clock, refresh_s=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await engine.ready.wait()
        await pilot.press("q")
        await pilot.pause()
        assert app.stop.is_set()
        assert app.stopping and not engine.drained
        assert any("stopping" in n.message for n in app._notifications)
        await pilot.press("q")  # a second quit does not exit before the drain
        await pilot.pause(0.2)
        assert app.return_code is None and app.is_running
        engine.release.set()
        for _ in range(40):
            if engine.drained and app.return_code is not None:
                break
            await pilot.pause(0.05)
    assert engine.drained
    assert app.return_code == 0


async def test_duration_quits_on_its_own(tmp_path: Path) -> None:
    clock = FixedClock()
    engine = SeededEngine(write_config(tmp_path), clock=clock, steps=2)
    app = DtpConsoleApp(engine, clock=clock, refresh_s=0.1, duration=0.3)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(40):
            if app.return_code is not None:
                break
            await pilot.pause(0.05)
        assert app.stop.is_set()
    assert app.return_code == 0


async def test_a_crashed_engine_exits_with_1(tmp_path: Path) -> None:
    clock = FixedClock()
    engine = CrashingEngine(write_config(tmp_path), clock=clock)
    app = DtpConsoleApp(engine, clock=clock, refresh_s=None)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(40):
            if app.return_code is not None:
                break
            await pilot.pause(0.05)
    assert app.return_code == 1


async def test_both_renderers_write_one_format_to_the_configured_file(tmp_path: Path) -> None:
    """The UI and `--no-ui` write `logging.file` through one writer: the same lines."""
    ui_log, headless_log = tmp_path / "ui" / "console.log", tmp_path / "headless" / "console.log"
    config = CONFIG.replace("logging:\n", f"logging:\n  file: {ui_log}\n")
    clock = FixedClock()
    engine = SeededEngine(write_config(tmp_path, config), clock=clock, steps=2)
    assert engine.config.logging.file == ui_log
    lines = [
        LogLine(level="FAIL", text=HOSTILE, plant="Old Plant", ts=1_767_225_600.5),
        LogLine(level="INFO", text="plain", ts=1_767_225_601.0),
    ]
    app = DtpConsoleApp(engine, clock=clock, refresh_s=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await engine.ready.wait()
        for line in lines:
            engine.bus.publish(line)
        app.refresh_now()
        await pilot.press("q")
        for _ in range(40):
            if app.return_code is not None:
                break
            await pilot.pause(0.05)
    bus = Bus()
    renderer = HeadlessRenderer(bus, EngineState(), out=io.StringIO(), log_file=headless_log)
    for line in lines:
        bus.publish(line)
    renderer.close()
    from_ui = ui_log.read_text(encoding="utf-8").splitlines()
    from_headless = headless_log.read_text(encoding="utf-8").splitlines()
    expected = [format_line(line) for line in lines]
    assert from_headless == expected
    assert [line for line in from_ui if line in expected] == expected  # beside the seeded ones
    assert expected[0] == (
        '2026-01-01T00:00:00.500+00:00 FAIL "Old Plant" '
        "evil\\x1b[2J\\nOK forged [red]x[/red] \\x9b2J"
    )


def test_library_logging_goes_to_the_configured_file_not_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("amqtt").level)
    config = CONFIG.replace(
        "logging:\n", f"logging:\n  library_file: {tmp_path / 'var' / 'x.log'}\n"
    )
    engine = SeededEngine(write_config(tmp_path, config), steps=2)
    try:
        monkeypatch.setattr(DtpConsoleApp, "run", lambda self: None)  # no terminal here
        assert run_ui(engine) == 0
        assert all(isinstance(h, logging.FileHandler) for h in root.handlers)
        logging.getLogger("dtp.test").warning("to the file")
        for handler in root.handlers:
            handler.flush()
        assert "WARNING dtp.test: to the file" in (tmp_path / "var" / "x.log").read_text()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("amqtt").setLevel(saved[2])
        logging.captureWarnings(False)
