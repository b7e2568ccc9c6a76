"""The blob store: content-addressed, durable before it answers, verified when read back.

There is no S3 service on this machine: the S3 store is tested against moto's S3-compatible
server, started locally on a free port (speaking the S3 REST API over HTTP), when the `s3` extra
and moto are installed; otherwise those tests are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.blobs import BlobError, LocalBlobStore, S3BlobStore, blob_store_from_settings, sha256_of
from tests.conftest import free_port, make_settings


async def test_local_store_round_trip_and_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"\xff\xd8\xff" + os.urandom(5000)
    sha = sha256_of(data)
    await store.put(sha, data)
    await store.put(sha, data)  # the same bytes again: nothing changes
    assert await store.get(sha) == data
    assert await store.exists(sha)
    path = store.path_of(sha)
    assert path == tmp_path / "blobs" / sha[:2] / sha[2:4] / sha
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # no temporary file left behind


async def test_local_store_refuses_a_wrong_name_and_detects_corruption(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"photo bytes"
    with pytest.raises(BlobError):
        await store.put("0" * 64, data)
    with pytest.raises(ValueError):
        store.path_of("../../etc/passwd")
    sha = sha256_of(data)
    await store.put(sha, data)
    store.path_of(sha).write_bytes(b"bit rot")
    with pytest.raises(BlobError, match="corrupt"):
        await store.get(sha)
    with pytest.raises(BlobError, match="missing"):
        await store.get(sha256_of(b"never stored"))


def test_settings_choose_the_store(tmp_path: Path) -> None:
    local = blob_store_from_settings(make_settings("postgresql://x/y", tmp_path))
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "blobs"
    with pytest.raises(RuntimeError, match="S3_BUCKET"):
        blob_store_from_settings(make_settings("postgresql://x/y", tmp_path, blob_store="s3"))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("aiobotocore")
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def test_s3_store_round_trip(s3_endpoint: str) -> None:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket="photos-test")
    store = S3BlobStore("photos-test", prefix="p/", endpoint_url=s3_endpoint, region="us-east-1")
    try:
        data = os.urandom(300_000)
        sha = sha256_of(data)
        assert not await store.exists(sha)
        await store.put(sha, data)
        await store.put(sha, data)
        assert await store.exists(sha)
        assert await store.get(sha) == data
        with pytest.raises(BlobError, match="missing"):
            await store.get(sha256_of(b"absent"))
        with pytest.raises(BlobError):
            await store.put(sha256_of(b"other"), data)
    finally:
        await store.close()
