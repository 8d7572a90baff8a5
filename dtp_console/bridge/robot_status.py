"""What a VDA 5050 robot says about itself, applied to its `DeviceState`.

The `headerId` of each topic counts up by one per message: a gap is loss
(counted per robot and per plant), a repeat is a duplicate (the message is
rejected), and a step back — to 0 after a restart, or anywhere lower — is a
restart of the robot, counted apart and never as loss. A jump forward larger
than `MAX_GAP` is a renumbering, also counted as a restart: one hostile
`headerId` must not book billions of lost messages.

`CONNECTIONBROKEN` is the robot's last will: the broker sends it for a robot
that vanished, with the `headerId` the robot set when it connected, so its
sequence is not judged.
"""

from __future__ import annotations

from typing import Literal

from dtp_console.bridge.parse import RobotReport
from dtp_console.config.model import PlantConfig
from dtp_console.events import Level, OpsLog
from dtp_console.state import MAX_UNKNOWN_IDS, DeviceState, PlantState, RobotFacts, SequenceCounters

__all__ = [
    "MAX_GAP",
    "SequenceVerdict",
    "apply_report",
    "judge_sequence",
    "map_sector",
    "position_is_behind",
    "position_verdict",
    "track_sequences",
]

#: A forward jump of the `headerId` larger than this is a renumbering, not loss.
MAX_GAP = 100_000

SequenceVerdict = Literal["first", "next", "gap", "duplicate", "reset"]


def judge_sequence(last: int | None, header_id: int) -> tuple[SequenceVerdict, int]:
    """How `header_id` follows `last` on one topic, and how many messages went missing."""
    if last is None:
        return "first", 0
    if header_id == last:
        return "duplicate", 0
    if header_id == last + 1:
        return "next", 0
    if last < header_id <= last + 1 + MAX_GAP:
        return "gap", header_id - last - 1
    return "reset", 0


def track_sequences(plant: PlantState) -> SequenceCounters:
    """The plant's sequence counters, created on first use (they show in stats from then)."""
    if plant.sequence is None:
        plant.sequence = SequenceCounters()
    return plant.sequence


def apply_report(
    report: RobotReport, device: DeviceState, plant: PlantState, log: OpsLog, label: str
) -> bool:
    """Take in `report` for `device`; False when it is a duplicate to reject.

    Status changes (connection, errors, emergency stop) are logged once per change;
    a robot flapping faster than the log's repeat window is folded into one line.
    """
    robot = device.robot
    if robot is None:
        robot = device.robot = RobotFacts()
    counters = track_sequences(plant)
    will = report.connection == "CONNECTIONBROKEN"
    if report.header_id is not None and not will:
        verdict, missing = judge_sequence(robot.header_ids.get(report.topic), report.header_id)
        robot.header_ids[report.topic] = report.header_id
        if verdict == "duplicate" and not (
            report.connection is not None and report.connection != robot.connection
        ):
            robot.duplicates += 1
            counters.duplicates += 1
            return False
        if verdict == "gap":
            robot.lost += missing
            counters.lost += missing
        elif verdict == "reset":
            robot.restarts += 1
            counters.restarts += 1
            log.limited(
                "INFO",
                f"vda-restart:{plant.name}:{device.vendor_id}",
                f"{label} robot {device.vendor_id} ({device.login}) restarted: {report.topic} "
                f"headerId went back to {report.header_id}",
                plant.name,
            )
    _status(report, device, robot, log, plant.name)
    return True


def _status(
    report: RobotReport, device: DeviceState, robot: RobotFacts, log: OpsLog, plant: str
) -> None:
    who = f"{device.vendor_id} ({device.login})"
    key = f"vda:{plant}:{device.vendor_id}"  # a robot flapping within the window is folded
    if report.connection is not None and report.connection != robot.connection:
        if robot.connection is not None or report.connection != "ONLINE":
            level: Level = "INFO" if report.connection == "ONLINE" else "WARN"
            log.limited(level, f"{key}:connection", f"Robot {who} is {report.connection}", plant)
        robot.connection = report.connection
    if report.driving is not None:
        robot.driving = report.driving
    if report.operating_mode is not None:
        robot.operating_mode = report.operating_mode
    if report.map_id is not None:
        robot.map_id = report.map_id
    if report.localization_score is not None:
        robot.localization_score = report.localization_score
    if report.e_stop is not None and report.e_stop != robot.e_stop:
        if report.e_stop != "NONE":
            text = f"Robot {who}: emergency stop {report.e_stop}"
            log.limited("FAIL", f"{key}:estop", text, plant)
        elif robot.e_stop is not None:
            log.limited("INFO", f"{key}:estop-off", f"Robot {who}: emergency stop released", plant)
        robot.e_stop = report.e_stop
    if report.errors is not None and report.errors != robot.errors:
        new = [e for e in report.errors if e not in robot.errors]
        for error_level, text in new:
            shown: Level = "FAIL" if error_level == "FATAL" else "WARN"
            line = f"Robot {who} {error_level}: {text}"
            log.limited(shown, f"{key}:error:{text[:60]}", line, plant)
        if not report.errors:
            log.limited("INFO", f"{key}:errors-off", f"Robot {who}: errors cleared", plant)
        robot.errors = report.errors


def map_sector(plant: PlantConfig, state: PlantState, map_id: str | None) -> int | None:
    """The twinzo sector of `map_id` from the plant's table; None when it is not listed
    (the plant's own sector is used, or the position rejected; the id is counted)."""
    if map_id is None:
        return None
    sector = plant.vda5050.map_sectors.get(map_id)
    if sector is None:
        unknown = track_sequences(state).unknown_maps
        if map_id in unknown or len(unknown) < MAX_UNKNOWN_IDS:
            unknown[map_id] += 1
    return sector


def position_verdict(
    plant: PlantConfig, state: PlantState, report: RobotReport
) -> tuple[int | None, tuple[str, str] | None]:
    """The sector to post a VDA 5050 position to (None: the plant's), or why it is rejected."""
    if report.localized is False:
        return None, ("not_localized", "positionInitialized is false")
    floor = plant.vda5050.min_localization_score
    score = report.localization_score
    if score is not None and score < floor:
        return None, ("low_localization", f"localizationScore {score:g} is below {floor:g}")
    sector = map_sector(plant, state, report.map_id)
    if sector is None and report.map_id is not None and plant.vda5050.drop_unknown_maps:
        return None, ("unknown_map", f"mapId {report.map_id[:40]!r} is not in map_sectors")
    return sector, None


def position_is_behind(report: RobotReport, stamp: int | None, last: int | None) -> bool:
    """Whether a `state`'s position is no newer than the last one accepted.

    A robot sends `visualization` often and `state` now and then, both with its
    position: a state stamped like (or before) the last visualization is taken
    for its status alone (`status_only`), not rejected as a duplicate or as out
    of order — nothing was wrong with it.
    """
    return report.topic == "state" and stamp is not None and last is not None and stamp <= last
