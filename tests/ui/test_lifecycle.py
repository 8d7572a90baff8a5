"""The App around the engine: quitting drains, `--for` quits, a crashed engine exits 1, logging."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from devtools.seeded import SeededEngine, write_config
from dtp_console.ui.app import DtpConsoleApp, configure_logging
from dtp_console.ui.display import FixedClock


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


def test_logging_goes_to_a_file_not_the_terminal(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("amqtt").level)
    try:
        configure_logging(tmp_path / "var" / "console.log")
        assert all(isinstance(h, logging.FileHandler) for h in root.handlers)
        assert logging.getLogger("amqtt").level == logging.CRITICAL
        logging.getLogger("dtp.test").warning("to the file")
        for handler in root.handlers:
            handler.flush()
        assert "to the file" in (tmp_path / "var" / "console.log").read_text()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("amqtt").setLevel(saved[2])
        logging.captureWarnings(False)
