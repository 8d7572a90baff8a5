"""Keep a worker's inner task alive: every death logged (FAIL), counted and restarted.

A worker (`Bridge.run`, the platform worker) runs its inner tasks in one
`asyncio.TaskGroup`, each wrapped in `keep_running`: an exception or an early
return of the inner coroutine is a death, reported once (folded when repeated),
passed to the owner's counter and followed by a restart after a jittered,
capped backoff. What escapes `keep_running` itself (a bug in the counter, say)
ends the TaskGroup, so the owner's run raises and `Engine._supervise` logs and
restarts the whole worker: nothing dies silently, nothing is left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from dtp_console.backoff import Backoff
from dtp_console.events import OpsLog

__all__ = ["RESTART_INITIAL_S", "RESTART_MAX_S", "RESTART_RESET_AFTER_S", "keep_running"]

#: Restart delays of a task that died: jittered, doubling, capped.
RESTART_INITIAL_S = 0.5
RESTART_MAX_S = 30.0
#: A task that ran this long before it died restarts from the initial delay again.
RESTART_RESET_AFTER_S = 60.0


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def keep_running(
    what: str,
    start: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    log: OpsLog,
    plant: str | None,
    died: Callable[[str], None],
) -> None:
    """Run `start()` until `stop`; each death (an exception, or an early return) is
    reported, passed to `died` and followed by a restart after a backoff delay.

    Cancellation is not a death: it ends the loop. An exception raised while the
    task is being cancelled (aiomqtt may turn a cancelled disconnect into an
    `MqttError`) is the cancellation, re-raised as such.
    """
    backoff = Backoff(RESTART_INITIAL_S, RESTART_MAX_S)
    while not stop.is_set():
        started = time.monotonic()
        try:
            await start()
        except Exception as exc:
            if _cancelling():  # being stopped, not dead
                raise asyncio.CancelledError from exc
            reason = f"{type(exc).__name__}: {exc}"[:300]
        else:
            if stop.is_set():
                return
            reason = "it returned before it was stopped"
        if time.monotonic() - started > RESTART_RESET_AFTER_S:
            backoff.reset()
        delay = backoff.next()
        died(reason)
        log.limited(
            "FAIL",
            f"died:{what}",
            f"{what} died ({reason}); restart {backoff.failures} in {delay:.1f}s",
            plant,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
