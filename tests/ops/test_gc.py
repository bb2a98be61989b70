"""Garbage collection over every backend: what goes, what stays, dry runs, grace, untagged manifests,
the lock, and rolling back a run that failed or was interrupted."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from registry import layout
from registry.digest import Digest
from registry.maintenance import GCBusy, GCError, GCOptions, collect_garbage
from registry.maintenance.gc import JOURNAL_PATH, LOCK_PATH, TRASH_DIR, GCLock, trash_path
from storage_backends import PathNotFound, StorageDriver, StorageUnavailable
from tests.ops.conftest import (
    OCI_INDEX,
    Storage,
    image_manifest,
    pull_ok,
    push_blob,
    push_image,
    put_manifest,
    sha256,
)
from tests.ops.faults import HookedDriver

NOW = GCOptions(grace_period=0, clock_slack=0, quarantine=0)  # everything unreferenced is garbage at once


async def exists(driver: StorageDriver, path: str) -> bool:
    return await driver.exists(path)


async def blob_stored(driver: StorageDriver, digest: str) -> bool:
    return await driver.exists(layout.blob_data(Digest.parse(digest)))


async def no_leftovers(driver: StorageDriver) -> None:
    """A finished run leaves no trash, journal or lock behind."""
    assert not await driver.exists(JOURNAL_PATH)
    assert not await driver.exists(LOCK_PATH)
    trash = []
    try:
        trash = [i.path async for i in driver.walk(TRASH_DIR)]
    except PathNotFound:
        pass
    assert trash == []


async def test_unreferenced_blob_goes_with_its_link_referenced_stay(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    digest, manifest, blobs = await push_image(client, "team/app", "v1")
    orphan = os.urandom(3000)
    orphan_digest = await push_blob(client, "team/app", orphan)
    gc_driver = storage.open()

    report = await collect_garbage(gc_driver, NOW)

    assert report.blobs == {orphan_digest: 3000}
    assert report.bytes_freed == 3000
    assert report.layer_links == [("team/app", orphan_digest)]
    assert report.manifests == []
    assert not await blob_stored(gc_driver, orphan_digest)
    assert not await exists(gc_driver, layout.layer_link("team/app", Digest.parse(orphan_digest)))
    assert (await client.head(f"/v2/team/app/blobs/{orphan_digest}")).status == 404
    await pull_ok(client, "team/app", "v1", manifest, blobs)
    await pull_ok(client, "team/app", digest, manifest, blobs)
    await no_leftovers(gc_driver)
    # Nothing left to do: a second run deletes nothing.
    again = await collect_garbage(gc_driver, NOW)
    assert again.blobs == {} and again.blobs_marked == again.blobs_scanned == 3  # config, layer, manifest


async def test_dry_run_lists_what_would_go_and_deletes_nothing(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    await push_image(client, "team/app", "v1")
    orphans = {await push_blob(client, "other/repo", os.urandom(n)): n for n in (100, 2000)}
    gc_driver = storage.open()

    report = await collect_garbage(gc_driver, GCOptions(dry_run=True, grace_period=0, clock_slack=0))

    assert report.dry_run
    assert report.blobs == orphans
    assert report.bytes_freed == 2100
    assert sorted(report.layer_links) == sorted(("other/repo", d) for d in orphans)
    for d in orphans:
        assert await blob_stored(gc_driver, d)
        assert (await client.head(f"/v2/other/repo/blobs/{d}")).status == 200
    doc = report.to_json()
    assert doc["dryRun"] is True and doc["bytesFreed"] == 2100
    assert sorted(b["digest"] for b in doc["blobsDeleted"]) == sorted(orphans)


async def test_grace_period_keeps_young_blobs(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    orphan_digest = await push_blob(client, "team/app", b"young and unreferenced")

    report = await collect_garbage(storage.open(), GCOptions(grace_period=3600, quarantine=0))

    assert report.blobs == {}
    assert report.kept_young == 1
    assert (await client.head(f"/v2/team/app/blobs/{orphan_digest}")).status == 200


async def test_deleted_manifest_frees_its_exclusive_blobs_only(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    shared = os.urandom(5000)
    own = os.urandom(7000)
    d1, m1, blobs1 = await push_image(client, "team/app", "v1", layers=[shared, own])
    d2, m2, blobs2 = await push_image(client, "team/other", "v1", layers=[shared])
    resp = await client.delete(f"/v2/team/app/manifests/{d1}")
    assert resp.status == 202

    report = await collect_garbage(storage.open(), NOW)

    # The manifest, its config and its own layer go; the layer team/other uses stays.
    assert set(report.blobs) == {d1, sha256(blobs1[0]), sha256(own)}
    assert report.bytes_freed == len(m1) + len(blobs1[0]) + len(own)
    await pull_ok(client, "team/other", "v1", m2, blobs2)
    assert (await client.head(f"/v2/team/app/blobs/{sha256(shared)}")).status == 200  # still linked in team/app


async def _untagged_fixture(client: Any) -> dict[str, Any]:
    """A repository with a tagged image, an untagged one, a tagged index, and referrers."""
    out: dict[str, Any] = {}
    out["tagged"] = await push_image(client, "team/app", "v1")
    cfg = b'{"untagged": true}'
    layer = os.urandom(4000)
    await push_blob(client, "team/app", cfg)
    await push_blob(client, "team/app", layer)
    body = image_manifest(cfg, [layer])
    out["untagged"] = (await put_manifest(client, "team/app", sha256(body), body), body, [cfg, layer])
    children = []
    for arch in ("amd64", "arm64"):
        c_cfg = json.dumps({"architecture": arch}).encode()
        c_layer = os.urandom(1500)
        await push_blob(client, "team/app", c_cfg)
        await push_blob(client, "team/app", c_layer)
        c_body = image_manifest(c_cfg, [c_layer])
        children.append((await put_manifest(client, "team/app", sha256(c_body), c_body), c_body, [c_cfg, c_layer]))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(b),
         "platform": {"architecture": arch, "os": "linux"}}
        for (d, b, _), arch in zip(children, ("amd64", "arm64"))]}).encode()
    out["index"] = (await put_manifest(client, "team/app", "multi", index, OCI_INDEX), index, [])
    out["children"] = children

    async def referrer(subject_digest: str, subject_body: bytes) -> tuple[str, bytes, list[bytes]]:
        sig = os.urandom(300)
        empty = b"{}"
        await push_blob(client, "team/app", empty)
        await push_blob(client, "team/app", sig)
        body = image_manifest(empty, [sig], artifactType="application/vnd.example.sig",
                              subject={"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "digest": subject_digest, "size": len(subject_body)})
        return await put_manifest(client, "team/app", sha256(body), body), body, [empty, sig]

    out["sig_of_tagged"] = await referrer(out["tagged"][0], out["tagged"][1])
    out["sig_of_untagged"] = await referrer(out["untagged"][0], out["untagged"][1])
    return out


async def test_untagged_manifests_stay_unless_asked(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    images = await _untagged_fixture(client)

    report = await collect_garbage(storage.open(), NOW)

    assert report.blobs == {} and report.manifests == []
    digest, body, blobs = images["untagged"]
    await pull_ok(client, "team/app", digest, body, blobs)


async def test_delete_untagged_removes_what_no_tag_reaches(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    images = await _untagged_fixture(client)
    options = GCOptions(delete_untagged=True, grace_period=0, clock_slack=0, quarantine=0)

    dry = await collect_garbage(storage.open(), GCOptions(dry_run=True, delete_untagged=True, grace_period=0,
                                                          clock_slack=0))
    report = await collect_garbage(storage.open(), options)

    untagged_digest, untagged_body, untagged_blobs = images["untagged"]
    sig_digest, sig_body, sig_blobs = images["sig_of_untagged"]
    expected_manifests = sorted([("team/app", untagged_digest), ("team/app", sig_digest)])
    assert sorted(report.manifests) == expected_manifests == sorted(dry.manifests)
    assert set(report.blobs) == set(dry.blobs)
    # The untagged manifest, its own config and layer, and its signature (manifest and signature blob) go.
    # The empty config "{}" is shared with the tagged image's signature and stays.
    assert set(report.blobs) == {untagged_digest, sha256(untagged_blobs[0]), sha256(untagged_blobs[1]),
                                 sig_digest, sha256(sig_blobs[1])}
    assert (await client.get(f"/v2/team/app/manifests/{untagged_digest}")).status == 404
    assert (await client.get(f"/v2/team/app/manifests/{sig_digest}")).status == 404
    for key in ("tagged", "index", "sig_of_tagged"):
        digest, body, blobs = images[key]
        await pull_ok(client, "team/app", digest, body, blobs)
    for digest, body, blobs in images["children"]:
        await pull_ok(client, "team/app", digest, body, blobs)
    resp = await client.get(f"/v2/team/app/referrers/{images['tagged'][0]}")
    assert [m["digest"] for m in (await resp.json())["manifests"]] == [images["sig_of_tagged"][0]]
    await no_leftovers(storage.open())


async def test_delete_untagged_respects_the_grace_period(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    images = await _untagged_fixture(client)

    report = await collect_garbage(storage.open(), GCOptions(delete_untagged=True, grace_period=3600, quarantine=0))

    assert report.manifests == [] and report.blobs == {}
    digest, body, blobs = images["untagged"]
    await pull_ok(client, "team/app", digest, body, blobs)


async def test_a_second_collector_is_refused_while_one_runs(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    orphan = await push_blob(client, "team/app", b"garbage")
    holder = GCLock(storage.open(), ttl=60)
    await holder.acquire()
    try:
        with pytest.raises(GCBusy):
            await collect_garbage(storage.open(), NOW)
        dry = await collect_garbage(storage.open(), GCOptions(dry_run=True, grace_period=0, clock_slack=0))
        assert list(dry.blobs) == [orphan]  # a dry run needs no lock
    finally:
        await holder.release()
    report = await collect_garbage(storage.open(), NOW)
    assert list(report.blobs) == [orphan]


async def test_an_unparseable_manifest_in_use_stops_the_run(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    digest, _, blobs = await push_image(client, "team/app", "v1")
    orphan = await push_blob(client, "team/app", b"garbage")
    driver = storage.open()
    await driver.put_content(layout.blob_data(Digest.parse(digest)), b"not json")

    with pytest.raises(GCError, match="cannot be parsed"):
        await collect_garbage(driver, NOW)

    assert await blob_stored(driver, orphan)
    for blob in blobs:
        assert await blob_stored(driver, sha256(blob))


async def test_a_failed_run_puts_everything_back(storage: Storage, app_client: Any) -> None:
    """Storage fails after the doomed blobs went to the trash: the run rolls itself back."""
    client = await app_client(storage.open())
    _, manifest, blobs = await push_image(client, "team/app", "v1")
    orphan = await push_blob(client, "team/app", b"garbage")
    trashed = False

    async def hook(op: str, paths: tuple[str, ...]) -> None:
        nonlocal trashed
        if op == "move" and paths[1].startswith(TRASH_DIR):
            trashed = True
        elif trashed and op == "walk" and "/repositories" in paths[0]:
            raise StorageUnavailable("injected", paths[0])

    with pytest.raises(StorageUnavailable):
        await collect_garbage(HookedDriver(storage.open(), hook), GCOptions(grace_period=0, clock_slack=0,
                                                                            quarantine=0))

    assert trashed
    driver = storage.open()
    assert await blob_stored(driver, orphan)
    assert await exists(driver, layout.layer_link("team/app", Digest.parse(orphan)))
    await no_leftovers(driver)
    await pull_ok(client, "team/app", "v1", manifest, blobs)


async def test_an_interrupted_run_is_rolled_back_by_the_next(storage: Storage, app_client: Any) -> None:
    """The process dies mid-sweep (nothing can run any more): the next run restores first."""
    client = await app_client(storage.open())
    orphan = await push_blob(client, "team/app", b"garbage that a push will want back")
    dead = False

    async def hook(op: str, paths: tuple[str, ...]) -> None:
        nonlocal dead
        if dead:
            raise StorageUnavailable("the process is gone")
        if op == "move" and paths[1].startswith(TRASH_DIR):
            dead = True  # this move happens; every later call fails, rollback included

    with pytest.raises(StorageUnavailable):
        await collect_garbage(HookedDriver(storage.open(), hook),
                              GCOptions(grace_period=0, clock_slack=0, quarantine=0, lock_ttl=0.5))

    driver = storage.open()
    await asyncio.sleep(0.6)  # the dead run's lease runs out
    d = Digest.parse(orphan)
    assert await exists(driver, trash_path(d)) and await exists(driver, JOURNAL_PATH)
    assert not await blob_stored(driver, orphan)
    assert not await exists(driver, layout.layer_link("team/app", d))

    report = await collect_garbage(driver, GCOptions(grace_period=3600, quarantine=0))

    assert report.rolled_back and report.blobs == {}
    assert await blob_stored(driver, orphan)
    assert (await client.head(f"/v2/team/app/blobs/{orphan}")).status == 200
    await no_leftovers(driver)
