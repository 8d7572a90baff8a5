"""The AMR table of a VDA 5050 plant: the robot's own account beside ours.

Two more columns than `AmrTable`: `lost` (messages missing from the robot's
`headerId` sequence) and `robot` (what the robot says: emergency stop, its
worst error, else its operating mode, with `▸` while it says it is driving).
A robot that said OFFLINE, or whose last will CONNECTIONBROKEN arrived, is
shown `off` and dimmed — it left; it is not stale.
"""

from __future__ import annotations

from typing import ClassVar

from dtp_console.state import DeviceState, RobotFacts
from dtp_console.ui.palette import AMBER, DIM, GREEN, MUTED, RED, TEXT
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.keyed_table import Cell, Column

__all__ = ["VdaAmrTable", "robot_cell"]

_LEFT_OUT = ("moving", "rate")

#: Operating modes in at most five cells.
_MODES = {
    "AUTOMATIC": "AUTO",
    "SEMIAUTOMATIC": "SEMI",
    "MANUAL": "MAN",
    "SERVICE": "SERV",
    "TEACHIN": "TEACH",
}


def robot_cell(robot: RobotFacts | None) -> Cell:
    """The `robot` column: E-STOP, FATAL or WARN first, else the mode (`▸`: driving)."""
    if robot is None:
        return ("–", DIM)
    if robot.offline:
        return ("off" if robot.connection == "OFFLINE" else "gone", DIM)
    if robot.e_stop not in (None, "NONE"):
        return ("E-STOP", f"bold {RED}")
    worst = robot.worst_error
    if worst == "FATAL":
        return ("FATAL", f"bold {RED}")
    if worst is not None:
        return ("WARN", AMBER)
    mode = robot.operating_mode
    text = "–" if mode is None else _MODES.get(mode, mode[:5])
    if robot.driving:
        return (f"{text} ▸", GREEN)
    return (text, TEXT if mode == "AUTOMATIC" else AMBER if mode else DIM)


class VdaAmrTable(AmrTable):
    """`AmrTable` plus `lost` and `robot`; offline robots are `off`, never stale."""

    #: `AmrTable`'s columns without `mov` and `msg/s` (the robot column shows `▸`
    #: while it drives), plus `lost` and `robot`: still beside the map at 120 columns.
    COLUMNS: ClassVar[list[Column]] = [
        *(c for c in AmrTable.COLUMNS if c[0] not in _LEFT_OUT),
        ("lost", "lost", 4),
        ("robot", "robot", 6),
    ]

    def _row(self, d: DeviceState, now: float) -> list[Cell]:
        keys = [key for key, _, _ in AmrTable.COLUMNS]
        cells = dict(zip(keys, super()._row(d, now), strict=True))
        robot = d.robot
        if robot is not None and robot.offline:
            # Gone on purpose (or by its last will): dim, not the amber of a silent robot.
            cells = {key: (text, DIM) for key, (text, _) in cells.items()}
            cells["login"] = (d.login, f"bold {MUTED}")
            cells["age"] = ("off", DIM)
        lost = 0 if robot is None else robot.lost
        cells["lost"] = ("–", DIM) if robot is None else (_count(lost), AMBER if lost else DIM)
        cells["robot"] = robot_cell(robot)
        return [cells[key] for key, _, _ in self.COLUMNS]


def _count(value: int) -> str:
    """A count in at most four cells: `7`, `9999`, `12k`, `3M`."""
    if value < 10_000:
        return str(value)
    if value < 1_000_000:
        return f"{value // 1000}k"
    return f"{min(999, value // 1_000_000)}M"
