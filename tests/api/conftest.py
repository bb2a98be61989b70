"""Fixtures for the API suite: the real app over every storage backend, driven by pytest-aiohttp."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestClient

from registry.app import create_app
from registry.config import parse_config
from storage_backends import StorageDriver, create_driver

BACKENDS = ["filesystem", "inmemory"]
if os.environ.get("BERTH_TEST_S3", "1") != "0":
    BACKENDS.append("s3")


def make_config(extra: str = "") -> Any:
    base = "version: 0.1\nstorage:\n  delete:\n    enabled: true\n"
    return parse_config(base + extra, environ={})


@pytest.fixture(params=BACKENDS)
async def driver(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[StorageDriver]:
    kind = request.param
    if kind == "filesystem":
        drv = create_driver("filesystem", {"rootdirectory": str(tmp_path / "data")})
    elif kind == "inmemory":
        drv = create_driver("inmemory")
    else:
        s3 = request.getfixturevalue("s3_params")
        drv = create_driver("s3", s3)
    yield drv
    await drv.close()


@pytest.fixture
def app_factory(driver: StorageDriver, aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    async def make(extra_config: str = "") -> TestClient:
        return await aiohttp_client(create_app(make_config(extra_config), driver=driver))

    return make


@pytest.fixture
async def client(app_factory: Callable[..., Any]) -> TestClient:
    return await app_factory()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(client: TestClient, name: str, data: bytes) -> str:
    digest = sha256(data)
    resp = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
    assert resp.status == 201, await resp.text()
    return digest


def image_manifest(config: bytes, layers: list[bytes], **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                    "size": len(layer)} for layer in layers],
    }
    doc.update(extra)
    return json.dumps(doc).encode()


async def push_image(client: TestClient, name: str, tag: str, layers: list[bytes] | None = None,
                     config: bytes | None = None, **extra: Any) -> tuple[str, bytes]:
    config = config if config is not None else json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    layers = layers if layers is not None else [os.urandom(1000)]
    for blob in [config, *layers]:
        await push_blob(client, name, blob)
    manifest = image_manifest(config, layers, **extra)
    resp = await client.put(f"/v2/{name}/manifests/{tag}", data=manifest,
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status == 201, await resp.text()
    return resp.headers["Docker-Content-Digest"], manifest


async def error_code(resp: Any) -> str:
    body = await resp.json()
    return str(body["errors"][0]["code"])


def rel(location: str) -> str:
    """A Location header as a path + query (the test client takes relative URLs)."""
    from yarl import URL

    return URL(location).path_qs if location.startswith("http") else location
