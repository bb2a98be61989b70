"""Restarts, replicas and races: uploads continue anywhere, concurrent writers stay consistent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.config import parse_config
from tests.api.conftest import image_manifest, push_blob, rel, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _fs_config(root: str, secret: str = "") -> Any:
    text = f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
    if secret:
        text += f"http:\n  secret: {secret}\n"
    return parse_config(text, environ={})


async def _start(config: Any) -> TestClient:
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    return client


async def test_upload_survives_restart(tmp_path):
    root = str(tmp_path / "data")
    data = os.urandom(2 * 1024 * 1024 + 5)
    first = await _start(_fs_config(root))
    resp = await first.post("/v2/restart/me/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    resp = await first.patch(loc, data=data[:1_000_000], headers={"Content-Range": "0-999999"})
    assert resp.status == 202
    loc = rel(resp.headers["Location"])
    await first.close()  # the process is gone; its in-memory hash state with it

    second = await _start(_fs_config(root))
    try:
        status = await second.get(loc)
        assert status.status == 204
        assert status.headers["Range"] == "0-999999"
        resp = await second.patch(loc, data=data[1_000_000:], headers={"Content-Range": f"1000000-{len(data) - 1}"})
        assert resp.status == 202
        loc = rel(resp.headers["Location"])
        resp = await second.put(f"{loc}&digest={sha256(data)}")
        assert resp.status == 201, await resp.text()
        assert await (await second.get(f"/v2/restart/me/blobs/{sha256(data)}")).read() == data
        # A wrong digest after a restart is still caught (the bytes are re-hashed).
        resp = await second.post("/v2/restart/me/blobs/uploads/")
        loc = rel(resp.headers["Location"])
        await second.patch(loc, data=b"abc")
    finally:
        await second.close()
    third = await _start(_fs_config(root))
    try:
        resp = await third.put(f"{loc}&digest={sha256(b'abd')}")
        assert resp.status == 400
    finally:
        await third.close()


async def test_two_replicas_alternate_requests(tmp_path):
    root = str(tmp_path / "shared")
    a = await _start(_fs_config(root, secret="shared-secret"))
    b = await _start(_fs_config(root, secret="shared-secret"))
    try:
        data = os.urandom(3 * 1024 * 1024)
        chunks = [data[i:i + 700_000] for i in range(0, len(data), 700_000)]
        resp = await a.post("/v2/rep/blobs/uploads/")
        loc = rel(resp.headers["Location"])
        offset = 0
        for i, chunk in enumerate(chunks):
            client = (a, b)[i % 2]
            resp = await client.patch(loc, data=chunk,
                                      headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            assert resp.status == 202, await resp.text()
            offset += len(chunk)
            loc = rel(resp.headers["Location"])
        resp = await b.put(f"{loc}&digest={sha256(data)}")
        assert resp.status == 201, await resp.text()
        assert await (await a.get(f"/v2/rep/blobs/{sha256(data)}")).read() == data
        config = b'{"r":1}'
        await push_blob(b, "rep", config)
        manifest = image_manifest(config, [data])
        assert (await a.put("/v2/rep/manifests/v1", data=manifest,
                            headers={"Content-Type": OCI_MANIFEST})).status == 201
        assert (await (await b.get("/v2/rep/tags/list")).json())["tags"] == ["v1"]
    finally:
        await a.close()
        await b.close()


async def test_many_clients_push_the_same_blob_and_tag(client):
    data = os.urandom(512 * 1024)
    digest = sha256(data)

    async def push_same() -> int:
        resp = await client.post("/v2/race/blobs/uploads/")
        loc = rel(resp.headers["Location"])
        resp = await client.put(f"{loc}&digest={digest}", data=data)
        return resp.status

    statuses = await asyncio.gather(*(push_same() for _ in range(16)))
    assert statuses == [201] * 16
    assert await (await client.get(f"/v2/race/blobs/{digest}")).read() == data

    configs = [json.dumps({"n": i}).encode() for i in range(12)]
    for cfg in configs:
        await push_blob(client, "race", cfg)
    manifests = [image_manifest(cfg, [data]) for cfg in configs]

    async def put_tag(body: bytes) -> int:
        resp = await client.put("/v2/race/manifests/latest", data=body, headers={"Content-Type": OCI_MANIFEST})
        return resp.status

    assert await asyncio.gather(*(put_tag(m) for m in manifests)) == [201] * 12
    got = await client.get("/v2/race/manifests/latest")
    body = await got.read()
    assert body in manifests
    assert got.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture
def only_filesystem(driver):  # noqa: D103 - marker-like fixture
    if driver.name != "filesystem":
        pytest.skip("filesystem layout check")


async def test_filesystem_layout_is_distributions(client, driver, only_filesystem):
    data = b"layout check"
    digest = await push_blob(client, "lay/out", data)
    hexd = digest.split(":")[1]
    root = driver.root
    assert open(f"{root}/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data", "rb").read() == data
    link = f"{root}/docker/registry/v2/repositories/lay/out/_layers/sha256/{hexd}/link"
    assert open(link).read() == digest
    config = b"{}"
    await push_blob(client, "lay/out", config)
    resp = await client.put("/v2/lay/out/manifests/v1", data=image_manifest(config, [data]),
                            headers={"Content-Type": OCI_MANIFEST})
    mdig = resp.headers["Docker-Content-Digest"]
    mhex = mdig.split(":")[1]
    base = f"{root}/docker/registry/v2/repositories/lay/out/_manifests"
    assert open(f"{base}/revisions/sha256/{mhex}/link").read() == mdig
    assert open(f"{base}/tags/v1/current/link").read() == mdig
    assert open(f"{base}/tags/v1/index/sha256/{mhex}/link").read() == mdig
    # no temporary files are left behind
    leftovers = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.startswith(".berth-")]
    assert leftovers == []


async def test_stale_uploads_are_purged(client, driver):
    from registry.appkeys import REGISTRY

    resp = await client.post("/v2/purge/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    await client.patch(loc, data=b"partial")
    registry = client.server.app[REGISTRY]
    assert await registry.purge_uploads(older_than=3600) == []
    purged = await registry.purge_uploads(older_than=-1)
    assert len(purged) == 1
    assert (await client.get(loc)).status == 404
