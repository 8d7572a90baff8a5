"""MinIO / S3 blob store (miniopy-async) with the manifest pattern.

Every object `<key>` has a JSON manifest beside it, `<key>.manifest.json`
(key, size, sha256, content_type, created, source). The bucket is created on
`open()` when missing: MinIO answers a re-creation with
`BucketAlreadyOwnedByYou`, moto (the test stand-in) accepts it silently — both
are fine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from typing import Any

import aiohttp
import orjson
from miniopy_async.api import Minio  # the package root does not re-export it for mypy
from miniopy_async.error import MinioException, S3Error

from dtp_console.stores.config import S3Config
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import BlobManifest
from dtp_console.urls import mask_url

__all__ = ["MANIFEST_SUFFIX", "PROBE_PREFIX", "S3BlobStore"]

MANIFEST_SUFFIX = ".manifest.json"
PROBE_PREFIX = "_probe/"
"""Probe objects live here and are removed after the read-back."""
_CONNECT_TIMEOUT_S = 5.0
_REQUEST_TIMEOUT_S = 30.0
_BUCKET_EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def _one_line(text: object, limit: int = 200) -> str:
    flat = mask_url(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class S3BlobStore:
    """Blobs and their manifests in one S3 bucket."""

    name: str

    def __init__(self, config: S3Config, *, name: str = "s3") -> None:
        if not config.endpoint:
            raise ValueError("s3: no endpoint configured")
        self.name = name
        self._config = config
        self._endpoint = config.endpoint
        self._bucket = config.bucket
        self._client: Minio | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifetime ---------------------------------------------------------------

    async def open(self) -> None:
        """Create the client (own session: bounded timeouts, no hidden retries) and the bucket."""
        if self._client is not None:
            return
        secret = self._config.secret_key.get_secret_value() if self._config.secret_key else None
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S)
        )
        self._client = Minio(
            self._endpoint,
            access_key=self._config.access_key,
            secret_key=secret,
            secure=self._config.secure,
            region=self._config.region,
            session=self._session,
        )
        try:
            await self._ensure_bucket()
        except StoreError:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        session, self._session, self._client = self._session, None, None
        if session is not None:
            await session.close()

    def _require(self) -> Minio:
        if self._client is None:
            raise StoreError(f"{self.name}: not open")
        return self._client

    def _error(self, op: str, exc: BaseException) -> StoreError:
        if isinstance(exc, S3Error):
            reason = f"{exc.code}: {exc.message}"
        elif isinstance(exc, MinioException | ValueError):
            reason = str(exc)
        else:
            reason = f"cannot reach {self._endpoint}: {exc or type(exc).__name__}"
        return StoreError(_one_line(f"{self.name} {op}: {reason}"))

    async def _ensure_bucket(self) -> None:
        client = self._require()
        try:
            if await client.bucket_exists(self._bucket):
                return
            await client.make_bucket(self._bucket)
        except S3Error as exc:
            if exc.code not in _BUCKET_EXISTS:  # created meanwhile, or MinIO's re-creation
                raise self._error(f"create bucket {self._bucket}", exc) from exc
        except (MinioException, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise self._error(f"create bucket {self._bucket}", exc) from exc

    # -- health -----------------------------------------------------------------

    async def ping(self) -> None:
        """HEAD the bucket."""
        client = self._require()
        try:
            exists = await client.bucket_exists(self._bucket)
        except (MinioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._error("ping", exc) from exc
        if not exists:
            raise StoreError(f"{self.name} ping: bucket {self._bucket} does not exist")

    async def probe(self) -> None:
        """Put a random probe object, get it back, compare sha256, remove it."""
        key = f"{PROBE_PREFIX}{os.urandom(8).hex()}"
        data = os.urandom(64)
        written = await self.put(key, data, "application/octet-stream", "dtp-console check")
        try:
            read = await self.get(key)
            if hashlib.sha256(read).hexdigest() != written.sha256:
                raise StoreError(f"{self.name} probe: object read back differs (sha256)")
            if (await self.manifest(key)).sha256 != written.sha256:
                raise StoreError(f"{self.name} probe: manifest read back differs (sha256)")
        finally:
            await self._remove(key, key + MANIFEST_SUFFIX)

    # -- blobs --------------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str, source: str) -> BlobManifest:
        """Store the object, then its manifest (a reader never finds a manifest without data)."""
        if key.endswith(MANIFEST_SUFFIX):
            raise StoreError(f"{self.name} put: key may not end in {MANIFEST_SUFFIX}: {key}")
        manifest = BlobManifest(
            key=key,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=content_type,
            created=dt.datetime.now(dt.UTC),
            source=source,
        )
        body = orjson.dumps(manifest.as_dict(), option=orjson.OPT_INDENT_2)
        await self._put_raw(key, data, content_type)
        await self._put_raw(key + MANIFEST_SUFFIX, body, "application/json")
        return manifest

    async def get(self, key: str) -> bytes:
        """The object's bytes."""
        return await self._get_raw(key)

    async def manifest(self, key: str) -> BlobManifest:
        """The object's manifest."""
        raw = await self._get_raw(key + MANIFEST_SUFFIX)
        try:
            data: dict[str, Any] = orjson.loads(raw)
            return BlobManifest(
                key=str(data["key"]),
                size=int(data["size"]),
                sha256=str(data["sha256"]),
                content_type=str(data["content_type"]),
                created=dt.datetime.fromisoformat(str(data["created"])),
                source=str(data["source"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(_one_line(f"{self.name} manifest {key}: malformed: {exc}")) from exc

    async def list(self, prefix: str = "") -> list[str]:
        """Keys of the objects under `prefix` (manifests and probe objects left out), sorted."""
        client = self._require()
        keys: list[str] = []
        try:
            async for obj in client.list_objects(self._bucket, prefix=prefix, recursive=True):
                name = obj.object_name
                if (
                    name
                    and not name.endswith(MANIFEST_SUFFIX)
                    and not name.startswith(PROBE_PREFIX)
                ):
                    keys.append(name)
        except (MinioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._error(f"list {prefix!r}", exc) from exc
        return sorted(keys)

    # -- raw objects --------------------------------------------------------------

    async def _put_raw(self, key: str, data: bytes, content_type: str) -> None:
        client = self._require()
        try:
            await client.put_object(
                self._bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )
        except (MinioException, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise self._error(f"put {key}", exc) from exc

    async def _get_raw(self, key: str) -> bytes:
        client = self._require()
        try:
            response = await client.get_object(self._bucket, key)
            try:
                return bytes(await response.read())
            finally:
                response.release()
        except (MinioException, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise self._error(f"get {key}", exc) from exc

    async def _remove(self, *keys: str) -> None:
        client = self._require()
        for key in keys:
            try:
                await client.remove_object(self._bucket, key)
            except (MinioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise self._error(f"remove {key}", exc) from exc
