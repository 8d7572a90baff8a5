"""The commands' config-file writes run off the event loop, one at a time, in order."""

from __future__ import annotations

import asyncio
import functools
import threading

from dtp_console.commands import ConfigFileWrites


async def test_a_write_runs_in_a_worker_thread_not_on_the_loop() -> None:
    files = ConfigFileWrites()
    loop_thread = threading.get_ident()
    ran_on, generation = await files.write(threading.get_ident)
    assert ran_on != loop_thread
    assert generation == 1


async def test_writes_never_overlap_and_are_numbered_in_the_order_they_ran() -> None:
    files = ConfigFileWrites()
    inside = 0
    overlaps = 0
    order: list[int] = []

    def work(n: int) -> int:
        nonlocal inside, overlaps
        inside += 1
        overlaps += inside > 1
        threading.Event().wait(0.01)
        order.append(n)
        inside -= 1
        return n

    results = await asyncio.gather(*(files.write(functools.partial(work, n)) for n in range(6)))
    assert overlaps == 0
    assert sorted(g for _, g in results) == [1, 2, 3, 4, 5, 6]
    by_generation = [n for n, _ in sorted(results, key=lambda r: r[1])]
    assert by_generation == order  # the generation is the order the file saw


def test_an_older_write_finishing_last_is_not_applied_over_a_newer_one() -> None:
    files = ConfigFileWrites()
    assert files.newest("device_map", "Hall", 2)
    assert not files.newest("device_map", "Hall", 1)  # its edits are in write 2's merge
    assert files.newest("device_map", "Other", 1)  # per plant
    assert files.newest("affine", "Hall", 1)  # per kind of thing written
    assert files.newest("device_map", "Hall", 3)
