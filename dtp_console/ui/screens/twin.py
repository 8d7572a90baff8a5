"""One twin's own data: its streams live, its alerts, lifecycle, dependencies, services.

Opened with `enter` on a twin in the registry tab. Every data stream of the
twin (the platform worker's rings: the twin's `MQTT:` data streams and the
topics beside them, or generic streams naming the twin) gets its latest
value, unit, age and a braille sparkline of the ring's window, with the alert
threshold drawn where there is one; stale streams are dimmed and say so.
Below: the twin's recent events, its status history, dependencies (unknown
ones flagged) and the health of its services. `x` deprecates (confirmed),
`a` activates, `esc` goes back. It reads the rings only while it is open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import WorkType

from dtp_console.textsafe import safe_text
from dtp_console.ui.display import UiClock, fmt_age
from dtp_console.ui.palette import AMBER, BLUE, GREEN, MUTED, RED, TEXT
from dtp_console.ui.screens.confirm import ConfirmScreen
from dtp_console.ui.sparkline import braille_spark

if TYPE_CHECKING:
    from dtp_console.ingest.rings import EventEntry, StreamRing
    from dtp_console.registry.model import ServiceRecord, StatusChange, TwinRecord
    from dtp_console.view import ConsoleEngine

__all__ = ["TwinScreen", "TwinStreams"]

#: Characters left of the sparkline (name, value and unit; age): at least, at most.
_LABEL_MIN, _LABEL_MAX = 30, 44
_SEVERITY = {0: ("info", MUTED), 1: ("note", BLUE), 2: ("alert", AMBER), 3: ("fail", RED)}
_HEALTH = {"healthy": GREEN, "degraded": AMBER, "unhealthy": RED}
_LIVE_S = 1.0
#: Lines per stream (the sparkline's height: 4 levels a line).
_ROWS = 3
_REGISTRY_S = 5.0
_ATTACHED_NO_STREAMS = (
    "live streams are not available attached: the platform rings stay in the service"
)


def _fmt_value(value: float | None) -> str:
    if value is None:
        return "–"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}" if magnitude < 0.01 and value else f"{value:.2f}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class TwinStreams(Widget):
    """The twin's streams, three lines each: label and value, then age; sparkline right."""

    DEFAULT_CSS = """
    TwinStreams { height: auto; min-height: 1; }
    """

    def __init__(self, clock: UiClock, stale_after_s: float, window_s: float, **kw: Any) -> None:
        super().__init__(**kw)
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._window_s = window_s
        self.streams: list[StreamRing] = []
        self.empty_text = "no data streams seen yet on the platform broker"
        """What it says while there is no stream to show."""

    def show(self, streams: list[StreamRing]) -> None:
        """Draw these streams (their rings as they are now)."""
        grown = len(streams) != len(self.streams)
        self.streams = streams
        self.refresh(layout=grown)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:  # noqa: ARG002
        """`_ROWS` lines per stream (one when there is none)."""
        return max(1, _ROWS * len(self.streams))

    def is_stale(self, stream: StreamRing) -> bool:
        """Whether the stream has had no value for `stale_after_s`."""
        return self._clock.wall() - stream.last_seen > self._stale_after_s

    def render(self) -> Text:
        """The streams as text."""
        if not self.streams:
            return Text(self.empty_text, style=f"italic {MUTED}")
        now = self._clock.wall()
        label_w = min(_LABEL_MAX, max(_LABEL_MIN, self.size.width // 3))
        spark_w = max(8, self.size.width - label_w - 1)
        out = Text()
        for index, stream in enumerate(self.streams):
            stale = self.is_stale(stream)
            values = stream.window(self._window_s, now)
            colour = MUTED if stale else GREEN
            spark = braille_spark(values, spark_w, _ROWS, threshold=stream.threshold, colour=colour)
            name_style = f"italic {MUTED}" if stale else f"bold {TEXT}"
            latest = stream.latest()
            unit = safe_text(stream.unit or "", 12)
            value = f"{_fmt_value(latest)} {unit}".strip()
            over = (
                stream.threshold is not None and latest is not None and latest >= stream.threshold
            )
            name = _cut(safe_text(stream.name, 80), label_w - len(value) - 2)
            line1 = Text(name, style=name_style)
            line1.append(" " * max(1, label_w - 1 - len(name) - len(value)))
            line1.append(value, style=RED if over else (MUTED if stale else TEXT))
            line1.append(" ")
            age = fmt_age(max(0.0, now - stream.last_seen))
            status = f"  stale {age}" if stale else f"  {age} ago"
            line2 = Text(status, style=f"bold {AMBER}" if stale else MUTED)
            if stream.threshold is not None:
                line2.append(f"  alert ≥ {_fmt_value(stream.threshold)}", style=AMBER)
            line2.truncate(label_w - 1, pad=True)
            line2.append(" ")
            if index:
                out.append("\n")
            out.append_text(line1)
            out.append_text(spark[0])
            out.append("\n")
            out.append_text(line2)
            out.append_text(spark[1])
            for row in spark[2:]:
                out.append("\n" + " " * label_w)
                out.append_text(row)
        return out


class TwinScreen(Screen[None]):
    """One twin: its streams, events, lifecycle history, dependencies and services."""

    DEFAULT_CSS = """
    TwinScreen #twin-body { height: 1fr; padding: 0 1; }
    TwinScreen .twin-title { color: $dtp-muted; text-style: bold; margin-top: 1; }
    TwinScreen #twin-head { text-style: bold; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("x", "deprecate", "Deprecate"),
        Binding("a", "activate", "Activate"),
    ]

    def __init__(self, engine: ConsoleEngine, twin: TwinRecord, clock: UiClock) -> None:
        super().__init__()
        self.engine = engine
        self.twin = twin
        self.clock = clock
        self.history: list[StatusChange] = []
        self.services: list[ServiceRecord] = []
        platform = engine.config.platform
        self._streams = TwinStreams(
            clock, platform.stale_after_s, platform.ring_window_s, id="twin-streams"
        )

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="twin-body"):
            yield Static("", id="twin-head", markup=False)
            yield Static("data streams", classes="twin-title", markup=False)
            yield self._streams
            yield Static("recent alerts and events", classes="twin-title", markup=False)
            yield Static("", id="twin-events", markup=False)
            yield Static("lifecycle", classes="twin-title", markup=False)
            yield Static("", id="twin-lifecycle", markup=False)
            yield Static("dependencies", classes="twin-title", markup=False)
            yield Static("", id="twin-deps", markup=False)
            yield Static("services", classes="twin-title", markup=False)
            yield Static("", id="twin-services", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_live()
        self._show_registry()
        self.set_interval(_LIVE_S, self.refresh_live)
        self.set_interval(_REGISTRY_S, self._reload)
        self._reload()

    # -- public view (tests read these) ---------------------------------------------------

    @property
    def streams(self) -> list[StreamRing]:
        """The streams shown."""
        return self._streams.streams

    def section(self, name: str) -> str:
        """The text of a section: `head`, `events`, `lifecycle`, `deps`, `services`."""
        return str(self.query_one(f"#twin-{name}", Static).content)

    # -- live data ------------------------------------------------------------------------

    def _data_streams(self) -> list[str]:
        return list(self.twin.interfaces.data_streams)

    def refresh_live(self) -> None:
        """Re-read the twin's rings (once a second while the screen is shown)."""
        rings = self.engine.rings
        if rings is None:
            if self.engine.link is not None:
                self._streams.empty_text = _ATTACHED_NO_STREAMS
            self._streams.show([])
            self._show_events([])
            return
        self._streams.show(rings.streams_of(self.twin.id, self._data_streams()))
        self._show_events(rings.events_of(self._data_streams(), limit=8))

    def _show_events(self, events: list[EventEntry]) -> None:
        widget = self.query_one("#twin-events", Static)
        if not events:
            widget.update(Text("none yet", style=f"italic {MUTED}"))
            return
        out = Text()
        for index, event in enumerate(events):
            label, colour = _SEVERITY.get(event.severity, ("?", MUTED))
            if index:
                out.append("\n")
            out.append(self.clock.hms(event.ts) + " ", style=MUTED)
            out.append(f"{label:<5} ", style=f"bold {colour}")
            out.append(safe_text(_summary(event.body), 160), style=TEXT)
        widget.update(out)

    # -- registry data --------------------------------------------------------------------

    def _reload(self) -> None:
        work: WorkType[None] = self._load_registry  # a method: a cancelled request never starts
        self.run_worker(work, group="twin-registry", exclusive=True)

    async def _load_registry(self) -> None:
        service = self.engine.twins
        if service is None:
            self._show_registry(offline=True)
            return
        try:
            self.twin = await service.get(self.twin.id)
            self.history = await service.history(self.twin.id)
            self.services = [s for s in await service.list_services() if s.twin_id == self.twin.id]
        except Exception as exc:  # a twin deleted meanwhile, a store down: say so, keep going
            self.notify(safe_text(exc), title="twin", severity="warning", markup=False)
        self._show_registry()

    def _show_registry(self, *, offline: bool = False) -> None:
        twin = self.twin
        head = Text(safe_text(twin.id, 120), style=f"bold {TEXT}")
        head.append(f"  {safe_text(twin.name, 80)}", style=TEXT)
        head.append(f"  tenant {safe_text(twin.tenant, 40)}", style=MUTED)
        colour = {"active": GREEN, "deprecated": MUTED}.get(twin.status, BLUE)
        head.append(f"  {twin.status}", style=f"bold {colour}")
        self.query_one("#twin-head", Static).update(head)
        self.query_one("#twin-lifecycle", Static).update(self._lifecycle_text(offline))
        self.query_one("#twin-deps", Static).update(self._deps_text())
        self.query_one("#twin-services", Static).update(self._services_text(offline))

    def _lifecycle_text(self, offline: bool) -> Text:
        if offline:
            return Text("registry not running", style=f"italic {MUTED}")
        if not self.history:
            return Text("no status changes recorded", style=f"italic {MUTED}")
        out = Text()
        for index, change in enumerate(self.history[-6:]):
            if index:
                out.append("\n")
            out.append(self.clock.hms(change.at.timestamp()) + " ", style=MUTED)
            out.append(f"{change.from_status or '·'} → {change.to_status}", style=TEXT)
            out.append(f"  {safe_text(change.reason, 80)}", style=MUTED)
        return out

    def _deps_text(self) -> Text:
        deps = self.twin.dependencies
        unknown = set(self.twin.unknown_dependencies)
        out = Text()
        for kind, ids in (("static", deps.static), ("dynamic", deps.dynamic)):
            if out:
                out.append("\n")
            out.append(f"{kind:<8}", style=MUTED)
            if not ids:
                out.append("none", style=f"italic {MUTED}")
            for i, dep in enumerate(ids):
                out.append(", " if i else "", style=MUTED)
                out.append(safe_text(dep, 80), style=f"bold {RED}" if dep in unknown else TEXT)
                if dep in unknown:
                    out.append(" (unknown)", style=RED)
        return out

    def _services_text(self, offline: bool) -> Text:
        if offline:
            return Text("registry not running", style=f"italic {MUTED}")
        if not self.services:
            return Text("no services registered for this twin", style=f"italic {MUTED}")
        out = Text()
        for index, svc in enumerate(self.services):
            if index:
                out.append("\n")
            out.append(safe_text(svc.name, 40), style=TEXT)
            out.append(f"  {safe_text(svc.category, 20)}  ", style=MUTED)
            out.append(svc.health, style=f"bold {_HEALTH.get(svc.health, MUTED)}")
            if svc.health_detail:
                out.append(f"  {safe_text(svc.health_detail, 80)}", style=MUTED)
        return out

    # -- actions --------------------------------------------------------------------------

    def action_close(self) -> None:
        """Back to the registry tab."""
        self.dismiss()

    def action_deprecate(self) -> None:
        """Deprecate this twin, after confirmation."""
        question = f"Deprecate twin {self.twin.id} ({self.twin.name})? It stays listed."

        async def _answer(yes: bool | None) -> None:
            if yes:
                await self._set_status("deprecate")

        self.app.push_screen(ConfirmScreen(question, yes="Deprecate", no="Cancel"), _answer)

    async def action_activate(self) -> None:
        """Activate this twin."""
        await self._set_status("activate")

    async def _set_status(self, action: str) -> None:
        if self.engine.read_only is not None:
            self.notify(
                f"{action} is disabled: {self.engine.read_only}",
                title="twin",
                severity="warning",
                markup=False,
            )
            return
        service = self.engine.twins
        if service is None:
            self.notify("registry not running", title="twin", severity="error")
            return
        try:
            if action == "deprecate":
                self.twin = await service.deprecate(
                    self.twin.id, reason="deprecated in the console"
                )
            else:
                self.twin = await service.activate(self.twin.id, reason="activated in the console")
        except Exception as exc:  # an illegal transition, the store down: say so
            self.notify(
                safe_text(f"{action} {self.twin.id} failed: {exc}"),
                title="twin",
                severity="error",
                markup=False,
            )
            return
        self.notify(safe_text(f"{self.twin.id} {action}d"), title="twin", markup=False)
        await self._load_registry()


def _summary(body: dict[str, Any]) -> str:
    """An event body in one line: its `type`/`kind` first, then a few `key=value`s."""
    head = body.get("type") or body.get("kind") or ""
    parts = [str(head)] if head else []
    for key, value in body.items():
        if key in ("type", "kind", "ts", "source") or len(parts) >= 5:
            continue
        if isinstance(value, dict | list):
            continue
        parts.append(f"{key}={value}")
    return " ".join(parts) or "{}"
