"""Outside text is escaped visibly (textsafe), log lines are made safe, unknown ids fold."""

from __future__ import annotations

import pytest

from dtp_console.events import Bus, LogLine, OpsLog
from dtp_console.textsafe import has_unsafe, safe_text

# What a hostile vendor id looks like on the wire, and how the operator must see it.
HOSTILE = [
    ("amr-1\n OK forged", "amr-1\\n OK forged"),
    ("a\r\nb", "a\\r\\nb"),
    ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),
    ("csi\x9b2J", "csi\\x9b2J"),  # C1: a one-byte CSI on 8-bit terminals
    ("del\x7f", "del\\x7f"),
    ("nul\x00", "nul\\x00"),
    ("tab\there", "tab\\there"),
    ("amr\u202eevil", "amr\\u202eevil"),  # right-to-left override
    ("amr\u2066x\u2069", "amr\\u2066x\\u2069"),  # bidi isolates
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("line\u2028sep", "line\\u2028sep"),
    ("bom\ufeff", "bom\\ufeff"),
]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_control_and_format_characters_are_escaped_visibly(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown
    assert not has_unsafe(safe_text(raw))


@pytest.mark.parametrize(
    "text",
    ["tugger-05-old", "[red]x[/red]", "Hallé Nord · 3×", "C:\\plants\\old", "ロボット", "→ ✖ ●"],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    # Markup is not this module's business (the UI renders plain Text), and a
    # backslash alone is not escaped: ordinary lines read as before.
    assert safe_text(text) == text


def test_backslashes_are_escaped_when_anything_else_is() -> None:
    # Otherwise an id spelling `\n` itself could not be told from a real newline.
    assert safe_text("a\\nb\n") == "a\\\\nb\\n"


def test_escaping_is_idempotent() -> None:
    once = safe_text("a\x1b[2J\\b\n")
    assert safe_text(once) == once


def test_huge_values_are_cut() -> None:
    assert safe_text("x" * 100_000, limit=50) == "x" * 50 + "…"
    assert len(safe_text("\x1b" * 10_000, limit=10)) == 10 * 4 + 1
    assert safe_text("x" * 100_000, limit=None) == "x" * 100_000


def test_non_strings_are_shown_as_text() -> None:
    assert safe_text(ValueError("bad\nid")) == "bad\\nid"
    assert safe_text(42) == "42"


def test_a_log_line_cannot_forge_another() -> None:
    line = LogLine(level="WARN", text="Unknown ATI device: x\nOK tugger -> Plant: (1, 2)")
    assert "\n" not in line.render()
    assert line.render() == "WARN Unknown ATI device: x\\nOK tugger -> Plant: (1, 2)"
    assert LogLine(level="INFO", text="t", plant="P\x1b]0;x\x07").plant == "P\\x1b]0;x\\x07"


class _Lines:
    """Every log line published on `bus` so far, rendered (call it to catch up)."""

    def __init__(self, bus: Bus) -> None:
        self._subscription = bus.subscribe()
        self._lines: list[str] = []

    def __call__(self) -> list[str]:
        self._lines += [e.render() for e in self._subscription.drain() if isinstance(e, LogLine)]
        return self._lines


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """OpsLog's monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr("dtp_console.events.time.monotonic", lambda: now[0])
    return now


def _unknown(log: OpsLog, vendor_id: str) -> None:
    log.distinct(
        "WARN",
        "unknown:Old Plant",
        vendor_id,
        f"Unknown ATI device: {vendor_id} (add to device map)",
        "Old Plant",
        noun="unknown ATI devices",
    )


def test_1500_distinct_unknown_ids_are_5_lines_and_one_summary(clock: list[float]) -> None:
    bus = Bus()
    drain = _Lines(bus)
    log = OpsLog(bus, window_s=10.0)
    for n in range(1500):
        _unknown(log, f"ati_{n:04d}")
    lines = drain()
    assert lines == [f"WARN Unknown ATI device: ati_{n:04d} (add to device map)" for n in range(5)]
    clock[0] += 10.0
    log.flush()
    lines = drain()
    assert len(lines) == 6
    assert lines[-1] == (
        "WARN … and 1495 more unknown ATI devices in the last 10s (ati_0005, ati_0006, ati_0007, …)"
    )
    # The next window starts afresh: a few ids get their own line again.
    _unknown(log, "ati_1499")
    assert drain()[-1] == ("WARN Unknown ATI device: ati_1499 (add to device map)")


def test_one_unknown_id_repeating_keeps_the_old_fold(clock: list[float]) -> None:
    bus = Bus()
    drain = _Lines(bus)
    log = OpsLog(bus, window_s=10.0)
    for _ in range(10):
        _unknown(log, "ati_amr_999")
    clock[0] += 11.0
    _unknown(log, "ati_amr_999")
    assert drain() == [
        "WARN Unknown ATI device: ati_amr_999 (add to device map)",
        "WARN Unknown ATI device: ati_amr_999 (add to device map) (+9 like it in the last 10s)",
    ]


def test_a_summary_when_the_next_window_starts_without_a_flush(clock: list[float]) -> None:
    bus = Bus()
    drain = _Lines(bus)
    log = OpsLog(bus, window_s=10.0, distinct_max=2)
    for vendor_id in ("a", "b", "c", "d", "c"):
        _unknown(log, vendor_id)
    clock[0] += 10.0
    _unknown(log, "e")
    assert drain()[2:] == [
        "WARN … and 2 more unknown ATI devices in the last 10s (c, d)",
        "WARN Unknown ATI device: e (add to device map)",
    ]


def test_folded_ids_are_escaped_in_the_summary(clock: list[float]) -> None:
    bus = Bus()
    drain = _Lines(bus)
    log = OpsLog(bus, window_s=10.0, distinct_max=0)
    _unknown(log, "x\nOK forged")
    log.flush(final=True)
    assert drain() == ["WARN … and 1 more unknown ATI devices in the last 10s (x\\nOK forged)"]


def test_final_flush_publishes_what_is_pending_before_its_window_ends(clock: list[float]) -> None:
    bus = Bus()
    drain = _Lines(bus)
    log = OpsLog(bus, window_s=10.0, distinct_max=1)
    for _ in range(4):
        log.limited("FAIL", "post:tugger-03", "POST failed for tugger-03: 503", "Old Plant")
    _unknown(log, "a")
    _unknown(log, "b")
    clock[0] += 1.0
    log.flush()  # the housekeeping flush: windows still open, nothing yet
    assert len(drain()) == 2
    log.flush(final=True)
    assert drain()[2:] == [
        "FAIL POST failed for tugger-03: 503 (x3 in the last 10s)",
        "WARN … and 1 more unknown ATI devices in the last 10s (b)",
    ]
    log.flush(final=True)  # nothing twice
    assert len(drain()) == 4


def test_a_flood_of_folded_ids_is_bounded_in_memory(clock: list[float]) -> None:
    bus = Bus()
    drain = _Lines(bus)
    log = OpsLog(bus, window_s=10.0, distinct_max=0)
    for n in range(12_000):
        _unknown(log, f"{n:06d}" + "x" * 1_000)
    window = log._groups["unknown:Old Plant"]
    assert len(window.folded) == 10_000
    assert all(len(item) <= 64 for item in window.folded)
    log.flush(final=True)
    assert "… and 12000 more" in drain()[0]
