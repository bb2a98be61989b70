"""Through the real app: registry operations produce webhook deliveries; the admin endpoint reports them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from registry.app import create_app
from registry.config import Config, parse_config
from registry.webhooks import verify
from tests.webhooks.receiver import Receiver

ClientFactory = Callable[..., Any]
Client = TestClient[web.Request, web.Application]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def app_config(tmp_path: Path, endpoints: list[dict[str, Any]], **notifications: Any) -> Config:
    doc = {
        "version": "0.1",
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "notifications": {"endpoints": [{"backoff": "20ms", "maxbackoff": "100ms", **e} for e in endpoints],
                          **notifications},
    }
    return parse_config(yaml.safe_dump(doc), environ={})


async def push_blob(client: Client, name: str, data: bytes) -> str:
    resp = await client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = str(URL(resp.headers["Location"]).relative())
    sep = "&" if "?" in location else "?"
    resp = await client.put(f"{location}{sep}digest={sha256(data)}", data=data)
    assert resp.status == 201, await resp.text()
    return sha256(data)


async def push_image(client: Client, name: str, tag: str) -> tuple[bytes, bytes, bytes]:
    layer = b"layer-bytes" * 100
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                            "diff_ids": [sha256(layer)]}}).encode()
    await push_blob(client, name, layer)
    await push_blob(client, name, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    resp = await client.put(f"/v2/{name}/manifests/{tag}", data=manifest,
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status == 201, await resp.text()
    return layer, config, manifest


async def test_push_emits_blob_and_manifest_events(tmp_path: Path, receiver: Receiver,
                                                   aiohttp_client: ClientFactory) -> None:
    config = app_config(tmp_path, [{"name": "ci", "url": receiver.url, "secret": "k"}],
                        events={"includereferences": True})
    client = await aiohttp_client(create_app(config))
    layer, cfg, manifest = await push_image(client, "lib/app", "v1")
    got = await receiver.wait_for(3)
    events = [d.event for d in got]
    assert [(e["action"], e["target"]["digest"]) for e in events] == [
        ("push", sha256(layer)), ("push", sha256(cfg)), ("push", sha256(manifest))]
    blob, _, man = events
    assert blob["target"]["mediaType"] == "application/octet-stream"
    assert blob["target"]["size"] == blob["target"]["length"] == len(layer)
    assert blob["target"]["url"].endswith(f"/v2/lib/app/blobs/{sha256(layer)}")
    assert man["target"]["tag"] == "v1"
    assert man["target"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert man["target"]["url"].endswith(f"/v2/lib/app/manifests/{sha256(manifest)}")
    assert [r["digest"] for r in man["target"]["references"]] == [sha256(cfg), sha256(layer)]
    assert man["request"]["method"] == "PUT" and man["source"]["instanceID"]
    for d in got:
        verify("k", d.body, d.headers["Berth-Signature"])


async def test_mount_delete_and_pull_events(tmp_path: Path, receiver: Receiver,
                                            aiohttp_client: ClientFactory) -> None:
    config = app_config(tmp_path, [{"name": "ci", "url": receiver.url}], events={"pull": True})
    client = await aiohttp_client(create_app(config))
    layer, _, manifest = await push_image(client, "lib/app", "v1")
    await receiver.wait_for(3)
    resp = await client.post("/v2/other/app/blobs/uploads/", params={"mount": sha256(layer), "from": "lib/app"})
    assert resp.status == 201
    resp = await client.get("/v2/lib/app/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status == 200
    resp = await client.delete(f"/v2/lib/app/manifests/{sha256(manifest)}")
    assert resp.status == 202
    got = await receiver.wait_for(6)
    mount, pull, delete = (d.event for d in got[3:6])
    assert mount["action"] == "mount" and mount["target"]["fromRepository"] == "lib/app"
    assert mount["target"]["repository"] == "other/app"
    assert pull["action"] == "pull" and pull["target"]["tag"] == "v1"
    assert delete["action"] == "delete"
    assert delete["target"]["digest"] == sha256(manifest) and delete["target"]["repository"] == "lib/app"


async def test_failed_operation_emits_nothing(tmp_path: Path, receiver: Receiver,
                                              aiohttp_client: ClientFactory) -> None:
    config = app_config(tmp_path, [{"name": "ci", "url": receiver.url}])
    client = await aiohttp_client(create_app(config))
    resp = await client.put("/v2/lib/app/manifests/v1", data=b"{}",
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status >= 400
    digest = await push_blob(client, "lib/app", b"ok")
    (d,) = await receiver.wait_for(1)
    assert d.event["target"]["digest"] == digest


async def test_admin_endpoint_reports_per_endpoint_status(tmp_path: Path, receiver: Receiver,
                                                          aiohttp_client: ClientFactory) -> None:
    receiver.fail_next = 1
    config = app_config(tmp_path, [{"name": "ci", "url": receiver.url},
                                   {"name": "off", "url": receiver.url, "disabled": True}])
    client = await aiohttp_client(create_app(config))
    await push_blob(client, "lib/app", b"x")
    await receiver.wait_for(1)
    for _ in range(200):  # the worker handles the answer just after the receiver sent it
        resp = await client.get("/admin/webhooks")
        assert resp.status == 200
        doc = await resp.json()
        if doc["endpoints"][0]["delivered"] == 1:
            break
        await asyncio.sleep(0.02)
    by_name = {e["name"]: e for e in doc["endpoints"]}
    ci = by_name["ci"]
    assert (ci["pending"], ci["delivered"], ci["failed"], ci["deadlettered"]) == (0, 1, 1, 0)
    assert ci["last_error"].startswith("HTTP 503") and ci["last_success_at"] > 0
    assert by_name["off"]["disabled"] is True


async def test_outbox_default_lives_under_the_filesystem_root(tmp_path: Path, receiver: Receiver,
                                                              aiohttp_client: ClientFactory) -> None:
    config = app_config(tmp_path, [{"name": "ci", "url": receiver.url}])
    client = await aiohttp_client(create_app(config))
    await push_blob(client, "lib/app", b"x")
    await receiver.wait_for(1)
    assert (tmp_path / "data" / "_berth" / "outbox" / "log").is_dir()
