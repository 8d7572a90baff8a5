"""The twin lifecycle: allowed moves, refused moves, and the status a registration gives."""

from __future__ import annotations

import pytest

from dtp_console.registry.errors import IllegalTransitionError
from dtp_console.registry.lifecycle import (
    STATUSES,
    TwinStatus,
    check_transition,
    status_on_register,
)

ALLOWED = {
    ("instantiated", "active"),
    ("instantiated", "deprecated"),
    ("active", "deprecated"),
    ("deprecated", "active"),
}


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_transition_table(current: TwinStatus, target: TwinStatus) -> None:
    if current == target or (current, target) in ALLOWED:
        check_transition("dt:X", current, target)
        return
    with pytest.raises(IllegalTransitionError) as caught:
        check_transition("dt:X", current, target)
    assert caught.value.current == current
    assert caught.value.target == target


def test_illegal_transition_message_says_what_is_allowed() -> None:
    with pytest.raises(
        IllegalTransitionError,
        match=r"'dt:X' cannot go from active to "
        r"instantiated \(allowed from active: deprecated\)",
    ):
        check_transition("dt:X", "active", "instantiated")


@pytest.mark.parametrize(
    ("current", "declared", "expected"),
    [
        (None, None, "instantiated"),
        (None, "active", "active"),
        (None, "deprecated", "deprecated"),
        ("instantiated", None, "instantiated"),
        ("active", None, "active"),
        ("deprecated", None, "active"),  # a re-appearing file revives its twin
        ("active", "instantiated", "active"),  # never back to instantiated
        ("deprecated", "instantiated", "active"),
        ("active", "deprecated", "deprecated"),
        ("deprecated", "deprecated", "deprecated"),
        ("instantiated", "active", "active"),
    ],
)
def test_status_on_register(
    current: TwinStatus | None, declared: TwinStatus | None, expected: TwinStatus
) -> None:
    assert status_on_register(current, declared) == expected
