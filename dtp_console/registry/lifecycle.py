"""The twin lifecycle: statuses and the transitions between them.

```
            activate              deprecate
instantiated ───────▶ active ◀──────────▶ deprecated
     │                          re-activate     ▲
     └──────────────────────────────────────────┘
                      deprecate
```

A twin never returns to `instantiated`: that status only means "registered,
not yet put to use". Setting the status a twin already has is a no-op.
"""

from __future__ import annotations

from typing import Literal, get_args

from dtp_console.registry.errors import IllegalTransitionError

__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "TwinStatus",
    "check_transition",
    "status_on_register",
]

TwinStatus = Literal["instantiated", "active", "deprecated"]

#: Every status, in lifecycle order.
STATUSES: tuple[TwinStatus, ...] = get_args(TwinStatus)

#: Status → the statuses it may move to (besides itself).
TRANSITIONS: dict[TwinStatus, tuple[TwinStatus, ...]] = {
    "instantiated": ("active", "deprecated"),
    "active": ("deprecated",),
    "deprecated": ("active",),
}


def check_transition(twin_id: str, current: TwinStatus, target: TwinStatus) -> None:
    """Raise `IllegalTransitionError` unless `current → target` is allowed (or a no-op)."""
    if target != current and target not in TRANSITIONS[current]:
        raise IllegalTransitionError(twin_id, current, target, list(TRANSITIONS[current]))


def status_on_register(current: TwinStatus | None, declared: TwinStatus | None) -> TwinStatus:
    """The status after (re-)registering a twin whose file declares `declared`.

    Registration is an attach: the file is the source of truth, so a re-registered
    twin that was deprecated (its file had been deleted) comes back `active`.
    A file's `instantiated` only applies to a new twin, since no twin goes back to it.
    """
    if current is None:
        return declared or "instantiated"
    if declared is not None and declared != "instantiated":
        return declared
    return "active" if current == "deprecated" else current
