"""The calibration workbench of one plant, in a modal: control points, robust fit, write.

Points come from a CSV (`l`; `e` exports them) or are captured live: pick a
robot, type where twinzo shows it, and the robot's last position as the vendor
sent it is paired with it. Every change refits
with `dtp_console.calibrate.build_report` (the robust fit of the chosen model,
cycled with `m`); `w` hands that fit to the engine's `save_affine` command,
which stores it in the plant's config file and applies it to the running
bridge at once. The screen reads and commands the engine only through
`dtp_console.view.ConsoleEngine`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Select, Static

from dtp_console.calibrate import (
    MODELS,
    CalibrationError,
    CalibrationReport,
    ControlPoint,
    ModelName,
    build_report,
    load_points,
    save_points,
)
from dtp_console.config.model import PlantConfig
from dtp_console.config.writer import ConfigWriteError
from dtp_console.textsafe import safe_text
from dtp_console.ui.palette import AMBER, GREEN, MUTED, RED, TEXT
from dtp_console.ui.widgets.residual_map import ResidualMap, ResidualPoint

if TYPE_CHECKING:
    from dtp_console.view import ConsoleEngine

__all__ = ["CalibrationScreen"]

_HINT = (
    "enter in a field: capture / load · table focused: l load · e export · m model · "
    "d remove · w write · W write despite warnings · esc close"
)


class CalibrationScreen(ModalScreen[None]):
    """Fit one plant's vendor → twinzo transform from control points and write it."""

    CSS_PATH = "calibration.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "load", "Load CSV"),
        Binding("e", "export", "Export CSV"),
        Binding("m", "cycle_model", "Model"),
        Binding("d,delete", "remove", "Remove point"),
        Binding("w", "write", "Write affine"),
        Binding("W", "write(True)", "Write despite warnings"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, engine: ConsoleEngine, plant: PlantConfig) -> None:
        super().__init__()
        self.engine = engine
        self.plant = plant
        self.points: list[ControlPoint] = []
        self.model: ModelName = "similarity"
        self.report: CalibrationReport | None = None
        self.fit_error = ""
        """Why there is no report ("" when there is one, or no points yet)."""
        self._robots: list[tuple[str, str]] = []
        self.export_dir = Path("var/calibration")
        """Where `e` writes the points (`<plant>-<UTC time>.csv`)."""

    # -- public view and API (tests drive the screen through these) -------------------

    @property
    def status(self) -> str:
        """The last result or error line."""
        return str(self.query_one("#cal-status", Static).content)

    @property
    def summary(self) -> str:
        """The fit summary as shown."""
        return str(self.query_one("#cal-report", Static).content)

    def add_point(self, point: ControlPoint) -> None:
        """Add a control point (a point of the same name is replaced) and refit."""
        self.points = [p for p in self.points if p.name != point.name] + [point]
        self._refit()

    def capture(self, vendor_id: str, twinzo_x: float, twinzo_y: float, name: str) -> ControlPoint:
        """Pair the robot's current vendor position with (twinzo_x, twinzo_y); add it.

        Raises `ValueError` when the robot has no position or the plant no bridge.
        """
        point = self.engine.capture_point(self.plant.name, vendor_id, twinzo_x, twinzo_y, name)
        self.add_point(point)
        return point

    # -- layout ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="cal-dialog") as dialog:
            dialog.border_title = Text(f"Calibration · {safe_text(self.plant.name, 80)}")
            with Horizontal(id="cal-top"):
                table: DataTable[Text] = DataTable(id="cal-points", cursor_type="row")
                for label, key, width in (
                    ("name", "name", 12),
                    ("vendor x", "vx", 9),
                    ("vendor y", "vy", 9),
                    ("twinzo X", "tx", 8),
                    ("twinzo Y", "ty", 8),
                    ("resid mm", "res", 8),
                    ("rejected", "rej", 8),
                ):
                    table.add_column(label, key=key, width=width)
                yield table
                yield ResidualMap(self.plant.bounds, id="cal-map")
            with Horizontal(id="cal-capture", classes="cal-row"):
                yield Select[str]([], prompt="robot", id="cal-robot", allow_blank=True)
                yield Input(id="cal-x", placeholder="twinzo X mm", type="number")
                yield Input(id="cal-y", placeholder="twinzo Y mm", type="number")
                yield Input(id="cal-name", placeholder="name (default: login)")
            with Horizontal(id="cal-load", classes="cal-row"):
                yield Input(id="cal-csv", placeholder="points CSV path (enter or l loads)")
            yield Static("", id="cal-report", markup=False)
            yield Static("", id="cal-status", markup=False)
            yield Static(_HINT, id="cal-hint", markup=False)

    def on_mount(self) -> None:
        self._fill_robots()
        self.set_interval(2.0, self._fill_robots, name="calibration-robots")
        self._refit()
        self.query_one("#cal-points", DataTable).focus()

    # -- actions -------------------------------------------------------------------

    def action_close(self) -> None:
        """Close the workbench (the points are not kept)."""
        self.dismiss(None)

    def action_cycle_model(self) -> None:
        """Next model: similarity → affine → fixed-scale similarity."""
        order: list[ModelName] = ["similarity", "affine", "similarity-fixed-scale"]
        assert set(order) == set(MODELS)
        self.model = order[(order.index(self.model) + 1) % len(order)]
        self._refit()

    def action_load(self) -> None:
        """Add the points of the CSV whose path is in the load field."""
        raw = self.query_one("#cal-csv", Input).value.strip()
        if not raw:
            self._say("type a CSV path first", RED)
            self.query_one("#cal-csv", Input).focus()
            return
        try:
            loaded = load_points(Path(raw).expanduser())
        except CalibrationError as exc:
            self._say(f"not loaded: {exc}", RED)
            return
        for point in loaded.points:
            self.points = [p for p in self.points if p.name != point.name] + [point]
        self._refit()
        skipped = "; ".join(map(str, loaded.problems))
        note = f" ({len(loaded.problems)} row(s) skipped: {skipped})" if skipped else ""
        colour = AMBER if note else GREEN
        self._say(f"loaded {len(loaded.points)} point(s) from {raw}{note}", colour)

    def action_export(self) -> None:
        """Write the points as CSV (the format `l` and `dtp-console calibrate` read)."""
        if not self.points:
            self._say("no points to export yet", RED)
            return
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.plant.name).strip("-") or "plant"
        path = self.export_dir / f"{slug}-{stamp}.csv"
        n = 1
        while path.exists():  # two exports within a second keep both
            n += 1
            path = self.export_dir / f"{slug}-{stamp}-{n}.csv"
        try:
            save_points(path, self.points)
        except CalibrationError as exc:
            self._say(f"not exported: {exc}", RED)
            return
        self.query_one("#cal-csv", Input).value = str(path)
        self._say(f"exported {len(self.points)} point(s) to {path}", GREEN)

    def action_remove(self) -> None:
        """Remove the point under the table's cursor."""
        table: DataTable[Text] = self.query_one("#cal-points", DataTable)
        if not self.points or table.row_count == 0:
            return
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        self.points = [p for p in self.points if p.name != row_key.value]
        self._refit()
        self._say(f"removed {row_key.value}", MUTED)

    async def action_write(self, force: bool = False) -> None:
        """Store the chosen (robust) fit as the plant's affine and apply it to the bridge."""
        if self.engine.read_only is not None:
            self._say(f"not written: {self.engine.read_only}", RED)
            self.notify(
                f"calibration write is disabled: {self.engine.read_only}",
                severity="warning",
                markup=False,
            )
            return
        report = self.report
        if report is None:
            reason = self.fit_error or "no fit yet"
            self._say(f"not written: {reason}", RED)
            return
        if report.residuals_too_large and not force:
            self._say(
                f"not written: residuals above {report.warn_mm:g} mm under the chosen fit "
                "(W writes anyway)",
                RED,
            )
            return
        try:
            self._say(await self._write(report), GREEN)
        except (ConfigWriteError, ValueError, OSError) as exc:
            self._say(f"not written: {exc}", RED)

    # -- events --------------------------------------------------------------------

    @on(Input.Submitted, "#cal-x, #cal-y, #cal-name")
    def _capture_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._capture_from_form()

    @on(Input.Submitted, "#cal-csv")
    def _csv_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_load()

    # -- internals -----------------------------------------------------------------

    def _capture_from_form(self) -> None:
        robot = self.query_one("#cal-robot", Select).value
        if not isinstance(robot, str):
            self._say("pick a robot first", RED)
            self.query_one("#cal-robot", Select).focus()
            return
        values: list[float] = []
        for field in ("x", "y"):
            widget = self.query_one(f"#cal-{field}", Input)
            try:
                values.append(float(widget.value))
            except ValueError:
                self._say(f"twinzo {field.upper()} must be a number (millimetres)", RED)
                widget.focus()
                return
        name = self.query_one("#cal-name", Input).value.strip()
        try:
            point = self.capture(robot, values[0], values[1], name)
        except ValueError as exc:
            self._say(f"not captured: {exc}", RED)
            return
        for field in ("x", "y", "name"):
            self.query_one(f"#cal-{field}", Input).value = ""
        self.query_one("#cal-points", DataTable).focus()
        self._say(
            f"captured {point.name}: vendor ({point.vendor_x:.3f}, {point.vendor_y:.3f}) → "
            f"twinzo ({point.twinzo_x:.0f}, {point.twinzo_y:.0f})",
            GREEN,
        )

    def _fill_robots(self) -> None:
        """Offer the plant's robots that have a position (kept when nothing changed)."""
        state = self.engine.state.plants.get(self.plant.name)
        devices = state.devices.values() if state is not None else []
        robots = sorted(
            (d.login, d.vendor_id) for d in devices if d.x is not None and d.y is not None
        )
        if robots == self._robots:
            return
        self._robots = robots
        select: Select[str] = self.query_one("#cal-robot", Select)
        chosen = select.value
        select.set_options((f"{login} ({vendor_id})", vendor_id) for login, vendor_id in robots)
        if isinstance(chosen, str) and chosen in {vid for _, vid in robots}:
            select.value = chosen

    def _refit(self) -> None:
        self.report, self.fit_error = None, ""
        if self.points:
            try:
                self.report = build_report(
                    self.points, model=self.model, bounds=self.plant.bounds, plant=self.plant.name
                )
            except CalibrationError as exc:
                self.fit_error = str(exc)
        self._fill_table()
        self._fill_map()
        self.query_one("#cal-report", Static).update(self._summary())

    def _fill_table(self) -> None:
        table: DataTable[Text] = self.query_one("#cal-points", DataTable)
        cursor = table.cursor_row
        table.clear()
        rows = {row.name: row for row in self.report.points} if self.report else {}
        for point in self.points:
            row = rows.get(point.name)
            residual = f"{row.residual_mm:.0f}" if row else "–"
            # The reason is long; the summary below the table gives it.
            rejected = "" if row is None or row.used else "yes"
            style = RED if rejected else TEXT
            table.add_row(
                Text(safe_text(point.name, 200), style=style),
                Text(f"{point.vendor_x:.3f}", style=TEXT, justify="right"),
                Text(f"{point.vendor_y:.3f}", style=TEXT, justify="right"),
                Text(f"{point.twinzo_x:.0f}", style=TEXT, justify="right"),
                Text(f"{point.twinzo_y:.0f}", style=TEXT, justify="right"),
                Text(residual, style=style, justify="right"),
                Text(rejected, style=RED),
                key=point.name,
            )
        if self.points:
            table.move_cursor(row=min(cursor, len(self.points) - 1))

    def _fill_map(self) -> None:
        rows = {row.name: row for row in self.report.points} if self.report else {}
        shown = []
        for point in self.points:
            row = rows.get(point.name)
            shown.append(
                ResidualPoint(
                    point.name,
                    point.twinzo_x,
                    point.twinzo_y,
                    row.predicted_x if row else None,
                    row.predicted_y if row else None,
                    row.used if row else True,
                )
            )
        self.query_one(ResidualMap).show(shown)

    def _summary(self) -> Text:
        label = {"similarity-fixed-scale": "similarity, fixed scale 1000"}.get(
            self.model, self.model
        )
        text = Text(f"model: {label} (robust)   ", style=TEXT)
        report = self.report
        if report is None:
            if self.fit_error:
                text.append(f"no fit: {safe_text(self.fit_error)}", style=RED)
            else:
                text.append("no points yet: capture or load at least 3", style=MUTED)
            return text
        chosen = report.chosen
        text.append(
            f"{report.kept_points}/{len(report.points)} points kept · "
            f"mean {chosen.mean_mm:.0f} mm · max {chosen.max_mm:.0f} mm · "
            f"rms {chosen.rms_mm:.0f} mm\n",
            style=TEXT,
        )
        text.append(
            f"rotation {chosen.rotation_deg:.3f}° · scale {chosen.scale_x:.3f} / "
            f"{chosen.scale_y:.3f} · {'flips an axis' if chosen.flip else 'no flip'} · "
            f"similarity vs affine {report.similarity_vs_affine_pct:.2f}%",
            style=TEXT,
        )
        for rejection in report.rejected:
            text.append(f"\nrejected {rejection.name}: {rejection.reason}", style=RED)
        for warning in report.warnings:
            text.append(f"\nwarning: {warning}", style=AMBER)
        return text

    async def _write(self, report: CalibrationReport) -> str:
        """Hand the chosen transform to the engine's command; the line that says what happened."""
        saved = await self.engine.save_affine(
            self.plant.name,
            report.chosen.transform.as_dict(),
            reason=f"calibration ({report.chosen.label})",
        )
        if saved.written is not None:
            where = f"wrote {saved.written}"
        else:
            where = "not stored (the console runs without a config file)"
        applied = "applied to the running bridge" if saved.applied else "no bridge running"
        values = " ".join(f"{key.upper()}={value:g}" for key, value in saved.values.items())
        return f"{where}; {applied}: {values}"

    def _say(self, message: str, colour: str) -> None:
        # Messages quote file paths and write errors: escaped, never markup.
        self.query_one("#cal-status", Static).update(Text(safe_text(message), style=colour))
