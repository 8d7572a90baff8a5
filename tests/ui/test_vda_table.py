"""A VDA 5050 plant's AMR table: `lost` and `robot` columns, offline robots shown `off`,
and the table still fits beside the map at 120 columns."""

from __future__ import annotations

from pathlib import Path

from dtp_console.state import DeviceState, RobotFacts
from dtp_console.ui.palette import DIM, GREEN, RED
from dtp_console.ui.widgets.amr_table import AmrTable
from dtp_console.ui.widgets.floor_map import FloorMap
from dtp_console.ui.widgets.vda_table import VdaAmrTable, robot_cell
from tests.ui.harness import make_app, settle

CONFIG = """
twinzo: {client: demo, password: change-me, api_key: change-me}
simulator: {enabled: false}
registry: {enabled: false}
plants:
  - name: VDA Plant
    format: vda5050
    broker: {host: embedded}
    vda5050: {map_sectors: {hall-3: 5}}
    device_map:
      sim-robotics/agv-001: agv-01-vda
      sim-robotics/agv-002: agv-02-vda
    twinzo: {sector_id: 5}
    affine: {A: 1000, D: 1000}
    bounds: {x_min: 0, x_max: 90000, y_min: 0, y_max: 60000}
    min_post_interval_ms: 0
    simulator: {robots: 3, unmapped: 1, rate_hz: 1.0, seed: 13, station_stop_s: 2}
  - name: HiTech Plant  # the seeded engine shows two plants' connections
    format: hitech
    broker: {host: embedded}
    device_map: {hitech-amr-001: tugger-03}
    twinzo: {sector_id: 1}
    simulator: {robots: 1, unmapped: 0, seed: 12}
"""


async def test_vda_plant_table_has_lost_and_robot_and_fits_beside_the_map(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, config=CONFIG)
    async with app.run_test(size=(120, 40)) as pilot:
        engine = await settle(pilot)
        plant = engine.state.plants["VDA Plant"]
        table = app.main.query_one("#tab-plant-0 AmrTable", AmrTable)
        assert isinstance(table, VdaAmrTable)
        assert table.row_keys == sorted(plant.devices)
        for vendor_id in plant.devices:
            assert table.cell_text(vendor_id, "lost") == "0"
            assert table.cell_text(vendor_id, "robot").startswith("AUTO")
        floor = app.main.query_one("#tab-plant-0 FloorMap", FloorMap)
        total = sum(width + 2 for _, _, width in VdaAmrTable.COLUMNS)
        assert table.region.width >= total
        assert floor.region.width >= 12
        assert table.region.right <= floor.region.x
        vendor_id = sorted(plant.devices)[0]
        device = plant.devices[vendor_id]
        assert device.robot is not None
        device.robot.connection = "CONNECTIONBROKEN"
        device.robot.lost = 12_345
        app.refresh_now()
        await pilot.pause()
        assert table.cell_text(vendor_id, "age") == "off"
        assert table.cell_text(vendor_id, "robot") == "gone"
        assert table.cell_text(vendor_id, "lost") == "12k"
        assert vendor_id not in table.stale_rows
        assert floor.offline == [vendor_id]  # a dim ⊘ on the map: left, not stale
        assert floor.flags[vendor_id] == (None, False)  # and never a ghost


def test_robot_cell_puts_safety_and_errors_first() -> None:
    assert robot_cell(None) == ("–", DIM)
    robot = RobotFacts(operating_mode="AUTOMATIC", driving=True)
    assert robot_cell(robot) == ("AUTO ▸", GREEN)
    robot.errors = (("WARNING", "batteryLow"),)
    assert robot_cell(robot)[0] == "WARN"
    robot.errors = (("WARNING", "a"), ("FATAL", "b"))
    assert robot_cell(robot) == ("FATAL", f"bold {RED}")
    robot.e_stop = "MANUAL"
    assert robot_cell(robot)[0] == "E-STOP"
    robot.connection = "OFFLINE"
    assert robot_cell(robot) == ("off", DIM)
    robot = RobotFacts(operating_mode="SEMIAUTOMATIC_WITH_A_LONG_NAME\x1b[2J")
    widths = {key: width for key, _, width in VdaAmrTable.COLUMNS}
    assert len(robot_cell(robot)[0]) <= widths["robot"]


def test_a_non_vda_device_shows_dashes() -> None:
    table = VdaAmrTable(10.0)
    row = table._row(DeviceState("amr-1", "tugger-03", last_message_at=99.0), 100.0)
    keys = [key for key, _, _ in VdaAmrTable.COLUMNS]
    assert len(row) == len(keys)
    assert row[keys.index("lost")] == ("–", DIM)
