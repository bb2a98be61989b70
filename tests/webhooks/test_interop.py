"""Side by side with the reference registry: the same operations give the same webhook payloads.

The Debian ``docker-registry`` (CNCF Distribution 2.8) and Berth run as processes
with a notifications endpoint each; the same image is pushed, mounted, pulled and
deleted on both, and every delivered event is compared key by key: same keys in
the same order, same JSON types, same values except those that differ between any
two runs (ids, clocks, client ports, the registry's own address).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.servers import Server, filesystem_config, start_berth, start_reference_registry
from tests.webhooks.receiver import Receiver

pytestmark = [pytest.mark.interop, pytest.mark.slow]

VOLATILE = {("id",), ("timestamp",), ("request", "id"), ("source", "instanceID")}
ADDRESSES = {("request", "addr"), ("request", "host"), ("source", "addr")}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OPERATIONS = [
    "push layer", "push config", "push manifest by tag", "push manifest by digest", "push index by tag",
    "mount", "GET manifest by tag", "GET manifest by digest", "HEAD manifest by tag", "GET blob", "HEAD blob",
    "delete blob", "push docker manifest", "delete manifest by digest", "delete manifest: its tag",
]
EXPECTED_ACTIONS = ["push"] * 5 + ["mount"] + ["pull"] * 5 + ["delete", "push", "delete", "delete"]
EXPECTED_EVENTS = len(OPERATIONS)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image() -> dict[str, bytes]:
    layer = b"interop layer" * 300
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    docker = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    return {"layer": layer, "config": config, "manifest": manifest, "index": index, "docker": docker}


async def run_operations(base: str) -> None:
    """The same sequence on either registry (each step must succeed)."""
    img = image()
    headers = {"User-Agent": "berth-interop/1.0"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async def upload(name: str, data: bytes) -> None:
            async with s.post(f"{base}/v2/{name}/blobs/uploads/") as r:
                assert r.status == 202, await r.text()
                loc = r.headers["Location"]
            loc = loc if loc.startswith("http") else base + loc
            async with s.put(loc, params={"digest": sha256(data)}, data=data) as r:
                assert r.status == 201, await r.text()

        async def put_manifest(ref: str, data: bytes, media_type: str) -> None:
            async with s.put(f"{base}/v2/lib/app/manifests/{ref}", data=data,
                             headers={"Content-Type": media_type}) as r:
                assert r.status == 201, await r.text()

        await upload("lib/app", img["layer"])
        await upload("lib/app", img["config"])
        await put_manifest("v1", img["manifest"], OCI_MANIFEST)
        await put_manifest(sha256(img["manifest"]), img["manifest"], OCI_MANIFEST)
        await put_manifest("multi", img["index"], OCI_INDEX)
        async with s.post(f"{base}/v2/other/app/blobs/uploads/",
                          params={"mount": sha256(img["layer"]), "from": "lib/app"}) as r:
            assert r.status == 201, await r.text()
        accept = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
        for ref in ("v1", sha256(img["manifest"])):
            async with s.get(f"{base}/v2/lib/app/manifests/{ref}", headers=accept) as r:
                assert r.status == 200
                await r.read()
        async with s.head(f"{base}/v2/lib/app/manifests/v1", headers=accept) as r:
            assert r.status == 200
        async with s.get(f"{base}/v2/lib/app/blobs/{sha256(img['layer'])}") as r:
            assert r.status == 200
            await r.read()
        async with s.head(f"{base}/v2/lib/app/blobs/{sha256(img['layer'])}") as r:
            assert r.status == 200
        async with s.delete(f"{base}/v2/other/app/blobs/{sha256(img['layer'])}") as r:
            assert r.status == 202, await r.text()
        await put_manifest("doomed", img["docker"], DOCKER_MANIFEST)
        async with s.delete(f"{base}/v2/lib/app/manifests/{sha256(img['docker'])}") as r:
            assert r.status == 202, await r.text()


def shape(value: Any, base: str, path: tuple[str, ...] = ()) -> Any:
    """Keys in order with value types and values; volatile values blanked, numbers in addresses
    and the registry's base URL neutralised (so ``127.0.0.1:40312`` and ``127.0.0.1:5000`` agree)."""
    if isinstance(value, dict):
        return [(k, shape(v, base, path + (k,))) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v, base, path) for v in value]
    if path in VOLATILE:
        return (type(value).__name__, None)
    if isinstance(value, str):
        value = value.replace(base, "BASE")
        if path in ADDRESSES:
            value = re.sub(r"\d+", "N", value.replace(socket.gethostname(), "HOST"))
            if path == ("request", "addr"):
                value = value.removesuffix(":N")  # see test_request_addr_is_ip_and_port
    return (type(value).__name__, value)


async def collect(kind: str, root: Path, config_extra: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Run the operations on one registry; the events its endpoint received, and its base URL."""
    receiver = await Receiver().start()
    config = filesystem_config(root / kind / "data", notifications={
        "events": {"includereferences": True},
        "endpoints": [{"name": "cmp", "url": receiver.url, "timeout": "2s", "threshold": 3, "backoff": "1s"}],
        **config_extra,
    })
    start = start_berth if kind == "berth" else start_reference_registry
    server: Server = await asyncio.to_thread(start, config, root / kind)
    if kind == "berth" and "webhooks: outbox" not in server.log():
        await asyncio.to_thread(server.stop)
        await receiver.stop()
        pytest.fail("berth serve did not open the webhook outbox: registry.app must call registry.webhooks.setup")
    try:
        await run_operations(server.url)
        with contextlib.suppress(AssertionError):  # a missing event shows in the comparison
            await receiver.wait_for(EXPECTED_EVENTS, timeout=15)
        await asyncio.sleep(1.0)  # anything extra would arrive by now
        return [d.event for d in receiver.accepted], server.url
    finally:
        await asyncio.to_thread(server.stop)
        await receiver.stop()


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """The events of the same operations on the reference registry and on Berth."""
    root = tmp_path_factory.mktemp("interop")

    async def run() -> dict[str, tuple[list[dict[str, Any]], str]]:
        return {
            "reference": await collect("reference", root, {}),
            "berth": await collect("berth", root, {"events": {"includereferences": True, "pull": True},
                                                   "outbox": str(root / "outbox")}),
        }

    return asyncio.run(run())


def key(event: dict[str, Any]) -> tuple[str, ...]:
    """What identifies an operation's event on both registries."""
    t = event["target"]
    return (event["action"], event["request"]["method"], t.get("repository", ""), t.get("digest", ""),
            t.get("tag", ""))


def test_reference_sent_the_expected_events(both: dict[str, tuple[list[dict[str, Any]], str]]) -> None:
    events, _ = both["reference"]
    assert [e["action"] for e in events] == EXPECTED_ACTIONS
    assert len({key(e) for e in events}) == len(events)


def _operation_params() -> list[Any]:
    out = []
    for i, op in enumerate(OPERATIONS):
        out.append(pytest.param(i, id=op.replace(" ", "-")))
    return out


@pytest.mark.parametrize("index", _operation_params())
def test_event_matches_the_reference_key_by_key(
        both: dict[str, tuple[list[dict[str, Any]], str]], index: int) -> None:
    ref_events, ref_base = both["reference"]
    berth_events, berth_base = both["berth"]
    want = ref_events[index]
    got = [e for e in berth_events if key(e) == key(want)]
    assert got, f"berth sent no event for {OPERATIONS[index]}: {key(want)}"
    assert shape(got[0], berth_base) == shape(want, ref_base)


def test_berth_sends_nothing_the_reference_does_not(both: dict[str, tuple[list[dict[str, Any]], str]]) -> None:
    reference = {key(e) for e in both["reference"][0]}
    assert [key(e) for e in both["berth"][0] if key(e) not in reference] == []


def test_events_arrive_in_operation_order(both: dict[str, tuple[list[dict[str, Any]], str]]) -> None:
    order = {key(e): i for i, e in enumerate(both["reference"][0])}
    positions = [order[key(e)] for e in both["berth"][0] if key(e) in order]
    assert positions == sorted(positions)


def test_request_addr_is_ip_and_port(both: dict[str, tuple[list[dict[str, Any]], str]]) -> None:
    for events, _ in both.values():
        assert all(re.fullmatch(r"[\d.]+:\d+", e["request"]["addr"]) for e in events)
