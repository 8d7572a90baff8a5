"""The state stream's gzip: every write inflatable at once, and a bomb that grows nothing."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from dtp_console.attach.gzip_stream import MAX_CHUNK, Gunzip, GzipError, GzipFrames, accepts_gzip
from dtp_console.attach.sse import SseError, SseParser


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip, deflate", True),
        ("GZip", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0", False),
        ("gzip;q=nonsense", False),
        ("deflate, br", False),
        ("identity", False),
        ("", False),
        (None, False),
        ("gzipped", False),
    ],
)
def test_accept_encoding_is_read_as_http_says(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


def _delta(n: int) -> bytes:
    devices = {
        f"hitech-amr-{i:03d}": {"x": 1000.0 + n + i, "y": 2000.5 - n, "messages": n * 10 + i}
        for i in range(100)
    }
    body = {"mono": 1234.5 + n / 10, "plants": {"Bench Plant": {"devices": devices}}}
    return b"event: delta\ndata: " + orjson.dumps(body) + b"\n\n"


def test_each_write_inflates_whole_without_the_next() -> None:
    frames, reader, parser = GzipFrames(), Gunzip(), SseParser()
    for n in range(20):
        raw = _delta(n)
        inflated = b"".join(reader.feed(frames.frame(raw)))
        assert inflated == raw  # nothing held back in either compressor
        events = [e for piece in [inflated] for e in parser.feed(piece)]
        assert [e.event for e in events] == ["delta"]
    assert frames.wire_bytes < frames.raw_bytes / 3  # the window spans frames
    assert reader.raw_bytes == frames.raw_bytes


def test_the_stream_is_standard_gzip() -> None:
    frames = GzipFrames()
    wire = frames.frame(b"event: a\ndata: 1\n\n") + frames.frame(b": hb\n\n") + frames.end()
    assert gzip.decompress(wire) == b"event: a\ndata: 1\n\n: hb\n\n"
    reader = Gunzip()
    assert b"".join(reader.feed(wire)) == b"event: a\ndata: 1\n\n: hb\n\n"


def test_byte_by_byte_arrival_inflates_the_same() -> None:
    frames = GzipFrames()
    wire = frames.frame(_delta(1)) + frames.frame(_delta(2))
    reader = Gunzip()
    out = b"".join(piece for i in range(len(wire)) for piece in reader.feed(wire[i : i + 1]))
    assert out == _delta(1) + _delta(2)


def _bomb(size: int, prefix: bytes = b"event: delta\ndata: ") -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"x" * (1024 * 1024)
    parts = [z.compress(prefix)]
    parts += [z.compress(block) for _ in range(size // len(block))]
    parts.append(z.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)


def test_a_zip_bomb_comes_out_a_bounded_piece_at_a_time() -> None:
    bomb = _bomb(64 * 1024 * 1024)
    assert len(bomb) < 200_000  # 64 MiB from less than 200 kB
    reader = Gunzip()
    pieces = reader.feed(bomb)
    first = next(pieces)
    assert len(first) <= MAX_CHUNK
    assert reader.raw_bytes <= MAX_CHUNK  # a generator: nothing more inflated yet
    biggest = max(len(p) for p in pieces)
    assert biggest <= MAX_CHUNK


def test_a_zip_bomb_ends_at_the_sse_line_cap_not_at_its_size() -> None:
    reader, parser = Gunzip(), SseParser()

    def follow() -> None:
        for piece in reader.feed(_bomb(1024 * 1024 * 1024)):
            parser.feed(piece)

    with pytest.raises(SseError, match="longer than"):
        follow()
    # Stopped just past the 8 MiB line cap, not after 1 GiB.
    assert reader.raw_bytes <= 8 * 1024 * 1024 + 2 * MAX_CHUNK


@pytest.mark.parametrize(
    "wire",
    [
        b"not gzip at all",
        b"\x1f\x8b\x08\x00" + b"\xff" * 40,  # a gzip header, then garbage
    ],
    ids=["plain", "garbage"],
)
def test_a_corrupt_stream_is_an_error(wire: bytes) -> None:
    with pytest.raises(GzipError, match="corrupt"):
        list(Gunzip().feed(wire))


def test_anything_after_the_end_is_an_error() -> None:
    frames = GzipFrames()
    wire = frames.frame(b": hb\n\n") + frames.end()
    with pytest.raises(GzipError, match="after the end"):
        list(Gunzip().feed(wire + gzip.compress(b"event: delta\ndata: {}\n\n")))
    reader = Gunzip()
    list(reader.feed(wire))
    with pytest.raises(GzipError, match="after the end"):
        list(reader.feed(b"more"))


def test_a_gzip_error_is_a_value_error() -> None:
    # RemoteEngine treats ValueError as a broken stream: drop the link, reconnect.
    assert issubclass(GzipError, ValueError)
