"""Fixtures for the operations suite: storage over every backend, apps with access logging, push helpers.

``storage`` yields a :class:`Storage`: a factory of driver instances over one
fresh, shared storage (filesystem directory, S3 prefix in SeaweedFS, or one
in-memory store), so a test can run the registry on one instance and garbage
collection on another — as ``berth gc`` next to ``berth serve`` would.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from tests.api.conftest import image_manifest, push_blob, sha256  # noqa: F401 - re-exported
from registry.config import Config, parse_config
from registry.observability import server_kwargs
from storage_backends import StorageDriver, create_driver
from tests.s3server import SeaweedFS

BACKENDS: list[Any] = ["filesystem", "inmemory"]
if os.environ.get("BERTH_TEST_S3", "1") != "0":
    BACKENDS.append(pytest.param("s3", marks=pytest.mark.s3))

@dataclass
class Storage:
    """One storage location and every driver instance opened on it."""

    kind: str
    params: dict[str, Any]
    drivers: list[StorageDriver] = field(default_factory=list)
    _shared: StorageDriver | None = None

    def open(self) -> StorageDriver:
        """A new driver instance over the same storage (the same one for in-memory)."""
        if self.kind == "inmemory":
            if self._shared is None:
                self._shared = create_driver("inmemory")
                self.drivers.append(self._shared)
            return self._shared
        driver = create_driver(self.kind, dict(self.params))
        self.drivers.append(driver)
        return driver

    def config_section(self) -> dict[str, Any]:
        """The ``storage`` driver section naming this location (not for in-memory)."""
        return {self.kind: dict(self.params)}


def storage_params(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Driver parameters for a fresh location of ``kind``."""
    if kind == "filesystem":
        return {"rootdirectory": str(tmp_path / "data")}
    if kind == "s3":
        server: SeaweedFS = request.getfixturevalue("s3_server")  # the session's (tests/conftest.py)
        return server.driver_params(rootdirectory=f"/ops/{uuid.uuid4().hex}", timeout=10, maxthreads=8)
    return {}


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    kind = request.param
    store = Storage(kind, storage_params(kind, tmp_path, request))
    yield store
    for driver in store.drivers:
        await driver.close()


def make_config(extra: str = "") -> Config:
    """Deletes enabled, upload purging off, plus ``extra`` YAML."""
    base = ("version: 0.1\nstorage:\n  delete:\n    enabled: true\n  maintenance:\n"
            "    uploadpurging:\n      enabled: false\n")
    return parse_config(base + extra, environ={})


@pytest.fixture
def app_client(aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    """``await app_client(driver, extra_yaml)``: a test client of a full app with Berth's access logger."""

    async def make(driver: StorageDriver | None, extra: str = "", config: Config | None = None) -> TestClient:
        cfg = config or make_config(extra)
        server = TestServer(create_app(cfg, driver=driver))
        await server.start_server(**server_kwargs())  # runner options reach aiohttp only this way
        return await aiohttp_client(server)

    return make


# ---------------------------------------------------------------------------------- push helpers


# sha256, push_blob and image_manifest are the API suite's (re-exported for the ops tests).


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


async def put_manifest(client: TestClient, name: str, ref: str, body: bytes,
                       media_type: str = OCI_MANIFEST) -> str:
    """PUT a manifest; returns its digest."""
    resp = await client.put(f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type})
    assert resp.status == 201, await resp.text()
    return str(resp.headers["Docker-Content-Digest"])


async def push_image(client: TestClient, name: str, tag: str, layers: list[bytes] | None = None,
                     config: bytes | None = None, **extra: Any) -> tuple[str, bytes, list[bytes]]:
    """Push config, layers and a manifest tagged ``tag``; returns (digest, manifest, blobs)."""
    config = config if config is not None else json.dumps({"os": "linux", "tag": tag, "n": uuid.uuid4().hex}).encode()
    layers = layers if layers is not None else [os.urandom(1000)]
    for blob in [config, *layers]:
        await push_blob(client, name, blob)
    manifest = image_manifest(config, layers, **extra)
    digest = await put_manifest(client, name, tag, manifest)
    return digest, manifest, [config, *layers]


async def pull_ok(client: TestClient, name: str, ref: str, manifest: bytes, blobs: list[bytes]) -> None:
    """The manifest and every blob come back byte-identical."""
    resp = await client.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert resp.status == 200, f"{name}:{ref} -> {resp.status} {await resp.text()}"
    assert await resp.read() == manifest
    for blob in blobs:
        resp = await client.get(f"/v2/{name}/blobs/{sha256(blob)}")
        assert resp.status == 200, f"{name} blob {sha256(blob)} -> {resp.status}"
        assert await resp.read() == blob
