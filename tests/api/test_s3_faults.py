"""S3 failing under a live registry: spec-format 503 within the timeout, then a clean retry."""

from __future__ import annotations

import hashlib
import json
import os
import time

import aiohttp
import pytest

from tests.s3server import seaweedfs
from tests.servers import start_berth

pytestmark = [pytest.mark.s3, pytest.mark.slow]
TIMEOUT = 4


async def test_s3_outage_mid_push_then_retry(tmp_path):
    with seaweedfs(root=tmp_path / "weed") as weed:
        params = weed.driver_params(rootdirectory="/faults", timeout=TIMEOUT)
        config = {"version": 0.1, "http": {"addr": "127.0.0.1:0", "secret": "s"},
                  "log": {"level": "debug", "formatter": "text"},
                  "storage": {"s3": params, "redirect": {"disable": True},
                              "maintenance": {"uploadpurging": {"enabled": False}}}}
        server = start_berth(config, tmp_path / "berth")
        try:
            data = os.urandom(7 * 1024 * 1024)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            async with aiohttp.ClientSession() as s:
                async with s.post(f"{server.url}/v2/f/blobs/uploads/") as r:
                    loc = r.headers["Location"]
                async with s.patch(loc, data=data[:6 * 1024 * 1024]) as r:
                    assert r.status == 202
                    loc = r.headers["Location"]
                weed.stop()  # S3 goes away in the middle of the push
                started = time.monotonic()
                async with s.put(f"{loc}&digest={digest}", data=data[6 * 1024 * 1024:]) as r:
                    elapsed = time.monotonic() - started
                    assert r.status == 503
                    body = await r.json()
                    assert body["errors"][0]["code"] == "UNAVAILABLE"
                assert elapsed < TIMEOUT * 3 + 5
                async with s.get(f"{server.url}/v2/f/tags/list") as r:
                    assert r.status == 503
                weed.start()
                # The blob is not visible; a fresh push of the same bytes succeeds.
                async with s.head(f"{server.url}/v2/f/blobs/{digest}") as r:
                    assert r.status == 404
                async with s.post(f"{server.url}/v2/f/blobs/uploads/?digest={digest}", data=data) as r:
                    assert r.status == 201, await r.text()
                async with s.get(f"{server.url}/v2/f/blobs/{digest}") as r:
                    assert await r.read() == data
                config_blob = json.dumps({"os": "linux"}).encode()
                cdig = "sha256:" + hashlib.sha256(config_blob).hexdigest()
                async with s.post(f"{server.url}/v2/f/blobs/uploads/?digest={cdig}", data=config_blob) as r:
                    assert r.status == 201
        finally:
            server.stop()
        log = server.log()
        assert params["secretkey"] not in log
        assert params["accesskey"] not in log
