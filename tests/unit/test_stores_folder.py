"""The embedded blob store: objects plus manifests, atomic writes, safe keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dtp_console.stores.folder import MANIFEST_SUFFIX, FolderBlobStore, check_key
from dtp_console.stores.protocols import StoreError


@pytest.fixture
async def store(tmp_path: Path) -> FolderBlobStore:
    blobs = FolderBlobStore(tmp_path / "blobs")
    await blobs.open()
    return blobs


async def test_put_get_manifest(store: FolderBlobStore) -> None:
    data = b'{"tug-1": "tugger-01"}'
    manifest = await store.put("device-maps/old/1.json", data, "application/json", "device-map")
    assert manifest.size == len(data)
    assert manifest.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.get("device-maps/old/1.json") == data
    assert await store.manifest("device-maps/old/1.json") == manifest
    on_disk = json.loads((store.root / "device-maps/old/1.json.manifest.json").read_text())
    assert set(on_disk) == {"key", "size", "sha256", "content_type", "created", "source"}
    assert on_disk["content_type"] == "application/json"


async def test_overwrite_is_atomic_and_leaves_no_temp_files(store: FolderBlobStore) -> None:
    await store.put("a/b.txt", b"one", "text/plain", "t")
    await store.put("a/b.txt", b"two", "text/plain", "t")
    assert await store.get("a/b.txt") == b"two"
    assert (await store.manifest("a/b.txt")).size == 3
    assert sorted(p.name for p in (store.root / "a").iterdir()) == [
        "b.txt",
        "b.txt" + MANIFEST_SUFFIX,
    ]
    assert await store.list_keys() == ["a/b.txt"]
    assert await store.list_keys("device-maps/") == []


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "./a", "a\\b", "x.manifest.json", "a/"],
)
async def test_unsafe_keys_are_refused(store: FolderBlobStore, key: str) -> None:
    with pytest.raises(StoreError, match="blob key"):
        await store.put(key, b"x", "text/plain", "t")
    with pytest.raises(StoreError, match="blob key"):
        check_key(key)
    assert not (store.root.parent / "escape").exists()


async def test_missing_object_is_a_store_error(store: FolderBlobStore) -> None:
    with pytest.raises(StoreError, match="no such object"):
        await store.get("nope.txt")
    with pytest.raises(StoreError, match="no manifest"):
        await store.manifest("nope.txt")


async def test_ping_and_probe(store: FolderBlobStore, tmp_path: Path) -> None:
    await store.ping()
    await store.probe()
    assert await store.list_keys() == []  # the probe cleans up
    missing = FolderBlobStore(tmp_path / "never-created")
    with pytest.raises(StoreError, match="missing or not writable"):
        await missing.ping()


async def test_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = FolderBlobStore(blocker / "blobs")
    with pytest.raises(StoreError, match="blob folder"):
        await store.open()
    with pytest.raises(StoreError, match="cannot write"):
        await store.put("a.txt", b"x", "text/plain", "t")
