"""Garbage collection racing with pushes: no acknowledged push ever loses a blob.

* A deterministic interleaving of the reported race: a manifest ``PUT`` has verified
  its (old, unreferenced) blobs, GC marks without seeing it and quarantines them,
  then the ``PUT`` commits — GC must put the blobs back.
* Pushers push continuously (new layers, a shared base layer, re-uploads of old
  garbage, chunked and monolithic uploads) while GC runs back to back with no grace
  period at all; afterwards every push that was acknowledged pulls back complete.
* With a short, realistic grace period no push even fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any

from yarl import URL

from registry import layout
from registry.digest import Digest
from registry.maintenance import GCOptions, GCReport, collect_garbage
from tests.ops.conftest import Storage, image_manifest, pull_ok, push_blob, push_image, sha256
from tests.ops.faults import HookedDriver

GATE_TIMEOUT = 20.0


async def test_blobs_verified_by_a_manifest_put_before_the_sweep_are_put_back(storage: Storage,
                                                                             app_client: Any) -> None:
    name = "team/app"
    config, layer = b'{"os": "linux"}', os.urandom(4096)
    manifest = image_manifest(config, [layer])
    revision = layout.revision_link(name, Digest.parse(sha256(manifest)))
    layer_data = layout.blob_data(Digest.parse(sha256(layer)))
    inner = storage.open()
    paused = asyncio.Event()

    async def app_hook(op: str, paths: tuple[str, ...]) -> None:
        if op == "put_content" and paths[0] == revision:
            paused.set()
            # Hold the commit until GC has moved the verified layer out of the way.
            for _ in range(int(GATE_TIMEOUT / 0.01)):
                if not await inner.exists(layer_data):
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("GC never quarantined the layer")

    client = await app_client(HookedDriver(inner, app_hook))
    await push_blob(client, name, config)
    await push_blob(client, name, layer)  # unreferenced until the manifest lands
    put = asyncio.create_task(client.put(f"/v2/{name}/manifests/v1", data=manifest,
                                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
    await asyncio.wait_for(paused.wait(), GATE_TIMEOUT)

    report = await collect_garbage(storage.open(), GCOptions(grace_period=0, clock_slack=0, quarantine=1.0))

    resp = await put
    assert resp.status == 201, await resp.text()
    assert report.blobs == {}
    assert {sha256(layer), sha256(config), sha256(manifest)} <= set(report.rescued)
    await pull_ok(client, name, "v1", manifest, [config, layer])


async def _upload(client: Any, name: str, data: bytes, rng: random.Random) -> int:
    """Monolithic or chunked (POST, PATCH..., PUT); returns the final status."""
    digest = sha256(data)
    if rng.random() < 0.5:
        resp = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
        return int(resp.status)
    resp = await client.post(f"/v2/{name}/blobs/uploads/")
    if resp.status != 202:
        return int(resp.status)
    location = URL(resp.headers["Location"]).path_qs
    half = len(data) // 2
    for start, chunk in ((0, data[:half]), (half, data[half:])):
        resp = await client.patch(location, data=chunk, headers={
            "Content-Range": f"{start}-{start + len(chunk) - 1}", "Content-Type": "application/octet-stream"})
        if resp.status != 202:
            return int(resp.status)
        location = URL(resp.headers["Location"]).path_qs
    sep = "&" if "?" in location else "?"
    resp = await client.put(f"{location}{sep}digest={digest}")
    return int(resp.status)


async def _race(storage: Storage, app_client: Any, options: GCOptions, runs: int, reuse_garbage: bool,
                settle: float) -> tuple[list[tuple[str, str, bytes, list[bytes]]], list[str], list[GCReport], set[str]]:
    """Push continuously while ``runs`` collections run back to back; returns what happened."""
    client = await app_client(storage.open())
    base = os.urandom(3000)
    await push_image(client, "base/image", "v1", layers=[base])
    garbage = [os.urandom(2500) for _ in range(6)]
    garbage_digests = {await push_blob(client, f"old/junk{i % 2}", g) for i, g in enumerate(garbage)}
    deleted_image, _, deleted_blobs = await push_image(client, "old/deleted", "v1")
    assert (await client.delete(f"/v2/old/deleted/manifests/{deleted_image}")).status == 202
    garbage_digests |= {deleted_image} | {sha256(b) for b in deleted_blobs}
    await asyncio.sleep(settle)  # let the garbage age past the grace period

    pushed: list[tuple[str, str, bytes, list[bytes]]] = []
    failures: list[str] = []
    reports: list[GCReport] = []
    done = asyncio.Event()

    async def pusher(i: int) -> None:
        rng = random.Random(i)
        for n in range(400):
            if done.is_set() and n > 2:
                return
            name = f"race/p{i}"
            tag = f"t{n}"
            layers = [os.urandom(rng.randint(100, 6000)), base]
            if reuse_garbage and n % 2 == 0:
                layers.append(rng.choice(garbage))
            config = json.dumps({"pusher": i, "n": n}).encode()
            statuses = [await _upload(client, name, blob, rng) for blob in [config, *layers]]
            if any(s != 201 for s in statuses):
                failures.append(f"upload {statuses}")
                continue
            body = image_manifest(config, layers)
            resp = await client.put(f"/v2/{name}/manifests/{tag}", data=body,
                                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            if resp.status == 201:
                pushed.append((name, tag, body, [config, *layers]))
            else:
                failures.append((await resp.json())["errors"][0]["code"])

    async def collector() -> None:
        try:
            for _ in range(runs):
                reports.append(await collect_garbage(storage.open(), options))
        finally:
            done.set()

    await asyncio.gather(collector(), *(pusher(i) for i in range(4)))
    for name, tag, body, blobs in pushed:
        await pull_ok(client, name, tag, body, blobs)
    deleted = set().union(*(r.blobs for r in reports))
    return pushed, failures, reports, deleted & garbage_digests


async def test_continuous_pushes_during_gc_without_grace_lose_nothing(storage: Storage, app_client: Any) -> None:
    """The torture case: no grace period, so only the quarantine protocol stands between a push and loss.

    Pushes may fail cleanly (their blobs were unreferenced when GC looked); none that was
    acknowledged may lose a blob.
    """
    options = GCOptions(grace_period=0, clock_slack=0, quarantine=1.0)
    pushed, failures, _, deleted = await _race(storage, app_client, options, runs=3, reuse_garbage=True,
                                               settle=0)
    assert len(pushed) >= 4
    assert set(failures) <= {"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"}, failures
    assert deleted, "garbage collection deleted none of the old garbage"
    # Once the pushes are over, collecting again keeps every acknowledged push whole.
    client_driver = storage.open()
    final = await collect_garbage(client_driver, GCOptions(grace_period=0, clock_slack=0, quarantine=0))
    for name, tag, body, blobs in pushed:
        for blob in [body, *blobs]:
            assert sha256(blob) not in final.blobs


async def test_continuous_pushes_during_gc_with_a_grace_period_all_succeed(storage: Storage,
                                                                          app_client: Any) -> None:
    options = GCOptions(grace_period=2.0, clock_slack=1.0, quarantine=0.5)
    pushed, failures, _, deleted = await _race(storage, app_client, options, runs=2, reuse_garbage=False,
                                               settle=3.2)
    assert failures == []
    assert len(pushed) >= 4
    assert len(deleted) == 9  # six orphans, and the deleted image's manifest, config and layer
