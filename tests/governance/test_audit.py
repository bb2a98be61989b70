"""The audit log: a scripted session yields exactly its events, in order, with no secret; rotation; reloads."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from registry.governance.audit import AuditLog, scrub
from registry.governance.config import AuditConfig
from tests.governance.conftest import PASSWORDS, basic, make_token, push_image


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_scripted_session_yields_exactly_its_events(gov_app: Any, gov_files: Path) -> None:
    audit_path = gov_files / "audit.log"
    client = await gov_app(extra=f"audit: {{path: {audit_path}}}\n")
    secret = await make_token(client, "alice", ["team/**:*"], name="deploy")                    # token.create
    assert (await client.get("/v2/", headers=basic("alice", "not-it"))).status == 401          # login failure
    assert (await client.get("/v2/", headers=basic("alice", secret))).status == 200            # login success
    status, digest = await push_image(client, "team/app", "v1", basic("alice", secret))        # 3 pushes
    assert status == 201
    status, _ = await push_image(client, "team/app", "v2", basic("bob", PASSWORDS["bob"]))     # denied
    assert status == 403
    assert (await client.get("/v2/team/app/manifests/v1", headers=basic("alice", secret))).status == 200  # no line
    resp = await client.delete(f"/v2/team/app/manifests/{digest}", headers=basic("alice", secret))  # 2 deletes
    assert resp.status == 202
    tokens = (await (await client.get("/api/tokens", headers=basic("alice", "wonderland"))).json())["tokens"]
    token_id = tokens[0]["id"]
    assert (await client.delete(f"/api/tokens/{token_id}", headers=basic("alice", "wonderland"))).status == 200
    await client.close()  # stops the writer thread: everything queued is on disk

    lines = read_lines(audit_path)
    summary = [(l["action"], l["outcome"], l["repository"], l["reference"]) for l in lines]
    assert summary == [
        ("token.create", "success", "", token_id),
        ("login", "failure", "", ""),
        ("login", "success", "", ""),
        ("push", "success", "team/app", ""),
        ("push", "success", "team/app", ""),
        ("push", "success", "team/app", "v1"),
        ("denied", "denied", "team/app", ""),
        ("delete", "success", "team/app", ""),
        ("delete", "success", "team/app", "v1"),
        ("token.revoke", "success", "", token_id),
    ]
    actor = f"alice (token {token_id})"
    assert [l["actor"] for l in lines] == ["alice", "alice", actor, actor, actor, actor, "bob", actor, actor, "alice"]
    assert lines[5]["digest"] == digest == lines[7]["digest"]
    assert all(l["address"] == "127.0.0.1" for l in lines)
    assert all(set(l) >= {"time", "actor", "address", "action", "repository", "reference", "digest", "outcome"}
               for l in lines)
    text = audit_path.read_text()
    for secret_text in (secret, secret.split("_")[-1], *PASSWORDS.values(), "Authorization", "Basic "):
        assert secret_text not in text


async def test_pulls_are_recorded_only_when_asked(gov_app: Any, gov_files: Path) -> None:
    audit_path = gov_files / "pulls.log"
    client = await gov_app(extra=f"audit: {{path: {audit_path}, pulls: true}}\n")
    alice = basic("alice", "wonderland")
    status, digest = await push_image(client, "team/app", "v1", alice)
    assert status == 201
    assert (await client.get("/v2/team/app/manifests/v1", headers=alice)).status == 200
    await client.close()
    pulls = [l for l in read_lines(audit_path) if l["action"] == "pull"]
    assert [(p["repository"], p["reference"], p["digest"], p["actor"]) for p in pulls] == [
        ("team/app", "v1", digest, "alice")]


async def test_policy_reload_is_recorded(gov_app: Any, gov_files: Path) -> None:
    audit_path = gov_files / "reload.log"
    client = await gov_app(extra=f"audit: {{path: {audit_path}}}\n")
    alice = basic("alice", "wonderland")
    assert (await client.get("/v2/team/x/tags/list", headers=alice)).status == 404
    policy = gov_files / "policy.yml"
    policy.write_text(policy.read_text() + "\n# edited\n")
    os.utime(policy, (1, 1))  # a different mtime even on a coarse clock
    await asyncio.sleep(1.1)
    await client.get("/v2/team/x/tags/list", headers=alice)
    await client.close()
    reloads = [l for l in read_lines(audit_path) if l["action"] == "policy.reload"]
    assert len(reloads) == 1 and reloads[0]["detail"]["path"] == str(policy)


def test_rotation_by_size_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(AuditConfig(path=str(path), maxsize=2000, backups=2))  # type: ignore[arg-type]
    audit.start()
    for i in range(200):
        audit.record("push", actor="alice", repository=f"team/r{i}", digest="sha256:" + "a" * 64)
    audit.stop()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    last = read_lines(path)[-1]
    assert last["repository"] == "team/r199"


def test_scrub_removes_secret_looking_values() -> None:
    assert scrub("berth_pat_0123456789abcdef_xyz") == "[redacted]"
    assert scrub({"h": "Authorization: Basic YWxpY2U6d29uZGVy"}) == {"h": "[redacted]"}
    assert scrub(["bearer eyJhbGciOiJFUzI1NiJ9.abc"]) == ["[redacted]"]
    assert scrub("team/app") == "team/app"
