"""The tag-facts seam retention reads (storage now, the index later) and policies from a watched file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from registry.governance.config import RetentionConfig
from registry.governance.retention import PolicySource
from registry.services import Registry
from storage_backends import create_driver
from tests.governance.conftest import manifest_for, sha256

OCI = "application/vnd.oci.image.manifest.v1+json"


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data


async def test_tag_facts_and_manifest_graph(tmp_path: Path) -> None:
    from registry.digest import Digest

    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path)})
    registry = Registry(driver, delete_enabled=True)
    config, layer = b"{}", os.urandom(100)
    for blob in (config, layer):
        await registry.store_blob("team/app", Digest.parse(sha256(blob)), _chunks(blob))
    first = await registry.put_manifest("team/app", "a", manifest_for(config, [layer]), OCI)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI, "digest": str(first.digest), "size": 10}]}).encode()
    second = await registry.put_manifest("team/app", "idx", index, "application/vnd.oci.image.index.v1+json")
    facts = {f.tag: f for f in await registry.tag_facts("team/app")}
    assert set(facts) == {"a", "idx"} and facts["a"].digest == first.digest and facts["a"].pulled_at is None
    before = facts["a"].pushed_at
    await asyncio.sleep(0.02)
    await registry.tag_manifest("team/app", "a", second.digest)  # moving a tag refreshes its push time
    moved = await registry.tag_fact("team/app", "a")
    assert moved is not None and moved.digest == second.digest and moved.pushed_at > before
    graph = await registry.manifest_graph("team/app")
    assert graph[second.digest].children == (first.digest,) and graph[first.digest].children == ()
    assert await registry.delete_untagged_manifest("team/app", first.digest)
    assert first.digest not in await registry.manifest_graph("team/app")
    assert not await registry.delete_untagged_manifest("team/app", first.digest)
    assert await registry.tag_facts("nothing/here") == []
    await driver.close()


async def test_policies_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "retention.yml"
    path.write_text("policies: [{repositories: ['team/**'], keep: [{mostrecentlypushed: 3}]}]\n")
    source = PolicySource(RetentionConfig(file=str(path)))
    (first,) = await source.policies()
    assert first.keep[0].mostrecentlypushed == 3
    path.write_text("policies: [{repositories: 'ci/**', keep: [{tags: '^v'}], untagged: keep}]\n")
    os.utime(path, (1, 1))
    await asyncio.sleep(1.05)
    (second,) = await source.policies()
    assert second.patterns == ("ci/**",) and second.untagged == "keep"
    path.write_text("policies: [{repositories: 'ci/**', keep: [{nonsense: 1}]}]\n")  # a bad edit keeps the last good
    os.utime(path, (2, 2))
    await asyncio.sleep(1.05)
    assert await source.policies() == (second,)
