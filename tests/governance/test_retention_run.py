"""Retention for real: 1,000 CI tags, `berth retention --dry-run` lists exactly what the rules say, the
server's run deletes exactly that while a client keeps pushing (what it pushes survives), emits delete
events (audit lines), and frees quota: the push refused before is accepted after retention + GC."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from registry import layout
from registry.appkeys import REGISTRY
from registry.maintenance.gc import GCOptions, collect_garbage
from storage_backends import create_driver
from tests.governance.conftest import basic, gov_config_text, push_blob, sha256
from tests.servers import REPO_ROOT

ROOT = basic("root", "rootpw")
REPO = "ci/app"
TAGS = 1000
SEMVER = [f"v1.0.{k}" for k in range(10)]  # on the manifests of ci-0, ci-100, ... ci-900
CONFIG_BLOB = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
LAYER = os.urandom(512)
OCI = "application/vnd.oci.image.manifest.v1+json"
HOUR = 3600.0


def manifest(label: str) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(CONFIG_BLOB),
                   "size": len(CONFIG_BLOB)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(LAYER),
                    "size": len(LAYER)}],
        "annotations": {"ci.build": label},
    }).encode()


RETENTION = """
retention:
  policies:
    - repositories: ["ci/**"]
      keep:
        - tags: '^v\\d+\\.\\d+\\.\\d+$'
        - mostrecentlypushed: 10
        - pushedwithin: 30h
      untagged: delete
"""


def expected_deletions() -> tuple[set[str], set[str]]:
    """ci-i is pushed (1000 - i - 0.5) hours ago; semver tags 2000 h ago. Kept: semver, the 10 newest, the last 30 h."""
    kept = {f"ci-{i}" for i in range(970, TAGS)}
    tags = {f"ci-{i}" for i in range(TAGS)} - kept
    manifests = {sha256(manifest(f"ci-{i}")) for i in range(970) if i % 100 != 0}
    return tags, manifests


async def seed(registry: Any, root: Path) -> None:
    """1,000 tags through the services (each its own manifest), backdated on disk."""
    await registry.store_blob(REPO, _d(CONFIG_BLOB), _chunks(CONFIG_BLOB))
    await registry.store_blob(REPO, _d(LAYER), _chunks(LAYER))
    now = time.time()

    async def one(i: int) -> None:
        tags = (f"v1.0.{i // 100}",) if i % 100 == 0 else ()
        await registry.put_manifest(REPO, f"ci-{i}", manifest(f"ci-{i}"), OCI, tags)

    for start in range(0, TAGS, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 50, TAGS))))
    fs = root / "data" / layout.ROOT.lstrip("/")
    for i in range(TAGS):
        when = now - (TAGS - i) * HOUR + HOUR / 2  # half an hour off the 30 h line either side
        os.utime(fs / layout.tag_current_link(REPO, f"ci-{i}").removeprefix(layout.ROOT + "/"), (when, when))
    for t in SEMVER:
        when = now - 2000 * HOUR
        os.utime(fs / layout.tag_current_link(REPO, t).removeprefix(layout.ROOT + "/"), (when, when))


def _d(data: bytes) -> Any:
    from registry.digest import Digest

    return Digest.parse(sha256(data))


async def _chunks(data: bytes) -> Any:
    yield data


def quota_limit() -> int:
    stored = len(CONFIG_BLOB) + len(LAYER) + sum(len(manifest(f"ci-{i}")) for i in range(TAGS))
    return stored + 40_000  # room for what the live pusher adds (~40 small manifests)


@pytest.mark.slow
async def test_retention_keeps_exactly_what_the_rules_say(gov_app: Any, gov_files: Path) -> None:
    audit = gov_files / "audit.log"
    extra = (RETENTION + f"audit: {{path: {audit}}}\n"
             + f"quotas: [{{repositories: 'ci/**', limit: {quota_limit()}}}]\n")
    client = await gov_app(extra=extra)
    registry = client.server.app[REGISTRY]
    await seed(registry, gov_files)
    assert (await client.post("/admin/quotas", headers=ROOT)).status == 200
    big = os.urandom(60_000)
    resp = await push_blob(client, REPO, big, ROOT)
    assert resp.status == 403 and (await resp.json())["errors"][0]["detail"]["allowed"] == quota_limit()

    want_tags, want_manifests = expected_deletions()
    config_file = gov_files / "config.yml"
    config_file.write_text(gov_config_text(gov_files, extra=extra))
    dry = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "registry", "retention", "--config", str(config_file), "--dry-run",
                          "--json"], capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    report = json.loads(dry.stdout)
    assert {d["reference"] for d in report["wouldDelete"] if d["kind"] == "tag"} == want_tags
    assert {d["digest"] for d in report["wouldDelete"] if d["kind"] == "manifest"} == want_manifests
    assert len(await registry.tag_facts(REPO)) == TAGS + len(SEMVER)  # a dry run deletes nothing

    # The real run inside the server while a client keeps pushing (new tags, and moving an old one).
    pushed: dict[str, str] = {}

    async def pusher() -> None:
        for j in range(20):
            tag = "ci-5" if j == 3 else f"live-{j}"
            data = manifest(f"live-{j}")
            resp = await client.put(f"/v2/{REPO}/manifests/{tag}", data=data,
                                    headers={**ROOT, "Content-Type": OCI})
            assert resp.status == 201, await resp.text()
            pushed[tag] = sha256(data)
            await asyncio.sleep(0.01)

    run, _ = await asyncio.gather(client.post("/admin/retention", headers=ROOT), pusher())
    assert run.status == 200, await run.text()
    result = await run.json()
    deleted_tags = {d["reference"] for d in result["deleted"] if d["kind"] == "tag"}
    assert deleted_tags == want_tags - {"ci-5"}  # ci-5 was moved by a push: kept (skipped or recent)
    assert {d["digest"] for d in result["deleted"] if d["kind"] == "manifest"} == want_manifests

    facts = {f.tag: str(f.digest) for f in await registry.tag_facts(REPO)}
    for tag, digest in pushed.items():
        assert facts[tag] == digest, tag
    survivors = set(facts) - set(pushed)
    assert survivors == {f"ci-{i}" for i in range(970, TAGS)} | set(SEMVER)
    for t in SEMVER:  # kept tags still resolve, manifest and all
        assert (await client.get(f"/v2/{REPO}/manifests/{t}", headers=ROOT)).status == 200

    # Space: the revisions went at once (delete events update quota usage); GC frees the bytes.
    assert (await push_blob(client, REPO, big, ROOT)).status == 201
    driver = create_driver("filesystem", {"rootdirectory": str(gov_files / "data")})
    gc = await collect_garbage(driver, GCOptions(grace_period=0.0, quarantine=0.0))
    await driver.close()
    assert len(gc.blobs) >= len(want_manifests)
    assert (await client.post("/admin/quotas", headers=ROOT)).status == 200
    await client.close()

    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    deletes = [line for line in lines if line["action"] == "delete" and line["actor"] == "retention"]
    assert len(deletes) == len(result["deleted"])
    runs = [line for line in lines if line["action"] == "retention.run"]
    assert len(runs) == 2 and [r["detail"]["dryRun"] for r in runs] == [True, False]


async def test_scheduled_retention_runs_in_the_server(gov_app: Any, gov_files: Path) -> None:
    audit = gov_files / "scheduled.log"
    extra = ("retention:\n  schedule: 500ms\n  policies: [{repositories: ['ci/**'], keep: [{tags: '^keep$'}]}]\n"
             f"audit: {{path: {audit}}}\n")
    client = await gov_app(extra=extra)
    registry = client.server.app[REGISTRY]
    await registry.store_blob(REPO, _d(CONFIG_BLOB), _chunks(CONFIG_BLOB))
    await registry.store_blob(REPO, _d(LAYER), _chunks(LAYER))
    for tag in ("keep", "old"):
        await registry.put_manifest(REPO, tag, manifest(tag), OCI)
    for _ in range(60):
        if {f.tag for f in await registry.tag_facts(REPO)} == {"keep"}:
            break
        await asyncio.sleep(0.1)
    assert {f.tag for f in await registry.tag_facts(REPO)} == {"keep"}
    assert set(await registry.manifest_graph(REPO)) == {_d(manifest("keep"))}
    await client.close()
    runs = [json.loads(line) for line in audit.read_text().splitlines() if '"retention.run"' in line]
    assert runs and runs[0]["detail"]["requestedBy"] == "schedule"


async def test_tags_and_manifests_changed_during_the_run_are_skipped(tmp_path: Path) -> None:
    """Deterministic races: after the first deletion, a doomed tag is moved and a doomed manifest is tagged."""
    from registry.governance.config import KeepRule, RetentionPolicy
    from registry.governance.retention import run_retention
    from registry.services import Registry

    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path)})
    registry = Registry(driver, delete_enabled=True)
    await registry.store_blob(REPO, _d(CONFIG_BLOB), _chunks(CONFIG_BLOB))
    await registry.store_blob(REPO, _d(LAYER), _chunks(LAYER))
    for i in range(30):
        await registry.put_manifest(REPO, f"ci-{i}", manifest(f"ci-{i}"), OCI)
    await asyncio.sleep(0.05)  # everything above was pushed before the run starts
    moved_to = _d(manifest("ci-0"))
    rescued = _d(manifest("ci-28"))
    events: list[Any] = []

    class RacingSink:
        async def publish(self, batch: list[Any]) -> None:
            if not events:
                await registry.tag_manifest(REPO, "ci-29", moved_to)  # a doomed tag moves
                await registry.tag_manifest(REPO, "rescue", rescued)  # a doomed manifest gets a tag
            events.extend(batch)

    policy = RetentionPolicy(repositories=["ci/**"], keep=[KeepRule(tags="^nothing$")])  # type: ignore[arg-type]
    report = await run_retention(registry, [policy], dry_run=False, sink=RacingSink())
    skipped = {(d.reference, why) for d, why in report.skipped}
    assert ("ci-29", "pushed or moved during the run") in skipped
    assert (str(rescued), "tagged during the run") in skipped
    facts = {f.tag: f.digest for f in await registry.tag_facts(REPO)}
    assert facts == {"ci-29": moved_to, "rescue": rescued}
    assert set(await registry.manifest_graph(REPO)) == {moved_to, rescued}
    assert len(events) == len(report.deletions) == 29 + 28
    await driver.close()
