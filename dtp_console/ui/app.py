"""The console App: runs the engine beside it, reads the engine on its own clock, quits cleanly.

The engine is the same object `--no-ui` runs; the App starts `engine.run(stop)`
as a task on mount and never drives it. Every 0.1 s it drains its bus
subscription and asks the main screen to redraw what is visible, all inside
one `batch_update()`. Quitting sets `stop` and waits for the engine to drain
its outboxes before the App exits, as SIGTERM does headless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from dtp_console.atomic import write_json_atomic
from dtp_console.events import Event, LogLine, Subscription
from dtp_console.oplog import OpLogFile, configure_library_logging
from dtp_console.textsafe import safe_text
from dtp_console.ui import palette
from dtp_console.ui.display import UiClock
from dtp_console.ui.screens.calibration import CalibrationScreen
from dtp_console.ui.screens.device_map import DeviceMapEditor
from dtp_console.ui.screens.help import HelpScreen
from dtp_console.ui.screens.main import MainScreen
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.badges import Badge
from dtp_console.ui.widgets.log_panel import LogPanel
from dtp_console.ui.widgets.registry_panel import RegistryPanel

if TYPE_CHECKING:
    from dtp_console.view import ConsoleEngine

__all__ = ["DtpConsoleApp", "run_ui"]


class DtpConsoleApp(palette.PaletteApp[int]):
    """The full-screen console."""

    # Absolute, so subclasses elsewhere (tests, bench) find it too.
    CSS_PATH = Path(__file__).with_name("global.tcss")
    TITLE = "dtp-console"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("l", "log_level", "Log level"),
        Binding("p", "log_plant", "Log plant"),
    ]

    def __init__(
        self,
        engine: ConsoleEngine,
        *,
        duration: float | None = None,
        clock: UiClock | None = None,
        refresh_s: float | None = 0.1,
        handle_signals: bool = False,
    ) -> None:
        super().__init__()
        self.register_theme(palette.THEME)
        self.theme = palette.THEME.name
        self.engine = engine
        self.clock = clock or UiClock()
        self.duration = duration
        self.refresh_s = refresh_s
        """Seconds between redraws; None redraws only on `refresh_now()` (tests)."""
        self.stop = asyncio.Event()
        self.stopping = False
        self._handle_signals = handle_signals
        self._subscription: Subscription | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self._log_file: OpLogFile | None = None

    @property
    def main(self) -> MainScreen:
        """The main screen (wherever the screen stack is)."""
        return self.get_screen("main")  # type: ignore[return-value]

    def on_mount(self) -> None:
        """Subscribe, show the main screen, start the engine and the clock."""
        self._subscription = self.engine.subscribe(maxsize=20_000)
        self.install_screen(MainScreen(self.engine, self.clock), name="main")
        self.push_screen("main")
        log_path = self.engine.config.logging.file
        if log_path is not None:
            self._log_file = OpLogFile(log_path)
        self._engine_task = asyncio.create_task(self.engine.run(self.stop), name="engine")
        self._engine_task.add_done_callback(self._engine_done)
        if self.refresh_s is not None:
            self.set_interval(self.refresh_s, self.refresh_now, name="refresh")
        if self.duration is not None:
            self.set_timer(self.duration, self.action_quit, name="duration")
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, lambda: self.call_later(self.action_quit))

    def on_unmount(self) -> None:
        """Detach from the bus and the signal."""
        if self._handle_signals:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        if self._subscription is not None:
            self._subscription.close()
        if self._log_file is not None:
            self._log_file.close()

    def drain_events(self) -> list[Event]:
        """This tick's events (store health is not among what the UI keeps: it reads the
        engine's latest check each tick, see `view.EngineView.store_health`)."""
        if self._subscription is None:
            return []
        events = list(self._subscription.drain())
        if self._subscription.dropped:
            dropped, self._subscription.dropped = self._subscription.dropped, 0
            note = f"UI fell behind: {dropped} events dropped"
            events.append(LogLine(level="WARN", text=note))
        if self._log_file is not None:
            self._log_file.write(e for e in events if isinstance(e, LogLine))
        return events

    def refresh_now(self) -> None:
        """One tick: drain the bus, redraw the visible widgets in one batch."""
        events = self.drain_events()
        if not self.is_screen_installed("main"):
            return
        with self.batch_update():
            self.main.refresh_view(self.engine.store_health, events)

    def _engine_done(self, task: asyncio.Task[None]) -> None:
        if self.stopping or task.cancelled():
            return
        error = task.exception()
        detail = f"{error!r}" if error is not None else "it ended on its own"
        self.exit(1, return_code=1, message=_exit_message(detail))

    async def action_quit(self) -> None:
        """Stop the workers, wait for the outboxes to drain, then exit."""
        if self.stopping:
            return
        self.stopping = True
        # Attached, `q` ends only this client: the service keeps running.
        note = "detaching…" if self.engine.link is not None else "stopping… draining outboxes"
        self.notify(note, title="dtp-console", timeout=60)
        self.stop.set()
        self.run_worker(self._finish(), name="stopping", exclusive=True)

    async def _finish(self) -> None:
        code = 0
        if self._engine_task is not None:
            try:
                await self._engine_task
            except Exception as exc:
                logging.getLogger(__name__).exception("engine failed while stopping")
                code = 1
                self.exit(1, return_code=1, message=_exit_message(repr(exc)))
                return
        self.refresh_now()
        self.exit(code, return_code=code)

    def action_help(self) -> None:
        """Every binding of the app, its screens and widgets."""
        if isinstance(self.screen, HelpScreen):
            return
        sections: list[tuple[str, type]] = [("console", type(self)), ("main screen", MainScreen)]
        sections += [("health badge (focused)", Badge), ("tables (focused)", AmrTable)]
        sections += [
            ("registry (focused)", RegistryPanel),
            ("device-map editor", DeviceMapEditor),
            ("calibration", CalibrationScreen),
            ("help", HelpScreen),
        ]
        self.push_screen(HelpScreen(sections))

    def action_log_level(self) -> None:
        """Cycle the log panel's level filter."""
        self.main.query_one(LogPanel).cycle_level()

    def action_log_plant(self) -> None:
        """Cycle the log panel's plant filter."""
        self.main.query_one(LogPanel).cycle_plant()


def run_ui(
    engine: ConsoleEngine, *, duration: float | None = None, stats_json: Path | None = None
) -> int:
    """Run the console UI until the operator quits (or `duration` passes); the exit code."""
    # Under the UI nothing may write to the terminal: library records go to a file.
    configure_library_logging(engine.config.logging.library_file)
    app = DtpConsoleApp(engine, duration=duration, handle_signals=True)
    with contextlib.suppress(KeyboardInterrupt):
        app.run()
    if stats_json is not None:
        write_json_atomic(stats_json, engine.state.as_dict())
    return app.return_code or 0


def _exit_message(detail: str) -> Text:
    """The line printed after the UI closes: a str would be read as Rich markup."""
    return Text(safe_text(f"FAIL console stopped: {detail}"))
