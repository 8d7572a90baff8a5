"""The gzip'd state stream: the real service's, and a hostile stand-in's bombs and garbage.

The service compresses `/api/console/state` when the client accepts gzip, one
window per client, a sync flush per write (`attach.gzip_stream`); `RemoteEngine`
inflates it itself, a bounded piece at a time, so the SSE parser's 8 MiB line and
16 MiB event caps hold for what a compressed stream expands to.
"""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from dtp_console.attach.client import RemoteEngine
from dtp_console.attach.gzip_stream import Gunzip, GzipFrames
from dtp_console.attach.sse import SseEvent, SseParser
from tests.integration.test_attach_api import _console
from tests.integration.test_attach_client import (
    Rig,
    StandIn,
    _frame,
    _running,
    _until,
)
from tests.support.api import TOKENS, auth, served
from tests.support.engine import until

pytestmark = pytest.mark.integration


# -- the real service -------------------------------------------------------------------


async def test_the_service_sends_gzip_when_asked_and_every_write_inflates_at_once(
    tmp_path: Path,
) -> None:
    async with _console(tmp_path, rate=20.0) as console:
        feed = console.engine.api.console.feed
        async with console.session.get(
            console.url + "/api/console/state?devices=Old%20Plant",
            headers={**auth("viewer-a"), "Accept-Encoding": "gzip"},
            auto_decompress=False,
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Encoding"] == "gzip"
            assert "Accept-Encoding" in resp.headers["Vary"]
            reader, parser = Gunzip(), SseParser()
            events: list[SseEvent] = []
            async with asyncio.timeout(10):
                # The snapshot arrives whole without waiting for anything after it.
                while not any(e.event == "snapshot" for e in events):
                    chunk = await resp.content.readany()
                    assert chunk
                    for piece in reader.feed(chunk):
                        events += parser.feed(piece)
                while sum(e.event == "delta" for e in events) < 5:
                    chunk = await resp.content.readany()
                    for piece in reader.feed(chunk):
                        events += parser.feed(piece)
        assert events[0].event == "snapshot"
        assert reader.wire_bytes < reader.raw_bytes / 2
        assert feed.stats.wire_bytes < feed.stats.bytes


async def test_a_client_that_does_not_accept_gzip_gets_plain_text(tmp_path: Path) -> None:
    async with _console(tmp_path) as console:
        for accept in ("identity", "gzip;q=0", "br"):
            async with console.session.get(
                console.url + "/api/console/state",
                headers={**auth("viewer-a"), "Accept-Encoding": accept},
                auto_decompress=False,
            ) as resp:
                assert resp.status == 200
                assert "Content-Encoding" not in resp.headers
                head = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
                assert head.startswith(b"retry: ")


async def test_an_attached_engine_reads_the_compressed_stream(tmp_path: Path) -> None:
    async with _console(tmp_path, rate=20.0) as console:
        engine = await RemoteEngine.open(console.url, TOKENS["viewer-a"][0], tls=False)
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        try:
            await until(lambda: engine.frames >= 5, what="deltas applied")
            await until(
                lambda: len(engine.state.plants["Old Plant"].devices) >= 2,
                what="the mapped devices in the replica",
            )
            assert engine.link.state == "up"
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        feed = console.engine.api.console.feed
        assert 0 < engine.wire_bytes < feed.stats.bytes  # what it read was compressed


# -- a hostile stand-in -----------------------------------------------------------------


class GzipStandIn(StandIn):
    """The stand-in, compressing its stream. Knobs: `encoding` (the header it claims),
    `raw_after` (bytes sent as they are after the snapshot), `bomb` (sent instead of the
    first stream's snapshot)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_after = b""
        self.encoding = "gzip"
        self.bomb: bytes | None = None

    async def state(self, request: web.Request) -> web.StreamResponse:
        self.role(request)
        self.streams += 1
        self.cut.clear()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Content-Encoding": self.encoding}
        )
        await response.prepare(request)
        if self.bomb is not None and self.streams == 1:
            for at in range(0, len(self.bomb), 65536):
                await response.write(self.bomb[at : at + 65536])
            await self.cut.wait()
            return response
        frames = GzipFrames()
        await response.write(frames.frame(_frame("snapshot", self.snapshot())))
        if self.raw_after:
            await response.write(self.raw_after)
        while not self.cut.is_set():
            getting = asyncio.ensure_future(self.pushed.get())
            cutting = asyncio.ensure_future(self.cut.wait())
            await asyncio.wait({getting, cutting}, return_when=asyncio.FIRST_COMPLETED)
            cutting.cancel()
            if not getting.done():
                getting.cancel()
                break
            await response.write(frames.frame(getting.result()))
        return response


@pytest.fixture
async def gzip_rig() -> AsyncIterator[Rig]:
    standin = GzipStandIn()
    async with served(standin.app()) as url:
        try:
            yield Rig(standin, url)
        finally:
            standin.cut.set()


def _standin(rig: Rig) -> GzipStandIn:
    assert isinstance(rig.standin, GzipStandIn)
    return rig.standin


async def test_a_gzip_stream_is_followed(gzip_rig: Rig) -> None:
    engine, _ = await gzip_rig.attach()

    async def work() -> None:
        await _until(lambda: engine.link.state == "up")
        delta = {"mono": 1.0, "plants": {"Old Plant": {"devices": {"ati_amr_001": {"x": 5.0}}}}}
        gzip_rig.standin.pushed.put_nowait(_frame("delta", delta))
        await _until(lambda: engine.state.plants["Old Plant"].devices["ati_amr_001"].x == 5.0)

    await _running(engine, work)


def _bomb(size: int) -> bytes:
    """One gzip'd `data:` line of `size` bytes of `x`, sync-flushed (no end)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"x" * (1024 * 1024)
    parts = [z.compress(b"event: snapshot\ndata: ")]
    parts += [z.compress(block) for _ in range(size // len(block))]
    parts.append(z.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)


async def test_a_zip_bomb_drops_the_link_without_growing_memory(gzip_rig: Rig) -> None:
    """1 GiB of one `data:` line in ~1 MB of gzip, as the service's first frame."""
    standin = _standin(gzip_rig)
    standin.bomb = _bomb(1024 * 1024 * 1024)
    assert len(standin.bomb) < 2_000_000
    engine, _ = await gzip_rig.attach()
    tracemalloc.start()
    try:

        async def work() -> None:
            await _until(lambda: standin.streams >= 1, timeout=30)
            await _until(lambda: engine.link.state == "down", timeout=60)
            # The next link is a fresh stream: a snapshot this time.
            standin.cut.set()
            await _until(lambda: engine.snapshots >= 1, timeout=60)

        await _running(engine, work)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "longer than" in engine.link.detail or engine.snapshots >= 1
    assert standin.streams >= 2  # the bomb dropped the link; the next one came up
    assert peak < 64 * 1024 * 1024, peak  # the 8 MiB line cap held, not 1 GiB


@pytest.mark.parametrize(
    ("encoding", "raw_after"),
    [
        ("gzip", b"\x00\xff garbage that is no deflate block"),
        ("gzip", gzip.compress(b"event: delta\ndata: {}\n\n")),
        ("br", b""),
    ],
    ids=["corrupt", "second-member-mid-stream", "unasked-encoding"],
)
async def test_a_broken_compressed_stream_drops_the_link_and_reconnects(
    gzip_rig: Rig, encoding: str, raw_after: bytes
) -> None:
    standin = _standin(gzip_rig)
    standin.encoding, standin.raw_after = encoding, raw_after
    engine, _ = await gzip_rig.attach()

    async def work() -> None:
        why = "not gzip or plain" if encoding == "br" else "corrupt compressed stream"
        await _until(lambda: engine.link.state == "down" and why in engine.link.detail)
        await _until(lambda: standin.streams >= 2)  # and it tries again
        if encoding == "br":
            assert engine.snapshots == 0  # a stream it did not ask for is never read

    await _running(engine, work)
