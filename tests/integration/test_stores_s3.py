"""S3 blob adapter against moto's server: bucket, put, get, manifest, list, probe, outage.

A real MinIO/S3 is exercised only when `DTP_TEST_S3_URL` is set
(`http://127.0.0.1:9000`, with `DTP_TEST_S3_ACCESS_KEY` / `DTP_TEST_S3_SECRET_KEY`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import orjson
import pytest
from pydantic import SecretStr

from dtp_console.stores.config import S3Config
from dtp_console.stores.protocols import BlobStore, StoreError
from dtp_console.stores.s3 import MANIFEST_SUFFIX, S3BlobStore
from tests.support.moto_s3 import MotoS3Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3Server]:
    """One moto server for the module (a test may stop and restart it)."""
    with MotoS3Server() as server:
        yield server


def config_for(server: MotoS3Server, bucket: str) -> S3Config:
    # moto accepts any keys; these are not credentials anywhere.
    return S3Config(
        endpoint=server.endpoint,
        access_key="moto-test",
        secret_key=SecretStr("moto-test-secret"),
        bucket=bucket,
        secure=False,
        region="us-east-1",
    )


@pytest.fixture
async def store(moto: MotoS3Server) -> AsyncIterator[S3BlobStore]:
    adapter = S3BlobStore(config_for(moto, f"dtp-test-{uuid.uuid4().hex[:12]}"))
    await adapter.open()
    yield adapter
    await adapter.close()


def test_adapter_satisfies_the_protocol() -> None:
    adapter: BlobStore = S3BlobStore(S3Config(endpoint="127.0.0.1:1"))
    assert adapter.name == "s3"
    with pytest.raises(ValueError, match="no endpoint"):
        S3BlobStore(S3Config())


async def test_open_creates_the_bucket_and_is_repeatable(moto: MotoS3Server) -> None:
    bucket = f"dtp-test-{uuid.uuid4().hex[:12]}"
    first, second = S3BlobStore(config_for(moto, bucket)), S3BlobStore(config_for(moto, bucket))
    await first.open()
    await first.open()  # idempotent
    await second.open()  # bucket already there
    try:
        await first.ping()
        await second.ping()
    finally:
        await first.close()
        await second.close()
        await first.close()


async def test_put_get_manifest_list(store: S3BlobStore) -> None:
    data = b"plant: demo\ndevices: []\n"
    before = dt.datetime.now(dt.UTC)
    written = await store.put("device-maps/demo/2026.yaml", data, "application/yaml", "editor")
    assert written.size == len(data)
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    assert before <= written.created <= dt.datetime.now(dt.UTC)

    assert await store.get("device-maps/demo/2026.yaml") == data
    assert await store.manifest("device-maps/demo/2026.yaml") == written
    raw = await store.get("device-maps/demo/2026.yaml" + MANIFEST_SUFFIX)
    assert orjson.loads(raw) == written.as_dict()

    await store.put("twins/lift-1/twin.yaml", b"id: lift-1\n", "application/yaml", "registry")
    await store.put("device-maps/demo/2027.yaml", b"x", "application/yaml", "editor")
    assert await store.list() == [
        "device-maps/demo/2026.yaml",
        "device-maps/demo/2027.yaml",
        "twins/lift-1/twin.yaml",
    ]
    assert await store.list("twins/") == ["twins/lift-1/twin.yaml"]

    # Rewriting a key replaces object and manifest.
    again = await store.put("twins/lift-1/twin.yaml", b"id: lift-1\nv: 2\n", "text/x", "registry")
    assert (await store.manifest("twins/lift-1/twin.yaml")).sha256 == again.sha256


async def test_probe_leaves_nothing_behind(store: S3BlobStore) -> None:
    await store.probe()
    assert await store.list() == []
    # list() hides `_probe/`; ask the bucket itself that the probe removed its objects.
    raw = [obj.object_name async for obj in store._require().list_objects(store._bucket)]
    assert raw == []


async def test_missing_key_and_bad_key_are_store_errors(store: S3BlobStore) -> None:
    with pytest.raises(StoreError, match=r"^s3 get nope: NoSuchKey"):
        await store.get("nope")
    with pytest.raises(StoreError, match=r"^s3 get nope\.manifest\.json: NoSuchKey"):
        await store.manifest("nope")
    with pytest.raises(StoreError, match="may not end in"):
        await store.put("a.manifest.json", b"", "text/plain", "test")


async def test_not_open_is_a_store_error(moto: MotoS3Server) -> None:
    adapter = S3BlobStore(config_for(moto, "dtp-never-opened"))
    with pytest.raises(StoreError, match="not open"):
        await adapter.get("x")


async def test_server_down_then_back(store: S3BlobStore, moto: MotoS3Server) -> None:
    await store.put("kept.bin", b"kept", "application/octet-stream", "test")
    moto.stop()
    try:
        with pytest.raises(StoreError, match=r"^s3 ping: cannot reach 127\.0\.0\.1:") as e:
            await store.ping()
        assert "\n" not in str(e.value)
        with pytest.raises(StoreError, match=r"^s3 put new\.bin: cannot reach"):
            await store.put("new.bin", b"new", "application/octet-stream", "test")
        with pytest.raises(StoreError, match=r"^s3 get kept\.bin: cannot reach"):
            await store.get("kept.bin")
        unreachable = S3BlobStore(config_for(moto, "dtp-down"))
        with pytest.raises(StoreError, match=r"^s3 create bucket dtp-down: cannot reach"):
            await unreachable.open()
    finally:
        moto.start()
    await store.ping()
    assert await store.get("kept.bin") == b"kept"  # moto's state lives in this process
    await store.put("new.bin", b"new", "application/octet-stream", "test")
    await store.probe()


@pytest.mark.skipif(
    not os.environ.get("DTP_TEST_S3_URL"),
    reason="needs a real MinIO/S3 (set DTP_TEST_S3_URL): moto stands in otherwise",
)
async def test_real_minio_round_trip() -> None:
    url = urlsplit(os.environ["DTP_TEST_S3_URL"])
    adapter = S3BlobStore(
        S3Config(
            endpoint=url.netloc,
            access_key=os.environ.get("DTP_TEST_S3_ACCESS_KEY"),
            secret_key=SecretStr(os.environ.get("DTP_TEST_S3_SECRET_KEY", "")),
            bucket=os.environ.get("DTP_TEST_S3_BUCKET", "dtp-test"),
            secure=url.scheme == "https",
        )
    )
    await adapter.open()
    again = S3BlobStore(adapter._config)
    await again.open()  # MinIO raises BucketAlreadyOwnedByYou on re-creation: tolerated
    try:
        await adapter.probe()
        written = await adapter.put("dtp-test/real.txt", b"real", "text/plain", "test")
        assert await again.manifest("dtp-test/real.txt") == written
    finally:
        await again.close()
        await adapter.close()
