"""The one atomic-file writer: a temporary file beside the target, fsync, rename, fsync the folder.

A reader (the console's config watcher, a dashboard reading the stats JSON, a
blob fetch) sees the old content or the new, never half of either. The config
writer, the folder blob store and `--stats-json` all write through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes_atomic", "write_json_atomic"]


def write_bytes_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path`'s content with `data` atomically (parents created); `OSError` on failure.

    `mode` sets the new file's permission bits (default: what `mkstemp` gives, 0600).
    The temporary file is removed whatever goes wrong, and the rename is made durable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically."""
    write_bytes_atomic(path, json.dumps(data, indent=2).encode("utf-8"))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); best effort elsewhere."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
