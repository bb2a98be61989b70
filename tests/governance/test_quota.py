"""Quotas: the push that would cross the line is refused with used and allowed; pulls and deletes go on;
freeing space (deletes, or retention + GC) lets pushes in again; usage in /admin/quotas, metrics, berth du."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from registry.digest import Digest
from registry.errors import RegistryError
from registry.governance.config import QuotaRule
from registry.governance.quota import QuotaTracker
from registry.maintenance.gc import GCOptions, collect_garbage
from storage_backends import create_driver
from tests.governance.conftest import (
    basic,
    gov_config_text,
    push_blob,
    push_image,
    sha256,
)
from tests.servers import REPO_ROOT

ALICE = basic("alice", "wonderland")
ROOT = basic("root", "rootpw")
LIMIT = 10_000
QUOTA = f"quotas: [{{repositories: 'team/**', limit: {LIMIT}}}]\nhttp: {{debug: {{prometheus: {{enabled: true}}}}}}\n"


async def used(client: Any) -> int:
    report = await (await client.get("/admin/quotas", headers=ROOT)).json()
    (quota,) = report["quotas"]
    assert quota["limit"] == LIMIT
    return int(quota["used"])


async def test_push_over_the_limit_is_refused_then_accepted_after_deletes(gov_app: Any) -> None:
    client = await gov_app(extra=QUOTA)
    assert await used(client) == 0
    status, first = await push_image(client, "team/a", "1", ALICE, layer=os.urandom(4000))
    assert status == 201
    status, _ = await push_image(client, "team/b", "1", ALICE, layer=os.urandom(4000))
    assert status == 201
    before = await used(client)
    assert 8000 < before < LIMIT
    # The next 4000-byte layer would cross the line: refused with what is used and allowed.
    layer = os.urandom(4000)
    resp = await push_blob(client, "team/c", layer, ALICE)
    assert resp.status == 403
    error = (await resp.json())["errors"][0]
    assert error["code"] == "DENIED"
    assert error["detail"]["used"] == before and error["detail"]["allowed"] == LIMIT
    assert error["detail"]["needed"] == 4000
    # The same through a chunked upload: start, PATCH, the completing PUT is refused.
    resp = await client.post("/v2/team/c/blobs/uploads/", headers=ALICE)
    assert resp.status == 202
    location = URL(resp.headers["Location"]).path_qs
    resp = await client.patch(location, data=layer, headers={**ALICE, "Content-Type": "application/octet-stream"})
    assert resp.status == 202
    resp = await client.put(URL(resp.headers["Location"]).path_qs + f"&digest={sha256(layer)}", headers=ALICE)
    assert resp.status == 403
    # Other namespaces are not limited; blobs the namespace already has add nothing.
    assert (await push_blob(client, "other/x", layer, ROOT)).status == 201
    tagged = json.loads(await (await client.get("/v2/team/a/manifests/1", headers=ALICE)).read())
    existing = tagged["layers"][0]["digest"]
    resp = await client.post(f"/v2/team/c/blobs/uploads/?mount={existing}&from=team/a", headers=ALICE)
    assert resp.status == 201
    # Pulls and deletes keep working.
    assert (await client.get("/v2/team/a/manifests/1", headers=ALICE)).status == 200
    assert (await client.get(f"/v2/team/a/blobs/{existing}", headers=ALICE)).status == 200
    assert (await client.delete(f"/v2/team/a/manifests/{first}", headers=ALICE)).status == 202
    for repo in ("team/a", "team/c"):
        assert (await client.delete(f"/v2/{repo}/blobs/{existing}", headers=ALICE)).status == 202
    assert await used(client) < before - 4000  # the deletes were counted at once, no walk needed
    assert (await push_blob(client, "team/c", layer, ALICE)).status == 201
    metrics = await (await client.get("/metrics")).text()
    assert f'berth_quota_limit_bytes{{repositories="team/**"}} {float(LIMIT)}' in metrics
    assert 'berth_quota_used_bytes{repositories="team/**"}' in metrics


async def test_space_freed_by_gc_counts_after_the_recompute(gov_app: Any, gov_files: Path) -> None:
    client = await gov_app(extra=QUOTA)
    status, digest = await push_image(client, "team/a", "1", ALICE, layer=os.urandom(9000))
    assert status == 201
    assert (await push_blob(client, "team/a", os.urandom(2000), ALICE)).status == 403
    assert (await client.delete(f"/v2/team/a/manifests/{digest}", headers=ALICE)).status == 202
    assert (await push_blob(client, "team/a", os.urandom(2000), ALICE)).status == 403  # layers still linked
    driver = create_driver("filesystem", {"rootdirectory": str(gov_files / "data")})
    report = await collect_garbage(driver, GCOptions(grace_period=0.0, quarantine=0.0))
    await driver.close()
    assert report.bytes_freed >= 9000
    resp = await client.post("/admin/quotas", headers=ROOT)  # what the periodic recompute does
    assert resp.status == 200
    assert (await resp.json())["quotas"][0]["used"] < 1000
    assert (await push_blob(client, "team/a", os.urandom(2000), ALICE)).status == 201


async def test_tracker_replays_updates_made_during_a_recompute(tmp_path: Path) -> None:
    from registry.services import Registry

    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path)})
    tracker = QuotaTracker(Registry(driver), [QuotaRule(repositories=["team/**"], limit=100)])  # type: ignore[arg-type]
    a, b = Digest.parse(sha256(b"a")), Digest.parse(sha256(b"b"))
    tracker.linked("team/x", a, 60)
    tracker.linked("team/y", a, 60)  # the same blob in two repositories counts once
    assert tracker.report()[0]["used"] == 60
    tracker.check("team/z", a, 60)  # already in the namespace: adds nothing
    tracker.unlinked("team/x", a)
    assert tracker.report()[0]["used"] == 60
    tracker.unlinked("team/y", a)
    assert tracker.report()[0]["used"] == 0
    original = tracker.registry.repositories

    async def slow_listing(*args: Any, **kwargs: Any) -> list[str]:
        tracker.linked("team/x", b, 70)  # a push lands while storage is walked
        return list(await original(*args, **kwargs))

    tracker.registry.repositories = slow_listing  # type: ignore[method-assign]
    await tracker.recompute()
    assert tracker.report()[0]["used"] == 70
    with pytest.raises(RegistryError, match="quota"):
        tracker.check("team/x", None, 31)
    tracker.check("team/x", None, 30)  # exactly at the limit is allowed
    await driver.close()


async def test_berth_du_shows_quota_usage(gov_app: Any, gov_files: Path) -> None:
    client = await gov_app(extra=QUOTA)
    status, _ = await push_image(client, "team/a", "1", ALICE, layer=os.urandom(3000))
    assert status == 201
    expected = await used(client)
    config = gov_files / "config.yml"
    config.write_text(gov_config_text(gov_files, extra=QUOTA))
    out = (await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "registry", "du", "--config", str(config), "--json"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                         check=True)).stdout
    (quota,) = json.loads(out)["quotas"]
    assert quota == {"repositories": ["team/**"], "limit": LIMIT, "used": expected, "blobs": 3}
