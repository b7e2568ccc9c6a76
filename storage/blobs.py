"""Photo bytes, stored content-addressed by their SHA-256 behind a small interface.

The default store keeps files under `data_dir/blobs/ab/cd/<sha256>`: each write goes to a
temporary file that is fsynced, then renamed into place and its directory fsynced, so a blob that
`put` returned for survives a crash and a reader never sees a half-written file. The S3 store
(an optional extra: `pip install carmileage[s3]`) keeps objects under `<prefix><sha256>` in one
bucket of any S3-compatible service. Both verify a blob's hash when it is read back.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any, Protocol

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobError(RuntimeError):
    """A blob is missing, or its bytes no longer match its name."""


class BlobStore(Protocol):
    name: str

    async def put(self, sha256: str, data: bytes) -> None:
        """Store `data` under its hash; idempotent. Returns only once the bytes are durable."""

    async def get(self, sha256: str) -> bytes:
        """The bytes, checked against their hash; BlobError when missing or corrupt."""

    async def exists(self, sha256: str) -> bool: ...

    async def close(self) -> None: ...


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(sha256: str) -> None:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")


def _verified(sha256: str, data: bytes) -> bytes:
    if sha256_of(data) != sha256:
        raise BlobError(f"blob {sha256} is corrupt: its bytes hash to something else")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    """Files under a directory; safe for several processes sharing it."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path_of(self, sha256: str) -> Path:
        _check_name(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _put(self, sha256: str, data: bytes) -> None:
        final = self.path_of(sha256)
        if final.exists() and final.stat().st_size == len(data):
            return
        self.tmp.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{sha256}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        _fsync_dir(final.parent.parent)

    async def put(self, sha256: str, data: bytes) -> None:
        _verified(sha256, data)
        await asyncio.to_thread(self._put, sha256, data)

    def _get(self, sha256: str) -> bytes:
        try:
            data = self.path_of(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobError(f"blob {sha256} is missing") from None
        return _verified(sha256, data)

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self._get, sha256)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path_of(sha256).exists)

    async def close(self) -> None:
        return None


class S3BlobStore:
    """Objects in an S3-compatible bucket through aiobotocore (the optional `s3` extra)."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "photos/",
        endpoint_url: str | None = None,
        region: str | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        try:
            from aiobotocore.session import get_session
        except ImportError as e:  # pragma: no cover - depends on the extra
            raise RuntimeError("the s3 blob store needs the s3 extra: pip install 'carmileage[s3]'") from e
        self.bucket = bucket
        self.prefix = prefix
        self._session = get_session()
        self._options = {"endpoint_url": endpoint_url, "region_name": region, **(client_options or {})}
        self._client: Any = None
        self._client_cm: Any = None
        self._lock = asyncio.Lock()

    def key_of(self, sha256: str) -> str:
        _check_name(sha256)
        return f"{self.prefix}{sha256}"

    async def _s3(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client_cm = self._session.create_client("s3", **self._options)
                self._client = await self._client_cm.__aenter__()
        return self._client

    async def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        s3 = await self._s3()
        try:
            await s3.head_object(Bucket=self.bucket, Key=self.key_of(sha256))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def put(self, sha256: str, data: bytes) -> None:
        import base64

        _verified(sha256, data)
        if await self.exists(sha256):
            return
        s3 = await self._s3()
        # The service checks the SHA-256 itself and refuses a body that does not match it.
        await s3.put_object(
            Bucket=self.bucket,
            Key=self.key_of(sha256),
            Body=data,
            ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
            ContentType="application/octet-stream",
        )

    async def get(self, sha256: str) -> bytes:
        from botocore.exceptions import ClientError

        s3 = await self._s3()
        try:
            resp = await s3.get_object(Bucket=self.bucket, Key=self.key_of(sha256))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise BlobError(f"blob {sha256} is missing") from None
            raise
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return _verified(sha256, data)

    async def close(self) -> None:
        async with self._lock:
            if self._client_cm is not None:
                await self._client_cm.__aexit__(None, None, None)
                self._client = self._client_cm = None


def blob_store_from_settings(settings: Any) -> BlobStore:
    """The store the settings name (`blob_store`: local or s3)."""
    if settings.blob_store == "s3":
        if not settings.s3_bucket:
            raise RuntimeError("CARMILEAGE_S3_BUCKET is required when CARMILEAGE_BLOB_STORE=s3")
        return S3BlobStore(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
    return LocalBlobStore(Path(settings.data_dir) / "blobs")
