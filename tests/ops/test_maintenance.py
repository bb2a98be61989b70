"""Storage use per repository, the admin endpoints and their protection, scheduled GC, read-only mode,
and the ``berth gc`` / ``berth du`` commands."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from registry.maintenance import disk_usage
from storage_backends import StorageDriver, create_driver
from tests.ops.conftest import Storage, make_config, push_blob, push_image, sha256

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _two_repositories(client: Any) -> dict[str, Any]:
    base = os.urandom(10_000)
    a_layer, b_layer, orphan = os.urandom(2000), os.urandom(3000), os.urandom(700)
    a_digest, a_manifest, a_blobs = await push_image(client, "team/a", "v1", layers=[base, a_layer])
    b_digest, b_manifest, b_blobs = await push_image(client, "team/b", "v1", layers=[base, b_layer])
    await push_image(client, "team/b", "v2", layers=[base, b_layer], config=b_blobs[0])  # same image, new tag
    await push_blob(client, "team/b", orphan)
    return {"base": base, "a": (a_manifest, a_blobs), "b": (b_manifest, b_blobs), "orphan": orphan}


async def test_disk_usage_per_repository(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open())
    images = await _two_repositories(client)
    a_manifest, a_blobs = images["a"]
    b_manifest, b_blobs = images["b"]
    base = len(images["base"])

    usage = await disk_usage(storage.open())

    rows = {r.name: r for r in usage.repositories}
    assert list(rows) == ["team/a", "team/b"]
    a, b = rows["team/a"], rows["team/b"]
    a_total = len(a_manifest) + sum(len(x) for x in a_blobs)
    b_total = len(b_manifest) + sum(len(x) for x in b_blobs) + len(images["orphan"])
    assert (a.manifests, a.tags, a.blobs, a.bytes, a.exclusive_bytes) == (1, 1, 4, a_total, a_total - base)
    assert (b.manifests, b.tags, b.blobs, b.bytes, b.exclusive_bytes) == (1, 2, 5, b_total, b_total - base)
    assert usage.blobs == 8  # base stored once
    assert usage.bytes == a_total + b_total - base
    assert (usage.unreferenced_blobs, usage.unreferenced_bytes) == (1, len(images["orphan"]))


@pytest.fixture
async def fs_driver(tmp_path: Path) -> AsyncIterator[StorageDriver]:
    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path / "data")})
    yield driver
    await driver.close()


async def test_admin_du_endpoint_answers_what_the_library_measures(fs_driver: StorageDriver,
                                                                   app_client: Any) -> None:
    client = await app_client(fs_driver)
    await _two_repositories(client)
    resp = await client.get("/admin/du")
    assert resp.status == 200
    assert await resp.json() == (await disk_usage(fs_driver)).to_json()


def _auth_config(tmp_path: Path, policy: str | None) -> Any:
    users = {"root": "rootpw", "alice": "alicepw"}
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}" for u, p in users.items()]
    (tmp_path / "htpasswd").write_text("\n".join(lines) + "\n")
    text = f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp_path / 'htpasswd'}\n"
    if policy is not None:
        (tmp_path / "policy.yml").write_text(policy)
        text += f"  policy:\n    path: {tmp_path / 'policy.yml'}\n"
    return make_config(text)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_admin_endpoints_are_for_admins_when_auth_is_on(fs_driver: StorageDriver, app_client: Any,
                                                              tmp_path: Path) -> None:
    policy = "admins: [root]\nrules:\n  - repository: '**'\n    authenticated: [pull, push]\n"
    client = await app_client(fs_driver, config=_auth_config(tmp_path, policy))
    for path in ("/admin/du", "/admin/gc"):
        assert (await client.get(path)).status == 401
        resp = await client.get(path, headers=_basic("alice", "alicepw"))
        assert resp.status == 403
        assert (await resp.json())["errors"][0]["code"] == "DENIED"
        assert (await client.get(path, headers=_basic("root", "rootpw"))).status == 200


async def test_without_a_policy_every_user_is_admin(fs_driver: StorageDriver, app_client: Any,
                                                    tmp_path: Path) -> None:
    client = await app_client(fs_driver, config=_auth_config(tmp_path, None))
    assert (await client.get("/admin/du")).status == 401
    assert (await client.get("/admin/du", headers=_basic("alice", "alicepw"))).status == 200


async def _wait_for_gc_run(client: Any, seconds: float = 10.0) -> dict[str, Any]:
    for _ in range(int(seconds / 0.05)):
        body = await (await client.get("/admin/gc")).json()
        if body["lastRun"] is not None:
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError("no scheduled garbage collection ran")


async def test_scheduled_gc_runs_while_serving(storage: Storage, app_client: Any) -> None:
    client = await app_client(storage.open(), "gc:\n  interval: 0.3s\n  graceperiod: 0s\n  quarantine: 0s\n")
    _, manifest, blobs = await push_image(client, "team/app", "v1")
    orphan = await push_blob(client, "team/app", b"scheduled garbage")
    body = await _wait_for_gc_run(client)
    assert body["interval"] == 0.3 and body["lastError"] == ""
    # The first run may have started before the orphan landed; wait for one that saw it.
    for _ in range(200):
        if (await client.head(f"/v2/team/app/blobs/{orphan}")).status == 404:
            break
        await asyncio.sleep(0.05)
    assert (await client.head(f"/v2/team/app/blobs/{orphan}")).status == 404
    resp = await client.get("/v2/team/app/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert await resp.read() == manifest


async def test_read_only_mode_refuses_writes_serves_reads_and_skips_the_schedule(tmp_path: Path,
                                                                                 app_client: Any) -> None:
    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path / "data")})
    try:
        writable = await app_client(driver)
        _, manifest, blobs = await push_image(writable, "team/app", "v1")
        orphan = await push_blob(writable, "team/app", b"garbage")
        client = await app_client(driver, "  maintenance:\n    readonly:\n      enabled: true\n"
                                          "gc:\n  interval: 0.1s\n  graceperiod: 0s\n  quarantine: 0s\n"
                                  .replace("  maintenance", "storage:\n  maintenance", 1))
        resp = await client.post("/v2/team/app/blobs/uploads/")
        assert resp.status == 405 and (await resp.json())["errors"][0]["code"] == "UNSUPPORTED"
        resp = await client.put("/v2/team/app/manifests/v2", data=manifest,
                                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert resp.status == 405
        resp = await client.get("/v2/team/app/manifests/v1",
                                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert resp.status == 200 and await resp.read() == manifest
        await asyncio.sleep(0.5)
        body = await (await client.get("/admin/gc")).json()
        assert body["lastRun"] is None
        assert (await client.head(f"/v2/team/app/blobs/{orphan}")).status == 200
    finally:
        await driver.close()


# ------------------------------------------------------------------------------------- commands


def _berth(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "registry", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


async def test_berth_gc_and_du_commands(tmp_path: Path, app_client: Any) -> None:
    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path / "data")})
    try:
        client = await app_client(driver)
        _, manifest, blobs = await push_image(client, "team/app", "v1")
        orphan = os.urandom(1500)
        orphan_digest = await push_blob(client, "team/app", orphan)
        config = tmp_path / "config.yml"
        config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                          f"    rootdirectory: {tmp_path / 'data'}\n"
                          "gc:\n  graceperiod: 0s\n  quarantine: 0s\n")

        du = await asyncio.to_thread(_berth, "du", "--config", str(config))
        assert du.returncode == 0, du.stderr
        assert du.stdout.splitlines()[0].split() == ["REPOSITORY", "MANIFESTS", "TAGS", "BLOBS", "SIZE", "EXCLUSIVE"]
        assert du.stdout.splitlines()[1].split()[:4] == ["team/app", "1", "1", "4"]
        du_json = await asyncio.to_thread(_berth, "du", "--config", str(config), "--json")
        assert json.loads(du_json.stdout)["total"]["unreferencedBytes"] == 1500

        dry = await asyncio.to_thread(_berth, "gc", "--config", str(config), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would delete blob {orphan_digest} (1500 bytes)" in dry.stdout
        assert "would free 1500 bytes (1.5 KiB): 1 blobs, 0 untagged manifests, 1 layer links" in dry.stdout
        assert (await client.head(f"/v2/team/app/blobs/{orphan_digest}")).status == 200

        real = await asyncio.to_thread(_berth, "gc", "--config", str(config), "--json")
        assert real.returncode == 0, real.stderr
        report = json.loads(real.stdout)
        assert report["blobsDeleted"] == [{"digest": orphan_digest, "size": 1500}] and report["bytesFreed"] == 1500
        assert (await client.head(f"/v2/team/app/blobs/{orphan_digest}")).status == 404
        for blob in blobs:
            assert (await client.head(f"/v2/team/app/blobs/{sha256(blob)}")).status == 200

        bad = await asyncio.to_thread(_berth, "gc", "--config", str(tmp_path / "missing.yml"))
        assert bad.returncode == 2 and "configuration error" in bad.stderr
    finally:
        await driver.close()
