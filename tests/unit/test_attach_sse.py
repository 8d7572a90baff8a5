"""The attach client's SSE parser: the standard's framing, and bounds a hostile service hits."""

from __future__ import annotations

import pytest

from dtp_console.attach.sse import SseError, SseEvent, SseParser


def _all(parser: SseParser, *chunks: bytes) -> list[SseEvent]:
    out: list[SseEvent] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def test_events_with_names_ids_and_multiline_data() -> None:
    stream = b'event: snapshot\nid: 1\ndata: {"a":\ndata: 1}\n\n: hb\n\ndata: x\n\n'
    events = _all(SseParser(), stream)
    assert events == [
        SseEvent("snapshot", '{"a":\n1}', "1"),
        SseEvent("message", "x", "1"),  # the id persists, as the standard says
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_and_any_chunking(newline: bytes) -> None:
    stream = newline.join([b"event: delta", b"data: {}", b"", b"event: log", b"data: y", b"", b""])
    whole = _all(SseParser(), stream)
    assert whole == [SseEvent("delta", "{}", None), SseEvent("log", "y", None)]
    for size in (1, 2, 3, 7):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert _all(SseParser(), *chunks) == whole, size


def test_a_heartbeat_is_counted_and_dispatches_nothing() -> None:
    parser = SseParser()
    assert _all(parser, b": hb\n\n: hb\n\n") == []
    assert parser.comments == 2


def test_an_event_without_data_is_not_dispatched() -> None:
    assert _all(SseParser(), b"event: snapshot\n\nretry: 5\nbogus\n\n") == []


def test_a_huge_line_is_refused_before_it_is_buffered() -> None:
    parser = SseParser(max_line=1024)
    with pytest.raises(SseError, match="line longer than 1024"):
        parser.feed(b"data: " + b"x" * 2000 + b"\n")


def test_a_line_that_never_ends_is_refused_across_chunks() -> None:
    parser = SseParser(max_line=1024)
    with pytest.raises(SseError, match="line longer"):  # noqa: PT012 - the feed loop is the point
        for _ in range(100):
            parser.feed(b"data: " + b"y" * 100)
    assert len(parser._buffer) <= 1024


def test_an_event_of_many_small_data_lines_is_bounded() -> None:
    parser = SseParser(max_line=1024, max_event=4096)
    with pytest.raises(SseError, match="event larger than 4096"):
        parser.feed(b"data: " + b"z" * 500 + b"\n" * 1 + (b"data: " + b"z" * 500 + b"\n") * 20)


def test_binary_noise_becomes_replacement_text_not_a_crash() -> None:
    events = _all(SseParser(), b"event: log\ndata: \xff\xfe\x00\x80ok\n\n")
    assert len(events) == 1
    assert events[0].data == "\ufffd\ufffd\x00\ufffdok"


def test_duplicate_ids_are_passed_through_in_order() -> None:
    stream = b"id: 7\ndata: a\n\nid: 7\ndata: b\n\n"
    assert [(e.id, e.data) for e in _all(SseParser(), stream)] == [("7", "a"), ("7", "b")]


def test_an_id_with_nul_is_ignored_and_a_long_one_refused() -> None:
    parser = SseParser()
    assert _all(parser, b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")[1].id == "1"
    with pytest.raises(SseError, match="id longer"):
        parser.feed(b"id: " + b"9" * 300 + b"\n")
