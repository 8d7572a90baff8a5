"""The state stream's compression: one gzip stream per client, flushed after every write.

At 1,000 msg/s on a 100-robot plant every device changes every tick, and the
deltas are JSON whose keys and most digits repeat from tick to tick: gzip with
one window kept across frames takes them to a fraction (measured in
BENCHMARKS.md, "Attach"). Each write ends with a sync flush, so a frame reaches
the client whole as soon as it is written — it never waits in the compressor for
the next one (aiohttp's `enable_compression` compresses without flushing until
the response ends, which would hold a delta back until the buffer filled).

The reader (`Gunzip`) inflates incrementally and never more than `max_chunk`
bytes per step, so a hostile service's "zip bomb" grows nothing: what comes out
goes to the SSE parser, whose line and event caps apply to the inflated bytes.
Pure functions and objects: no I/O, no aiohttp.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = ["Gunzip", "GzipError", "GzipFrames", "accepts_gzip"]

#: zlib's wbits for a gzip member (header and CRC trailer), 32 KiB window.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
#: Compression level: 6 (zlib's default) is within a few % of 9 on these frames and
#: about half its CPU.
LEVEL = 6
#: Largest piece the reader inflates at once (what a zip bomb can make in one step).
MAX_CHUNK = 256 * 1024


class GzipError(ValueError):
    """The compressed stream is corrupt, or goes on after its end."""


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` header accepts `gzip` (a `q=0` refuses it)."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in {"gzip", "x-gzip"}:
            continue
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class GzipFrames:
    """One client's compressor: `frame(data)` is the bytes that deliver `data` now."""

    def __init__(self, level: int = LEVEL) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        self.raw_bytes = 0
        """Bytes given to it."""
        self.wire_bytes = 0
        """Bytes it made (what goes on the socket)."""

    def frame(self, data: bytes) -> bytes:
        """`data` compressed and sync-flushed: the client can inflate all of it at once."""
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        self.raw_bytes += len(data)
        self.wire_bytes += len(out)
        return out

    def end(self) -> bytes:
        """The end of the gzip member (its CRC and length); nothing may follow."""
        out = self._z.flush(zlib.Z_FINISH)
        self.wire_bytes += len(out)
        return out


class Gunzip:
    """Inflates a gzip stream as it arrives, in pieces of at most `max_chunk` bytes."""

    def __init__(self, max_chunk: int = MAX_CHUNK) -> None:
        self._z = zlib.decompressobj(_GZIP_WBITS)
        self._max = max_chunk
        self.wire_bytes = 0
        """Compressed bytes read."""
        self.raw_bytes = 0
        """Bytes inflated."""

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The inflated pieces of `data` (a generator: take one before the next is made)."""
        self.wire_bytes += len(data)
        pending = data
        while True:
            if self._z.eof:
                if pending or self._z.unused_data:
                    raise GzipError("data after the end of the compressed stream")
                return
            try:
                out = self._z.decompress(pending, self._max)
            except zlib.error as exc:
                raise GzipError(f"corrupt compressed stream: {exc}") from None
            pending = self._z.unconsumed_tail
            if out:
                self.raw_bytes += len(out)
                yield out
            if not pending and len(out) < self._max:
                if self._z.eof and self._z.unused_data:
                    raise GzipError("data after the end of the compressed stream")
                return
