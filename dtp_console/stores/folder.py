"""The embedded blob store: objects under a folder, a manifest JSON beside each.

`<root>/<key>` holds the bytes and `<root>/<key>.manifest.json` the manifest
(key, size, sha256, content type, created, source). Both are written to a
temporary file and renamed into place, so a reader never sees half an object.
Keys are relative POSIX paths: no `..`, no absolute paths, no empty segments.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import uuid
from pathlib import Path, PurePosixPath

from dtp_console.atomic import write_bytes_atomic
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import BlobManifest

__all__ = ["MANIFEST_SUFFIX", "FolderBlobStore", "check_key", "make_manifest"]

#: Suffix of the manifest stored beside every object.
MANIFEST_SUFFIX = ".manifest.json"
_MAX_KEY = 1024


def check_key(key: str) -> str:
    """`key` when it is a safe relative object key; `StoreError` saying why otherwise."""
    problem = None
    if not key or len(key) > _MAX_KEY:
        problem = f"must be 1–{_MAX_KEY} characters"
    elif "\\" in key or "\x00" in key:
        problem = "must not contain a backslash or NUL"
    elif key.startswith("/") or PurePosixPath(key).is_absolute():
        problem = "must be relative"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        problem = "must not contain empty, `.` or `..` segments"
    elif key.endswith(MANIFEST_SUFFIX):
        problem = f"must not end in {MANIFEST_SUFFIX}"
    if problem:
        msg = f"blob key {key[:80]!r} {problem}"
        raise StoreError(msg)
    return key


def make_manifest(key: str, data: bytes, content_type: str, source: str) -> BlobManifest:
    """The manifest of `data` stored under `key`, created now."""
    return BlobManifest(
        key=key,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
        created=dt.datetime.now(dt.UTC),
        source=source,
    )


def _manifest_from(data: bytes) -> BlobManifest:
    raw = json.loads(data)
    return BlobManifest(
        key=str(raw["key"]),
        size=int(raw["size"]),
        sha256=str(raw["sha256"]),
        content_type=str(raw["content_type"]),
        created=dt.datetime.fromisoformat(raw["created"]),
        source=str(raw["source"]),
    )


class FolderBlobStore:
    """`BlobStore` on a local folder."""

    name = "folder"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FolderBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def open(self) -> None:
        """Create the folder (idempotent)."""
        try:
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"blob folder {self.root}: {exc.strerror or exc}"
            raise StoreError(msg) from None

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        """The folder exists and is writable."""
        ok = await asyncio.to_thread(lambda: self.root.is_dir() and os.access(self.root, os.W_OK))
        if not ok:
            msg = f"blob folder {self.root} is missing or not writable"
            raise StoreError(msg)

    async def put(self, key: str, data: bytes, content_type: str, source: str) -> BlobManifest:
        """Write the object, then its manifest (each atomically)."""
        path = self._path(key)
        manifest = make_manifest(key, data, content_type, source)
        body = json.dumps(manifest.as_dict(), indent=2).encode()

        def work() -> None:
            write_bytes_atomic(path, data)
            write_bytes_atomic(path.with_name(path.name + MANIFEST_SUFFIX), body)

        try:
            await asyncio.to_thread(work)
        except OSError as exc:
            msg = f"blob {key}: cannot write: {exc.strerror or exc}"
            raise StoreError(msg) from None
        return manifest

    async def get(self, key: str) -> bytes:
        """The object's bytes."""
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            msg = f"blob {key}: no such object"
            raise StoreError(msg) from None
        except OSError as exc:
            msg = f"blob {key}: cannot read: {exc.strerror or exc}"
            raise StoreError(msg) from None

    async def manifest(self, key: str) -> BlobManifest:
        """The object's manifest."""
        path = self._path(key)
        try:
            raw = await asyncio.to_thread(path.with_name(path.name + MANIFEST_SUFFIX).read_bytes)
            return _manifest_from(raw)
        except FileNotFoundError:
            msg = f"blob {key}: no manifest"
            raise StoreError(msg) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = f"blob {key}: unreadable manifest: {exc}".splitlines()[0]
            raise StoreError(msg) from None

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Keys of the stored objects under `prefix` (manifests excluded), sorted."""

        def work() -> list[str]:
            if not self.root.is_dir():
                return []
            keys = []
            for path in self.root.rglob("*"):
                name = path.name
                if path.is_file() and not name.endswith(MANIFEST_SUFFIX) and name[0] != ".":
                    key = path.relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        keys.append(key)
            return sorted(keys)

        return await asyncio.to_thread(work)

    async def delete(self, key: str) -> None:
        """Remove the object and its manifest (missing ones are fine)."""
        path = self._path(key)

        def work() -> None:
            path.unlink(missing_ok=True)
            path.with_name(path.name + MANIFEST_SUFFIX).unlink(missing_ok=True)

        try:
            await asyncio.to_thread(work)
        except OSError as exc:
            msg = f"blob {key}: cannot delete: {exc.strerror or exc}"
            raise StoreError(msg) from None

    async def probe(self) -> None:
        """Put a probe object, read it and its manifest back, delete it."""
        key = f"_probe/{uuid.uuid4().hex}.txt"
        data = f"dtp-console check {dt.datetime.now(dt.UTC).isoformat()}".encode()
        written = await self.put(key, data, "text/plain", "dtp-console check")
        try:
            if await self.get(key) != data:
                msg = f"blob folder {self.root}: probe read back different bytes"
                raise StoreError(msg)
            if (await self.manifest(key)).sha256 != written.sha256:
                msg = f"blob folder {self.root}: probe manifest does not match"
                raise StoreError(msg)
        finally:
            await self.delete(key)
