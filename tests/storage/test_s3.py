"""The storage contract over the S3 backend (SeaweedFS), plus S3-only behaviour and faults."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage_backends.base import PathNotFound, StorageUnavailable
from storage_backends.s3 import S3Driver
from tests.s3server import SeaweedFS, free_port, seaweedfs
from tests.storage.contract import (
    DriverContract,
    DriverFactory,
    MiB,
    digest_of,
    listing_or_empty,
    pattern,
    read_all,
    write_in_pieces,
)

pytestmark = pytest.mark.s3


class TestS3Driver(DriverContract):
    """Each test gets its own root directory in the shared bucket; parts are the 5 MiB minimum."""

    @pytest.fixture
    def driver_factory(self, s3_server: SeaweedFS) -> DriverFactory:
        root = f"/contract/{uuid.uuid4().hex}"
        return lambda: S3Driver(**s3_server.driver_params(
            rootdirectory=root, chunksize=5 * MiB, multipartcopythresholdsize=5 * MiB,
            multipartcopychunksize=5 * MiB, timeout=10, maxthreads=8,
        ))


# ---- S3-only behaviour ----
FAULT_TIMEOUT = 3.0  # the driver's `timeout` in fault tests
BACKOFF_SLACK = 4.0  # botocore's standard retry back-off (at most ~3 s for 3 attempts) plus scheduling


@pytest.fixture
def root() -> str:
    """A fresh root directory in the shared bucket."""
    return f"/s3/{uuid.uuid4().hex}"


@pytest.fixture
async def s3_driver(s3_server: SeaweedFS, root: str) -> AsyncIterator[S3Driver]:
    """An S3 driver with 5 MiB parts under a fresh root."""
    driver = S3Driver(**s3_server.driver_params(rootdirectory=root, chunksize=5 * MiB))
    yield driver
    await driver.close()


def _keys(server: SeaweedFS, prefix: str) -> list[str]:
    client = server.client()
    try:
        resp = client.list_objects_v2(Bucket=server.bucket, Prefix=prefix)
        return sorted(obj["Key"] for obj in resp.get("Contents") or [])
    finally:
        client.close()


def _uploads(server: SeaweedFS, prefix: str) -> list[dict[str, Any]]:
    client = server.client()
    try:
        return list(client.list_multipart_uploads(Bucket=server.bucket, Prefix=prefix).get("Uploads") or [])
    finally:
        client.close()


def _parts(server: SeaweedFS, key: str, upload_id: str) -> list[int]:
    client = server.client()
    try:
        resp = client.list_parts(Bucket=server.bucket, Key=key, UploadId=upload_id)
        return [int(p["Size"]) for p in resp.get("Parts") or []]
    finally:
        client.close()


async def test_keys_follow_distribution_layout(s3_server: SeaweedFS) -> None:
    tag = uuid.uuid4().hex
    path = f"/docker/registry/v2/repositories/r{tag}/_manifests/tags/latest/current/link"
    roots = ((f"/layout-{tag}", f"layout-{tag}/"), (f"layout2-{tag}/", f"layout2-{tag}/"), ("", ""))
    for rootdirectory, prefix in roots:
        driver = S3Driver(**s3_server.driver_params(rootdirectory=rootdirectory))
        try:
            await driver.put_content(path, b"sha256:abc")
            keys = await asyncio.to_thread(_keys, s3_server, f"{prefix}docker/registry/v2/repositories/r{tag}/")
            assert f"{prefix}{path[1:]}" in keys
            await driver.delete(f"/docker/registry/v2/repositories/r{tag}")
        finally:
            await driver.close()


async def test_serves_objects_written_by_others(s3_server: SeaweedFS, root: str) -> None:
    """A bucket laid out by Distribution (or any S3 tool) is read as it is."""
    key = f"{root[1:]}/docker/registry/v2/blobs/sha256/ab/abcdef/data"
    client = s3_server.client()
    try:
        await asyncio.to_thread(client.put_object, Bucket=s3_server.bucket, Key=key, Body=b"layer bytes")
    finally:
        client.close()
    driver = S3Driver(**s3_server.driver_params(rootdirectory=root))
    try:
        assert await driver.get_content("/docker/registry/v2/blobs/sha256/ab/abcdef/data") == b"layer bytes"
        blobs = "/docker/registry/v2/blobs/sha256/ab"
        assert await driver.list(blobs) == [f"{blobs}/abcdef"]
    finally:
        await driver.close()


async def test_close_keeps_parts_and_small_tail(s3_server: SeaweedFS, s3_driver: S3Driver, root: str) -> None:
    key = f"{root[1:]}/uploads/u1/data"
    state = f"{root[1:]}/uploads/u1/.berth-writer-data"
    data = pattern(7 * MiB + 3)
    w = await s3_driver.writer("/uploads/u1/data")
    await w.write(data)
    await w.close()
    uploads = await asyncio.to_thread(_uploads, s3_server, key)
    assert [u["Key"] for u in uploads] == [key]
    assert await asyncio.to_thread(_parts, s3_server, key, uploads[0]["UploadId"]) == [5 * MiB]
    assert await asyncio.to_thread(_keys, s3_server, f"{root[1:]}/uploads/") == [state]
    assert await s3_driver.list("/uploads/u1") == []  # the state object is hidden
    with pytest.raises(PathNotFound):
        await s3_driver.stat("/uploads/u1/data")

    w2 = await s3_driver.writer("/uploads/u1/data", append=True)
    assert w2.size == len(data)
    await w2.write(b"end")
    await w2.commit()
    assert await digest_of(s3_driver, "/uploads/u1/data") == (hashlib.sha256(data + b"end").hexdigest(), len(data) + 3)
    assert await asyncio.to_thread(_keys, s3_server, f"{root[1:]}/uploads/") == [key]
    assert await asyncio.to_thread(_uploads, s3_server, key) == []


async def test_cancel_and_delete_leave_no_uploads(s3_server: SeaweedFS, s3_driver: S3Driver, root: str) -> None:
    w = await s3_driver.writer("/c/one")
    await w.write(pattern(6 * MiB))
    await w.cancel()
    w = await s3_driver.writer("/c/dir/two")
    await w.write(pattern(6 * MiB))
    await w.close()
    await s3_driver.put_content("/c/dir/other", b"x")
    await s3_driver.delete("/c/dir")
    assert await asyncio.to_thread(_uploads, s3_server, f"{root[1:]}/") == []
    assert await asyncio.to_thread(_keys, s3_server, f"{root[1:]}/") == []


async def test_large_move_uses_multipart_copy(s3_server: SeaweedFS, root: str) -> None:
    driver = S3Driver(**s3_server.driver_params(
        rootdirectory=root, multipartcopythresholdsize=5 * MiB, multipartcopychunksize=5 * MiB,
    ))
    try:
        data = pattern(11 * MiB + 1)
        await driver.put_content("/mv/src", data)
        await driver.move("/mv/src", "/mv/dst")
        assert await digest_of(driver, "/mv/dst") == (hashlib.sha256(data).hexdigest(), len(data))
        client = s3_server.client()
        try:
            head = await asyncio.to_thread(client.head_object, Bucket=s3_server.bucket, Key=f"{root[1:]}/mv/dst")
        finally:
            client.close()
        assert head["ETag"].strip('"').endswith("-2")  # 5 MiB + 6 MiB (the 1-byte remainder folded in)
        assert not await driver.exists("/mv/src")
    finally:
        await driver.close()


async def test_redirect_url_serves_the_object(s3_driver: S3Driver) -> None:
    await s3_driver.put_content("/redirect/blob", b"direct bytes")
    url = await s3_driver.redirect_url("/redirect/blob")
    assert url is not None
    head_url = await s3_driver.redirect_url("/redirect/blob", method="HEAD")
    assert head_url is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == b"direct bytes"
        async with session.head(head_url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(b"direct bytes"))
    assert await s3_driver.redirect_url("/redirect/blob", method="PUT") is None


async def test_missing_bucket_is_unavailable(s3_server: SeaweedFS) -> None:
    driver = S3Driver(**s3_server.driver_params(bucket=f"berth-missing-{uuid.uuid4().hex[:12]}", timeout=FAULT_TIMEOUT))
    try:
        with pytest.raises(StorageUnavailable):
            await driver.health()
        with pytest.raises(StorageUnavailable):
            await driver.get_content("/x")
    finally:
        await driver.close()


async def test_default_credential_chain(
    s3_server: SeaweedFS, root: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    driver = S3Driver(**s3_server.driver_params(rootdirectory=root, accesskey="", secretkey=""))
    try:
        await driver.put_content("/chain", b"from the environment")
        assert await driver.get_content("/chain") == b"from the environment"
    finally:
        await driver.close()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    driver = S3Driver(**s3_server.driver_params(rootdirectory=root, accesskey="", secretkey="", timeout=FAULT_TIMEOUT))
    try:
        with pytest.raises(StorageUnavailable, match="credentials"):
            await driver.get_content("/chain")
    finally:
        await driver.close()


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        S3Driver(bucket="")
    with pytest.raises(ValueError):
        S3Driver(bucket="b", chunksize=MiB)
    with pytest.raises(ValueError, match="together"):
        S3Driver(bucket="b", accesskey="only-the-access-key")


async def test_credentials_never_in_errors_or_logs(
    s3_server: SeaweedFS, root: str, caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "WRONGsecret" + uuid.uuid4().hex
    cases = [
        {"secretkey": secret},  # the right key id, a wrong secret
        {"accesskey": "AKIAUNKNOWN" + uuid.uuid4().hex[:9].upper(), "secretkey": secret},
        {"regionendpoint": f"http://127.0.0.1:{free_port()}", "secretkey": secret},  # nobody listens
    ]
    caplog.set_level(logging.DEBUG)
    for overrides in cases:
        params = s3_server.driver_params(rootdirectory=root, timeout=FAULT_TIMEOUT, loglevel="debug", **overrides)
        driver = S3Driver(**params)
        secrets = [params["accesskey"], params["secretkey"]]
        operations: list[Callable[[], Awaitable[object]]] = [partial(driver.get_content, "/x"), driver.health]
        if "regionendpoint" not in overrides:  # each call to a closed port spends seconds in retry back-off
            operations += [
                partial(driver.put_content, "/x", b"1"), partial(driver.stat, "/x"), partial(driver.list, "/"),
            ]
        try:
            for operation in operations:
                with pytest.raises(StorageUnavailable) as info:
                    await operation()
                exc = info.value
                assert exc.__cause__ is None and exc.__suppress_context__
                text = f"{exc} {exc!r} {exc.args}"
                for s in secrets:
                    assert s not in text
            assert all(s not in repr(driver) for s in secrets)
        finally:
            await driver.close()
        for s in secrets:
            assert s not in caplog.text
    assert "storage_backends.s3" in {r.name for r in caplog.records}


async def test_unreachable_endpoint_fails_fast() -> None:
    driver = S3Driver(
        bucket="b", accesskey="AKIAEXAMPLE", secretkey="secret-example-key", forcepathstyle=True,
        regionendpoint=f"http://127.0.0.1:{free_port()}", timeout=FAULT_TIMEOUT,
    )
    try:
        for operation in (driver.health, lambda: driver.get_content("/a"), lambda: read_all(driver, "/a", 3)):
            began = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await operation()
            assert time.monotonic() - began < FAULT_TIMEOUT + BACKOFF_SLACK
    finally:
        await driver.close()


async def test_stalled_endpoint_times_out() -> None:
    """A server that accepts connections but never answers: bounded by the timeout, never a hang."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes handshakes; nobody ever reads or replies
        port = listener.getsockname()[1]
        driver = S3Driver(
            bucket="b", accesskey="AKIAEXAMPLE", secretkey="secret-example-key", forcepathstyle=True,
            regionendpoint=f"http://127.0.0.1:{port}", timeout=1.5,
        )
        try:
            began = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await driver.stat("/a")
            assert time.monotonic() - began < 1.5 + BACKOFF_SLACK
        finally:
            await driver.close()


# ---- the server goes away and comes back ----
@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS of its own, since these tests stop it."""
    with seaweedfs(root=tmp_path_factory.mktemp("seaweedfs-faults")) as server:
        yield server


async def test_server_stopped_mid_write_then_restarted(fault_server: SeaweedFS) -> None:
    if fault_server.pid is None:
        await asyncio.to_thread(fault_server.start)
    driver = S3Driver(**fault_server.driver_params(rootdirectory="/faults", chunksize=5 * MiB, timeout=FAULT_TIMEOUT))
    data = pattern(12 * MiB, 99)
    try:
        w = await driver.writer("/blobs/b1/data")
        await w.write(data[:6 * MiB])  # one 5 MiB part is uploaded
        await asyncio.to_thread(fault_server.stop)
        began = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await w.write(data[6 * MiB:])
            await w.commit()
        assert time.monotonic() - began < FAULT_TIMEOUT + BACKOFF_SLACK
        for operation in (lambda: driver.stat("/blobs/b1/data"), driver.health, lambda: driver.list("/blobs")):
            began = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await operation()
            assert time.monotonic() - began < FAULT_TIMEOUT + BACKOFF_SLACK

        await asyncio.to_thread(fault_server.start)
        await driver.health()
        with pytest.raises(PathNotFound):
            await driver.stat("/blobs/b1/data")
        assert await listing_or_empty(driver, "/blobs/b1") == []

        retry = await driver.writer("/blobs/b1/data")
        assert retry.size == 0
        await write_in_pieces(retry, data, MiB)
        await retry.commit()
        assert await digest_of(driver, "/blobs/b1/data") == (hashlib.sha256(data).hexdigest(), len(data))
        assert await asyncio.to_thread(_uploads, fault_server, "faults/") == []
    finally:
        await driver.close()


async def test_closed_upload_survives_a_restart(fault_server: SeaweedFS) -> None:
    if fault_server.pid is None:
        await asyncio.to_thread(fault_server.start)
    driver = S3Driver(**fault_server.driver_params(rootdirectory="/faults", chunksize=5 * MiB, timeout=FAULT_TIMEOUT))
    data = pattern(8 * MiB + 5, 98)
    try:
        w = await driver.writer("/blobs/b2/data")
        await w.write(data[:6 * MiB + 1])
        await w.close()
        await asyncio.to_thread(fault_server.restart)
        w2 = await driver.writer("/blobs/b2/data", append=True)
        assert w2.size == 6 * MiB + 1
        await w2.write(data[6 * MiB + 1:])
        await w2.commit()
        assert await digest_of(driver, "/blobs/b2/data") == (hashlib.sha256(data).hexdigest(), len(data))
    finally:
        await driver.close()
