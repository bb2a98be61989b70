"""``kill -9`` at random moments loses no acknowledged push and leaves no corrupt visible blob."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from pathlib import Path

import aiohttp
import pytest

from tests.servers import filesystem_config, start_berth

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ROUNDS = 5


async def _pusher(url: str, acked: dict[str, bytes], tags: dict[str, str], stop: asyncio.Event,
                  round_no: int) -> None:
    """Push blobs (monolithic and chunked) and manifests until the server dies or ``stop``.

    Tags are unique per round: a PUT cut off by the kill may or may not have landed, so a tag
    must never be reused by a later round.
    """
    async with aiohttp.ClientSession() as session:
        n = 0
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            data = os.urandom(random.randint(1, 3) * 400_000)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            try:
                if n % 2:
                    async with session.post(f"{url}/v2/crash/blobs/uploads/?digest={digest}", data=data) as r:
                        ok = r.status == 201
                else:
                    async with session.post(f"{url}/v2/crash/blobs/uploads/") as r:
                        loc = r.headers["Location"]
                    half = len(data) // 2
                    async with session.patch(loc, data=data[:half]) as r:
                        loc = r.headers["Location"]
                    async with session.put(f"{loc}&digest={digest}", data=data[half:]) as r:
                        ok = r.status == 201
                if ok:
                    acked[digest] = data
                    cfg = json.dumps({"n": n, "t": time.time()}).encode()
                    cdig = "sha256:" + hashlib.sha256(cfg).hexdigest()
                    async with session.post(f"{url}/v2/crash/blobs/uploads/?digest={cdig}", data=cfg) as r:
                        if r.status != 201:
                            continue
                    acked[cdig] = cfg
                    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                      "digest": cdig, "size": len(cfg)},
                                           "layers": [{"mediaType": "application/octet-stream",
                                                       "digest": digest, "size": len(data)}]}).encode()
                    async with session.put(f"{url}/v2/crash/manifests/r{round_no}-t{n}", data=manifest,
                                           headers={"Content-Type": OCI_MANIFEST}) as r:
                        if r.status == 201:
                            tags[f"r{round_no}-t{n}"] = r.headers["Docker-Content-Digest"]
            except (aiohttp.ClientError, KeyError, asyncio.TimeoutError):
                return


def _visible_blobs_are_intact(root: Path) -> int:
    count = 0
    blobs = root / "docker/registry/v2/blobs/sha256"
    if not blobs.exists():
        return 0
    for data in blobs.glob("*/*/data"):
        assert hashlib.sha256(data.read_bytes()).hexdigest() == data.parent.name, f"corrupt blob {data}"
        count += 1
    return count


@pytest.mark.slow
async def test_kill_9_loses_no_acknowledged_push(tmp_path):
    root = tmp_path / "data"
    server = start_berth(filesystem_config(root), tmp_path / "berth")
    acked: dict[str, bytes] = {}
    tags: dict[str, str] = {}
    try:
        for round_no in range(ROUNDS):
            stop = asyncio.Event()
            task = asyncio.create_task(_pusher(server.url, acked, tags, stop, round_no))
            await asyncio.sleep(random.uniform(0.2, 0.8))
            server.kill()
            stop.set()
            await asyncio.wait_for(task, 30)
            server.start()
        assert acked, "the pusher never got an acknowledgement"
        async with aiohttp.ClientSession() as session:
            for digest, data in acked.items():
                async with session.get(f"{server.url}/v2/crash/blobs/{digest}") as r:
                    assert r.status == 200, digest
                    assert await r.read() == data
            for tag, digest in tags.items():
                async with session.get(f"{server.url}/v2/crash/manifests/{tag}",
                                       headers={"Accept": OCI_MANIFEST}) as r:
                    assert r.status == 200
                    assert r.headers["Docker-Content-Digest"] == digest
        assert _visible_blobs_are_intact(root) >= len(acked)
    finally:
        server.stop()
