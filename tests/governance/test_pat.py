"""Access tokens and robot accounts: secrets, storage, scopes ∩ policy, refusals, the HTTP API, replicas."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from auth.pat import (
    PREFIX,
    TokenInputError,
    TokenStore,
    hash_secret,
    parse_expiry,
    parse_scope,
    parse_scopes,
)
from storage_backends import create_driver
from tests.auth.conftest import bearer
from tests.governance.conftest import PASSWORDS, basic, make_token, push_image

# --- unit ----------------------------------------------------------------------------------------

def test_scope_grammar() -> None:
    scope = parse_scope("team/*:pull,push")
    assert scope.pattern == "team/*" and scope.actions == {"pull", "push"}
    assert parse_scope("**:*").actions == {"pull", "push", "delete", "overwrite"}
    assert parse_scope("admin") == "admin"
    scopes, admin = parse_scopes(["team/*:pull  admin", "public/**:pull"])
    assert [str(s) for s in scopes] == ["team/*:pull", "public/**:pull"] and admin
    for bad in ("team/*", ":pull", "Team/*:pull", "team/*:fly", "team/../x:pull x"):
        with pytest.raises(TokenInputError):
            parse_scopes([bad])
    with pytest.raises(TokenInputError):
        parse_scopes([])


def test_expiry() -> None:
    assert parse_expiry("90d") == 90 * 86400
    assert parse_expiry("12h") == 12 * 3600
    assert parse_expiry(None) is None and parse_expiry("never") is None
    for bad in ("0d", "soon", "-1h"):
        with pytest.raises(TokenInputError):
            parse_expiry(bad)


async def test_secret_is_random_prefixed_and_stored_only_as_hash(tmp_path: Path) -> None:
    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path)})
    store = TokenStore(driver)
    record, secret = await store.create(owner="alice", name="ci", scopes=["team/*:pull"], expires_in=None,
                                        created_by="test")
    other, secret2 = await store.create(owner="alice", name="ci2", scopes=["team/*:pull"], expires_in=None,
                                        created_by="test")
    assert secret.startswith(PREFIX) and secret != secret2 and record.id != other.id
    random_part = secret.rsplit("_", 1)[-1] if secret.count("_") == 3 else secret[len(PREFIX) + 17:]
    assert len(base64.urlsafe_b64decode(random_part + "=" * (-len(random_part) % 4))) >= 32
    assert record.secret_hash == hashlib.sha256(secret.encode()).hexdigest() == hash_secret(secret)
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert secret.encode() not in stored and secret.rsplit("_", 1)[-1].encode() not in stored
    assert record.secret_hash.encode() in stored
    assert "sha256" not in json.dumps([r.to_json() for r in await store.list()])
    assert (await store.authenticate(secret, "alice")).id == record.id
    for wrong, reason in ((secret[:-2] + "xx", "unknown"), ("berth_pat_nope", "malformed")):
        with pytest.raises(Exception, match=reason):
            await store.authenticate(wrong, "alice")
    with pytest.raises(Exception, match="another account"):
        await store.authenticate(secret, "bob")
    await driver.close()


async def test_expired_and_revoked_tokens_are_refused_with_the_reason(tmp_path: Path) -> None:
    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path)})
    store = TokenStore(driver)
    _, expired = await store.create(owner="alice", name="old", scopes=["**:pull"], expires_in=10,
                                    created_by="t", now=time.time() - 60)
    with pytest.raises(Exception, match="expired"):
        await store.authenticate(expired)
    record, secret = await store.create(owner="alice", name="x", scopes=["**:pull"], expires_in=None, created_by="t")
    await store.authenticate(secret)
    await store.revoke(record.id, by="root")
    with pytest.raises(Exception, match="revoked"):
        await store.authenticate(secret)
    assert [r.to_json()["status"] for r in await store.list()] == ["expired", "revoked"]
    await driver.close()


# --- htpasswd mode -------------------------------------------------------------------------------

async def test_token_is_a_password_limited_by_scope_and_policy(gov_app: Any) -> None:
    client = await gov_app()
    rw = await make_token(client, "alice", ["team/**:pull,push", "secret/**:*"], name="rw")
    ro = await make_token(client, "alice", ["team/**:pull"], name="ro")
    assert (await client.get("/v2/", headers=basic("alice", rw))).status == 200
    status, digest = await push_image(client, "team/app", "v1", basic("alice", rw))
    assert status == 201
    # Read-only token: pulls work, pushes are denied.
    assert (await client.get("/v2/team/app/manifests/v1", headers=basic("alice", ro))).status == 200
    status, _ = await push_image(client, "team/app", "v2", basic("alice", ro))
    assert status == 403
    # Scopes never exceed the owner's policy: alice has nothing on secret/**.
    status, _ = await push_image(client, "secret/x", "v1", basic("alice", rw))
    assert status == 403
    # ... and the policy never exceeds the scopes: alice may delete in team/**, the token may not.
    resp = await client.delete(f"/v2/team/app/manifests/{digest}", headers=basic("alice", rw))
    assert resp.status == 403
    assert (await client.delete(f"/v2/team/app/manifests/{digest}",
                                headers=basic("alice", PASSWORDS["alice"]))).status == 202
    # The username must be the token's owner.
    resp = await client.get("/v2/", headers=basic("bob", rw))
    assert resp.status == 401 and "another account" in (await resp.json())["errors"][0]["message"]


async def test_tokens_of_a_removed_user_stop_working(gov_app: Any, gov_files: Path) -> None:
    import os

    from tests.auth.conftest import write_htpasswd

    client = await gov_app()
    secret = await make_token(client, "bob", ["team/**:pull"])
    assert (await client.get("/v2/", headers=basic("bob", secret))).status == 200
    write_htpasswd(gov_files / "htpasswd", {"alice": "wonderland", "root": "rootpw"})
    os.utime(gov_files / "htpasswd", (1, 1))
    await asyncio.sleep(1.1)
    resp = await client.get("/v2/", headers=basic("bob", secret))
    assert resp.status == 401 and "no longer exists" in (await resp.json())["errors"][0]["message"]


async def test_revoked_token_refused_at_once_with_reason(gov_app: Any) -> None:
    client = await gov_app()
    secret = await make_token(client, "alice", ["team/**:pull"])
    assert (await client.get("/v2/team/app/tags/list", headers=basic("alice", secret))).status in (200, 404)
    listing = await (await client.get("/api/tokens", headers=basic("alice", "wonderland"))).json()
    (token,) = listing["tokens"]
    assert secret not in json.dumps(listing) and token["status"] == "active" and token["lastUsed"]
    resp = await client.delete(f"/api/tokens/{token['id']}", headers=basic("alice", "wonderland"))
    assert resp.status == 200 and (await resp.json())["token"]["status"] == "revoked"
    resp = await client.get("/v2/", headers=basic("alice", secret))
    assert resp.status == 401
    assert (await resp.json())["errors"][0]["message"] == "access token revoked"


async def test_api_ownership_admin_and_csrf(gov_app: Any) -> None:
    client = await gov_app()
    alice = basic("alice", "wonderland")
    await make_token(client, "alice", ["team/**:pull"], name="mine")
    # Users see and revoke only their own tokens; bob is no admin.
    assert (await (await client.get("/api/tokens", headers=basic("bob", "builder"))).json())["tokens"] == []
    assert (await client.get("/admin/tokens", headers=basic("bob", "builder"))).status == 403
    all_tokens = await (await client.get("/admin/tokens", headers=basic("root", "rootpw"))).json()
    (mine,) = all_tokens["tokens"]
    assert (await client.delete(f"/api/tokens/{mine['id']}", headers=basic("bob", "builder"))).status == 404
    # CSRF: a form post (no JSON content type) is refused before anything is created.
    resp = await client.post("/api/tokens", data={"name": "x", "scopes": "team/**:pull"}, headers=alice)
    assert resp.status == 415
    assert (await client.post("/api/tokens", json={"name": "x", "scopes": ["bad"]}, headers=alice)).status == 400
    assert (await client.post("/api/tokens", json={"name": "x", "scopes": ["x:pull"]})).status == 401
    # A token without the admin scope cannot manage tokens; with it, it can (its owner's).
    plain = await make_token(client, "alice", ["team/**:pull"], name="plain")
    assert (await client.get("/api/tokens", headers=basic("alice", plain))).status == 403
    manager = await make_token(client, "alice", ["admin"], name="manager")
    assert (await client.get("/api/tokens", headers=basic("alice", manager))).status == 200
    root_plain = await make_token(client, "root", ["**:pull"], name="rootplain")
    assert (await client.get("/admin/tokens", headers=basic("root", root_plain))).status == 403


async def test_robot_gets_scopes_intersected_with_rules_naming_it(gov_app: Any) -> None:
    client = await gov_app()
    resp = await client.post("/admin/tokens", json={"robot": "ci", "name": "ci", "scopes": ["**:*"]},
                             headers=basic("root", "rootpw"))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["token"]["owner"] == "robot$ci" and body["token"]["robot"]
    secret = body["secret"]
    for user in ("robot$ci", "ci"):
        assert (await client.get("/v2/", headers=basic(user, secret))).status == 200
    status, digest = await push_image(client, "team/built", "1", basic("ci", secret))
    assert status == 201
    # The rule grants the robot pull and push only; "authenticated" grants elsewhere do not name it.
    assert (await client.delete(f"/v2/team/built/manifests/{digest}", headers=basic("ci", secret))).status == 403
    assert (await client.get("/v2/public/x/tags/list", headers=basic("ci", secret))).status == 403
    # Only admins create robots.
    resp = await client.post("/admin/tokens", json={"robot": "ci2", "name": "x", "scopes": ["**:*"]},
                             headers=basic("alice", "wonderland"))
    assert resp.status == 403


# --- token-service mode --------------------------------------------------------------------------

def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_token_service_takes_access_tokens(gov_app: Any) -> None:
    client = await gov_app("token")
    resp = await client.post("/api/tokens", json={"name": "ro", "scopes": ["team/**:pull"]},
                             headers=basic("alice", "wonderland"))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    secret, token_id = body["secret"], body["token"]["id"]
    resp = await client.get("/auth/token", params={"service": "berth-registry",
                                                    "scope": "repository:team/app:pull,push"},
                            headers=basic("alice", secret))
    assert resp.status == 200
    got = await resp.json()
    claims = _claims(got["token"])
    assert claims["sub"] == "alice" and claims["pat"] == token_id
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert "refresh_token" not in got
    jwt = got["token"]
    assert (await client.get("/v2/team/app/tags/list", headers=bearer(jwt))).status in (200, 404)
    # The OAuth2 form too.
    resp = await client.post("/auth/token", data={"grant_type": "password", "username": "alice", "password": secret,
                                                  "service": "berth-registry", "scope": "repository:team/app:pull"})
    assert resp.status == 200
    # Revoking the access token stops the JWTs issued for it (cache: at most a second).
    await client.delete(f"/api/tokens/{token_id}", headers=basic("alice", "wonderland"))
    await asyncio.sleep(1.1)
    resp = await client.get("/v2/team/app/tags/list", headers=bearer(jwt))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert 'error_description="access token revoked"' in resp.headers["WWW-Authenticate"]
    assert (await resp.json())["errors"][0]["message"] == "access token revoked"
    resp = await client.get("/auth/token", params={"scope": "repository:team/app:pull"}, headers=basic("alice", secret))
    assert resp.status == 401 and "revoked" in await resp.text()


async def test_revocation_reaches_a_second_replica_within_a_second(gov_app: Any, gov_files: Path) -> None:
    one = await gov_app()
    two = await gov_app()  # a second app on the same storage: another replica
    secret = await make_token(one, "alice", ["team/**:pull"])
    assert (await two.get("/v2/", headers=basic("alice", secret))).status == 200
    (token,) = (await (await one.get("/api/tokens", headers=basic("alice", "wonderland"))).json())["tokens"]
    await one.delete(f"/api/tokens/{token['id']}", headers=basic("alice", "wonderland"))
    deadline = time.monotonic() + 1.5
    while True:
        status = (await two.get("/v2/", headers=basic("alice", secret))).status
        if status == 401 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert status == 401
    assert re.search(r"revoked", await (await two.get("/v2/", headers=basic("alice", secret))).text())
