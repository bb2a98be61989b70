"""Two Berth processes on one S3 bucket, no sticky sessions; redirects on and off."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import aiohttp
import pytest

from tests.servers import start_berth

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
pytestmark = pytest.mark.s3


def _config(s3_params: dict[str, Any], **storage: Any) -> dict[str, Any]:
    params = {k: v for k, v in s3_params.items()}
    return {"version": 0.1, "log": {"level": "info", "formatter": "text"},
            "http": {"addr": "127.0.0.1:0", "secret": "replica-shared-secret"},
            "storage": {"s3": params, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}, **storage}}


def _abs(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


async def test_push_alternating_between_two_replicas(s3_params, tmp_path):
    a = start_berth(_config(s3_params), tmp_path / "a")
    b = start_berth(_config(s3_params), tmp_path / "b")
    try:
        data = os.urandom(12 * 1024 * 1024 + 333)  # more than two S3 parts
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        chunk = 5 * 1024 * 1024
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{a.url}/v2/shared/app/blobs/uploads/") as r:
                assert r.status == 202
                loc = _abs(a.url, r.headers["Location"])
            for i, off in enumerate(range(0, len(data), chunk)):
                part = data[off:off + chunk]
                target = (b, a)[i % 2]
                # Send each request to the other replica (as a load balancer might).
                url = loc.replace(a.url, target.url).replace(b.url, target.url)
                async with s.patch(url, data=part, headers={"Content-Range": f"{off}-{off + len(part) - 1}"}) as r:
                    assert r.status == 202, await r.text()
                    loc = _abs(target.url, r.headers["Location"])
            url = loc.replace(a.url, b.url)
            async with s.put(f"{url}&digest={digest}") as r:
                assert r.status == 201, await r.text()
            # Pullable through the other replica at once.
            async with s.get(f"{a.url}/v2/shared/app/blobs/{digest}") as r:
                assert r.status == 200
                assert await r.read() == data
            config = json.dumps({"os": "linux"}).encode()
            cdig = "sha256:" + hashlib.sha256(config).hexdigest()
            async with s.post(f"{a.url}/v2/shared/app/blobs/uploads/?digest={cdig}", data=config) as r:
                assert r.status == 201
            manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                              "digest": cdig, "size": len(config)},
                                   "layers": [{"mediaType": "application/octet-stream", "digest": digest,
                                               "size": len(data)}]}).encode()
            async with s.put(f"{b.url}/v2/shared/app/manifests/v1", data=manifest,
                             headers={"Content-Type": OCI_MANIFEST}) as r:
                assert r.status == 201
            async with s.get(f"{a.url}/v2/shared/app/tags/list") as r:
                assert (await r.json())["tags"] == ["v1"]
            async with s.get(f"{a.url}/v2/_catalog") as r:
                assert "shared/app" in (await r.json())["repositories"]
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("disable", [False, True])
async def test_blob_get_redirects_or_streams_with_range(s3_params, tmp_path, disable):
    server = start_berth(_config(s3_params, redirect={"disable": disable}), tmp_path / "r")
    try:
        data = os.urandom(300_000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{server.url}/v2/redir/blobs/uploads/?digest={digest}", data=data) as r:
                assert r.status == 201
            async with s.get(f"{server.url}/v2/redir/blobs/{digest}", allow_redirects=False) as r:
                assert r.status == (200 if disable else 307)
                if not disable:
                    assert r.headers["Location"].startswith(s3_params["regionendpoint"])
            async with s.get(f"{server.url}/v2/redir/blobs/{digest}", headers={"Range": "bytes=1000-1999"}) as r:
                assert r.status == 206
                assert await r.read() == data[1000:2000]
            async with s.get(f"{server.url}/v2/redir/blobs/{digest}") as r:
                assert await r.read() == data
    finally:
        server.stop()
