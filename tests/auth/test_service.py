"""Berth's token service and token-mode authorization, on a small app with the real middleware."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest

from auth.access import Access
from auth.challenge import parse_www_authenticate
from auth.middleware import CONTROLLER
from auth.tokens import TokenVerifier, TrustedKeys, generate_signing_key, issue_token
from tests.auth.conftest import basic, bearer, raw_request, small_app, write_htpasswd

SERVICE = "berth-registry"


@pytest.fixture
def make(files: Path, aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    async def make(policy: bool = True, extra: str = "", token_extra: str = "") -> Any:
        text = (f"auth:\n  token:\n    signingkey: {files / 'keys' / 'signing.pem'}\n"
                f"    htpasswd: {files / 'htpasswd'}\n{token_extra}")
        if policy:
            text += f"  policy: {{path: {files / 'policy.yml'}}}\n"
        return await aiohttp_client(small_app(text + extra))

    return make


async def get_token(client: Any, *scopes: str, creds: tuple[str, str] | None = None, **params: str) -> Any:
    query: list[tuple[str, str]] = [("service", SERVICE)] + [("scope", s) for s in scopes] + list(params.items())
    return await client.get("/auth/token", params=query, headers=basic(*creds) if creds else None)


async def token_for(client: Any, *scopes: str, creds: tuple[str, str] | None = None) -> str:
    resp = await get_token(client, *scopes, creds=creds)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["token"])


def access_of(token: str) -> list[dict[str, Any]]:
    return list(jwt.decode(token, options={"verify_signature": False})["access"])


ALICE = ("alice", "wonderland")
BOB = ("bob", "builder")


# --- the docker login flow -------------------------------------------------------------------

async def test_docker_login_flow(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/")
    assert resp.status == 401
    (challenge,) = parse_www_authenticate(resp.headers["WWW-Authenticate"])
    assert challenge.scheme == "bearer"
    assert challenge.realm == f"http://127.0.0.1:{client.port}/auth/token"
    assert challenge.params["service"] == SERVICE and "scope" not in challenge.params

    resp = await client.get("/auth/token", params={"account": "alice", "client_id": "docker",
                                                   "offline_token": "true", "service": SERVICE},
                            headers=basic(*ALICE))
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at", "refresh_token"}
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"])
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [] and claims["sub"] == "alice" and claims["aud"] == SERVICE
    assert claims["iss"] == "berth-token-service"

    resp = await client.get("/v2/", headers=bearer(body["token"]))
    assert resp.status == 200
    assert (await resp.json())["user"] == "alice"

    # Later: docker pulls with the refresh token it stored as the identity token.
    resp = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                                  "service": SERVICE, "client_id": "docker",
                                                  "scope": "repository:team/x:pull,push"})
    assert resp.status == 200
    refreshed = await resp.json()
    assert refreshed["scope"] == "repository:team/x:pull,push"
    assert "refresh_token" not in refreshed
    resp = await client.put("/v2/team/x/manifests/new", headers=bearer(refreshed["access_token"]))
    assert resp.status == 201


async def test_signing_key_created_0600(make: Any, files: Path) -> None:
    await make()
    path = files / "keys" / "signing.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_token_grants_the_intersection(make: Any) -> None:
    client = await make()
    token = await token_for(client, "repository:team/x:pull,push,delete", "repository:secret:pull",
                            "repository:public/a:pull,push", creds=BOB)
    assert access_of(token) == [{"type": "repository", "name": "team/x", "actions": ["pull"]},
                                {"type": "repository", "name": "public/a", "actions": ["pull"]}]


async def test_anonymous_token(make: Any) -> None:
    client = await make()
    token = await token_for(client, "repository:public/a:pull", "repository:team/x:pull")
    assert access_of(token) == [{"type": "repository", "name": "public/a", "actions": ["pull"]}]
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == ""
    resp = await client.get("/v2/public/a/tags/list", headers=bearer(token))
    assert resp.status == 200 and (await resp.json())["user"] is None
    resp = await client.get("/v2/team/x/tags/list", headers=bearer(token))
    assert resp.status == 401
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


async def test_anonymous_gets_no_refresh_token(make: Any) -> None:
    client = await make()
    resp = await get_token(client, offline_token="true")
    assert "refresh_token" not in await resp.json()


async def test_without_a_policy_users_get_everything_asked(make: Any) -> None:
    client = await make(policy=False)
    token = await token_for(client, "repository:secret:pull,push,delete", "registry:catalog:*", creds=BOB)
    assert [a["name"] for a in access_of(token)] == ["secret", "catalog"]
    assert access_of(await token_for(client, "repository:secret:pull")) == []


# --- what a token is good for ----------------------------------------------------------------

async def test_token_for_one_repository_is_useless_on_another(make: Any) -> None:
    client = await make()
    token = await token_for(client, "repository:team/x:pull,push", creds=ALICE)
    assert (await client.get("/v2/team/x/tags/list", headers=bearer(token))).status == 200
    resp = await client.get("/v2/team/y/z/tags/list", headers=bearer(token))
    assert resp.status == 401
    (c,) = parse_www_authenticate(resp.headers["WWW-Authenticate"])
    assert c.params["error"] == "insufficient_scope" and c.scopes == ["repository:team/y/z:pull"]
    assert (await client.delete("/v2/team/x/manifests/x", headers=bearer(token))).status == 401


async def test_challenge_names_every_needed_scope(make: Any) -> None:
    client = await make()
    d = "sha256:" + "0" * 64
    resp = await client.post(f"/v2/team/x/blobs/uploads/?mount={d}&from=public/a")
    (c,) = parse_www_authenticate(resp.headers["WWW-Authenticate"])
    assert c.scopes == ["repository:team/x:push", "repository:public/a:pull"]
    assert "error" not in c.params
    resp = await client.get("/v2/_catalog")
    assert parse_www_authenticate(resp.headers["WWW-Authenticate"])[0].scopes == ["registry:catalog:*"]
    body = await resp.json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED"


async def test_mount_needs_both_scopes(make: Any) -> None:
    client = await make()
    d = "sha256:" + "0" * 64
    push_only = await token_for(client, "repository:team/x:push", creds=ALICE)
    url = f"/v2/team/x/blobs/uploads/?mount={d}&from=public/a"
    assert (await client.post(url, headers=bearer(push_only))).status == 401
    both = await token_for(client, "repository:team/x:push", "repository:public/a:pull", creds=ALICE)
    assert (await client.post(url, headers=bearer(both))).status == 200


async def test_catalog_is_filtered(make: Any) -> None:
    client = await make()
    token = await token_for(client, "registry:catalog:*", creds=BOB)
    resp = await client.get("/v2/_catalog", headers=bearer(token))
    assert (await resp.json())["repositories"] == ["public/a", "team/x", "team/y/z"]
    anon = await token_for(client, "registry:catalog:*")
    resp = await client.get("/v2/_catalog", headers=bearer(anon))
    assert (await resp.json())["repositories"] == ["public/a"]


async def test_overwrite_follows_the_policy(make: Any) -> None:
    client = await make()
    token = await token_for(client, "repository:releases/v:pull,push", "repository:team/x:push", creds=ALICE)
    assert (await client.put("/v2/releases/v/manifests/1.0", headers=bearer(token))).status == 403
    assert (await client.put("/v2/releases/v/manifests/2.0", headers=bearer(token))).status == 201
    assert (await client.put("/v2/team/x/manifests/v1", headers=bearer(token))).status == 201


async def test_basic_credentials_on_the_registry_get_a_bearer_challenge(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/", headers=basic(*ALICE))
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer ")


# --- forged and foreign tokens at the HTTP level ---------------------------------------------

async def test_invalid_tokens(make: Any) -> None:
    client = await make()
    controller = client.app[CONTROLLER]
    key = controller.signing_key
    good = dict(issuer="berth-token-service", audience=SERVICE, subject="alice",
                access=[Access("repository", "team/x", ("pull",))])
    other = generate_signing_key()
    head, body, sig = issue_token(key, lifetime=300, **good).split(".")  # type: ignore[arg-type]
    tokens = {
        "expired": issue_token(key, lifetime=300, now=time.time() - 3600, **good),  # type: ignore[arg-type]
        "future": issue_token(key, lifetime=300, now=time.time() + 3600, **good),  # type: ignore[arg-type]
        "other key": issue_token(other, lifetime=300, **good),  # type: ignore[arg-type]
        "wrong aud": issue_token(key, lifetime=300, **{**good, "audience": "elsewhere"}),  # type: ignore[arg-type]
        "wrong iss": issue_token(key, lifetime=300, **{**good, "issuer": "mallory"}),  # type: ignore[arg-type]
        "tampered": f"{head}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{sig}",
        "garbage": "abc.def.ghi",
    }
    for what, token in tokens.items():
        resp = await client.get("/v2/team/x/tags/list", headers=bearer(token))
        assert resp.status == 401, what
        (c,) = parse_www_authenticate(resp.headers["WWW-Authenticate"])
        assert c.params["error"] == "invalid_token", what
        assert c.scopes == ["repository:team/x:pull"], what


async def test_alg_none_and_hs256_at_the_door(make: Any) -> None:
    client = await make()
    key = client.app[CONTROLLER].signing_key
    now = int(time.time())
    payload = {"iss": "berth-token-service", "aud": SERVICE, "sub": "alice", "exp": now + 60, "nbf": now,
               "access": [{"type": "repository", "name": "team/x", "actions": ["pull"]}]}

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    import hashlib
    import hmac
    import json

    from cryptography.hazmat.primitives import serialization

    none = f"{b64(json.dumps({'alg': 'none', 'kid': key.kid}).encode())}.{b64(json.dumps(payload).encode())}."
    head = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
    pem = key.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{head}.{b64(json.dumps(payload).encode())}"
    hs = signing_input + "." + b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    for token in (none, hs):
        status, headers, _ = await raw_request(client, "GET", "/v2/team/x/tags/list", bearer(token))
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]


async def test_refresh_token_is_not_an_access_token(make: Any) -> None:
    client = await make()
    resp = await get_token(client, creds=ALICE, offline_token="true")
    refresh = (await resp.json())["refresh_token"]
    resp = await client.get("/v2/", headers=bearer(refresh))
    assert resp.status == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_access_token_is_not_a_refresh_token(make: Any) -> None:
    client = await make()
    token = await token_for(client, creds=ALICE)
    resp = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                  "service": SERVICE, "client_id": "x"})
    assert resp.status == 401


# --- scope and path tricks -------------------------------------------------------------------

@pytest.mark.parametrize("scope", [
    "repository:team/x:bogus:pull", "repository:team/../team/x:pull", "repository:team%2Fx:pull",
    "repository:Team/x:pull", "repository:team/x/:pull", "repository:team//x:pull", "repository:/team/x:pull",
    "repository:team/x", "registry:catalog:pull", "registry:other:*", "plugin:team/x:pull",
])
async def test_scope_tricks_grant_nothing(make: Any, scope: str) -> None:
    client = await make()
    token = await token_for(client, scope, creds=("alice", "wonderland"))
    assert access_of(token) == []


async def test_repeated_scopes_merge(make: Any) -> None:
    client = await make()
    token = await token_for(client, "repository:team/x:pull", "repository:team/x:push",
                            "repository:team/x:pull repository:team/x:delete", creds=ALICE)
    assert access_of(token) == [{"type": "repository", "name": "team/x", "actions": ["delete", "pull", "push"]}]


async def test_path_tricks(make: Any) -> None:
    client = await make()
    token = await token_for(client, "repository:team/x:pull", creds=ALICE)
    h = bearer(token)
    status, _, _ = await raw_request(client, "GET", "/v2/team%2Fx/tags/list", h)
    assert status == 200  # the same repository, decoded the way the dispatcher decodes it
    for path in ["/v2/team/x%2F..%2Fy/z/tags/list", "/v2/team/x/../y/z/tags/list", "/v2/Team/x/tags/list"]:
        status, _, body = await raw_request(client, "GET", path, h)
        assert status == 400 and b"NAME_INVALID" in body, path
    status, _, _ = await raw_request(client, "GET", "/v2/team/x/tags/list/", h)
    assert status == 200  # no route: only "authenticated" is required, the dispatcher answers 404
    status, headers, _ = await raw_request(client, "GET", "/v2/team/x/y/tags/list", h)
    assert status == 401 and "repository:team/x/y:pull" in headers["www-authenticate"]


@pytest.mark.parametrize("headers", [
    [("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
    [("Authorization", "Bearer a b")],
    [("Authorization", "Bearer")],
])
async def test_malformed_authorization_is_invalid_request(make: Any, headers: list[tuple[str, str]]) -> None:
    client = await make()
    status, hdrs, body = await raw_request(client, "GET", "/v2/", headers)
    assert status == 400
    assert 'error="invalid_request"' in hdrs["www-authenticate"] and b"UNAUTHORIZED" in body


async def test_repeated_authorization_with_one_good_token_is_refused(make: Any) -> None:
    client = await make()
    token = await token_for(client, "repository:team/x:pull", creds=ALICE)
    status, _, _ = await raw_request(client, "GET", "/v2/team/x/tags/list",
                                     [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")])
    assert status == 400


# --- the token endpoint's own errors ---------------------------------------------------------

async def test_wrong_password(make: Any) -> None:
    client = await make()
    resp = await get_token(client, creds=("alice", "nope"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"


async def test_unknown_service(make: Any) -> None:
    client = await make()
    resp = await client.get("/auth/token", params={"service": "other"}, headers=basic(*ALICE))
    assert resp.status == 400


async def test_account_must_match(make: Any) -> None:
    client = await make()
    assert (await get_token(client, creds=ALICE, account="bob")).status == 400
    assert (await get_token(client, creds=ALICE, account="alice")).status == 200


async def test_bearer_to_the_token_endpoint(make: Any) -> None:
    client = await make()
    resp = await client.get("/auth/token", headers=bearer("abc"))
    assert resp.status == 400


async def test_oauth_password_grant(make: Any) -> None:
    client = await make()
    resp = await client.post("/auth/token", data={
        "grant_type": "password", "username": "bob", "password": "builder", "service": SERVICE,
        "client_id": "podman", "access_type": "offline", "scope": "repository:team/x:pull,push repository:secret:pull"})
    assert resp.status == 200
    body = await resp.json()
    assert body["scope"] == "repository:team/x:pull"
    assert {"access_token", "expires_in", "issued_at", "refresh_token", "scope"} <= set(body)
    resp = await client.post("/auth/token", data={"grant_type": "password", "username": "bob", "password": "x",
                                                  "service": SERVICE, "client_id": "podman"})
    assert resp.status == 401
    resp = await client.post("/auth/token", data={"grant_type": "password", "service": SERVICE})
    assert resp.status == 400


async def test_oauth_refresh_with_offline_gets_a_new_refresh_token(make: Any) -> None:
    client = await make()
    first = await (await get_token(client, creds=ALICE, offline_token="true")).json()
    resp = await client.post("/auth/token", data={"grant_type": "refresh_token", "access_type": "offline",
                                                  "refresh_token": first["refresh_token"], "client_id": "c"})
    body = await resp.json()
    assert resp.status == 200 and body["refresh_token"]


@pytest.mark.parametrize("form", [
    {"grant_type": "client_credentials"},
    {},
    {"grant_type": "password", "username": "alice", "password": "wonderland", "service": "other"},
])
async def test_oauth_bad_requests(make: Any, form: dict[str, str]) -> None:
    client = await make()
    assert (await client.post("/auth/token", data=form)).status == 400


async def test_refresh_token_dies_with_a_password_change(make: Any, files: Path) -> None:
    client = await make(extra="  loginlimit: {failures: 0}\n")
    refresh = (await (await get_token(client, creds=ALICE, offline_token="true")).json())["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE, "client_id": "docker"}
    assert (await client.post("/auth/token", data=form)).status == 200
    write_htpasswd(files / "htpasswd", {"alice": "changed", "bob": "builder"})
    for _ in range(40):
        await asyncio.sleep(0.1)
        if (await client.post("/auth/token", data=form)).status == 401:
            break
    else:
        pytest.fail("refresh token still honoured after the password changed")


async def test_refresh_garbage(make: Any) -> None:
    client = await make()
    resp = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": "x.y.z"})
    assert resp.status == 401


async def test_token_endpoint_rate_limit(make: Any) -> None:
    client = await make(extra="  loginlimit: {failures: 3, window: 1m}\n")
    for _ in range(3):
        assert (await get_token(client, creds=("alice", "guess"))).status == 401
    resp = await get_token(client, creds=ALICE)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    resp = await client.post("/auth/token", data={"grant_type": "password", "username": "alice",
                                                  "password": "wonderland"})
    assert resp.status == 429


async def test_jwks(make: Any) -> None:
    client = await make()
    doc = await (await client.get("/auth/jwks")).json()
    trusted = TrustedKeys()
    trusted.add_jwks(doc)
    token = await token_for(client, "repository:team/x:pull", creds=ALICE)
    claims = TokenVerifier(trusted, issuer="berth-token-service", audience=SERVICE).verify(token)
    assert claims.subject == "alice"


async def test_configured_realm_and_names(make: Any) -> None:
    client = await make(token_extra="    realm: https://registry.example/auth/token\n    service: reg.example\n"
                                    "    issuer: example-issuer\n    expiration: 10m\n")
    resp = await client.get("/v2/")
    assert resp.headers["WWW-Authenticate"] == \
        'Bearer realm="https://registry.example/auth/token",service="reg.example"'
    resp = await client.get("/auth/token", params={"service": "reg.example"}, headers=basic(*ALICE))
    body = await resp.json()
    assert body["expires_in"] == 600
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["iss"] == "example-issuer" and claims["aud"] == "reg.example"
    assert (await client.get("/v2/", headers=bearer(body["token"]))).status == 200


async def test_no_secret_in_any_log_line(make: Any, caplog: pytest.LogCaptureFixture, files: Path) -> None:
    client = await make()
    secrets: list[str] = ["wonderland", "Typo-S3cret"]
    with caplog.at_level(logging.DEBUG):
        body = await (await get_token(client, "repository:team/x:pull", creds=ALICE, offline_token="true")).json()
        secrets += [body["token"], body["refresh_token"]]
        await get_token(client, creds=("alice", "Typo-S3cret"))
        await client.get("/v2/team/x/tags/list", headers=bearer(body["token"]))
        await client.get("/v2/team/y/z/tags/list", headers=bearer(body["token"]))
        await client.get("/v2/", headers=bearer(body["token"][:-4] + "AAAA"))
        await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
        await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["token"]})
        await client.post("/auth/token", data={"grant_type": "password", "username": "alice",
                                               "password": "Typo-S3cret"})
    text = caplog.text
    assert "issued token" in text and "failed login" in text and "rejected" in text
    for secret in secrets:
        assert secret not in text
        for part in secret.split(".")[1:]:
            assert part not in text
    key_pem = (files / "keys" / "signing.pem").read_text()
    assert "PRIVATE KEY" not in text and key_pem.splitlines()[1] not in text


async def test_empty_basic_credentials_get_an_anonymous_token(make: Any) -> None:
    client = await make(extra="  loginlimit: {failures: 1, window: 1m}\n")
    for _ in range(3):
        resp = await get_token(client, "repository:public/a:pull", creds=("", ""))
        assert resp.status == 200
        assert jwt.decode((await resp.json())["token"], options={"verify_signature": False})["sub"] == ""


async def test_startup_refuses_a_key_the_pinned_algorithms_reject(files: Path,
                                                                  aiohttp_client: Callable[..., Any]) -> None:
    text = (f"auth:\n  token:\n    signingkey: {files / 'k.pem'}\n    htpasswd: {files / 'htpasswd'}\n"
            "    signingalgorithms: [RS256]\n")
    with pytest.raises(ValueError, match="ES256"):
        await aiohttp_client(small_app(text))


@pytest.mark.parametrize("extra,realm", [
    ("http: {host: 'https://registry.example/'}\n", "https://registry.example/auth/token"),
    ("", "http://{host}/auth/token"),
])
async def test_default_realm(files: Path, aiohttp_client: Callable[..., Any], extra: str, realm: str) -> None:
    client = await aiohttp_client(small_app(
        extra + f"auth:\n  token:\n    signingkey: {files / 'k.pem'}\n    htpasswd: {files / 'htpasswd'}\n"))
    resp = await client.get("/v2/")
    (c,) = parse_www_authenticate(resp.headers["WWW-Authenticate"])
    assert c.realm == realm.format(host=f"127.0.0.1:{client.port}")


async def test_autoredirect_realm(files: Path, aiohttp_client: Callable[..., Any]) -> None:
    client = await aiohttp_client(small_app(
        f"auth:\n  token:\n    signingkey: {files / 'k.pem'}\n    realm: https://elsewhere/t\n"
        "    autoredirect: true\n"))
    resp = await client.get("/v2/", headers={"Host": "reg.example:5000"})
    assert parse_www_authenticate(resp.headers["WWW-Authenticate"])[0].realm == "http://reg.example:5000/auth/token"


async def test_token_requests_name_the_user_for_the_access_log(files: Path,
                                                                aiohttp_client: Callable[..., Any]) -> None:
    from aiohttp import web

    from registry.appkeys import REQUEST_USER

    seen: list[str | None] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append(request.get(REQUEST_USER))

    app = small_app(f"auth:\n  token:\n    signingkey: {files / 'k.pem'}\n    htpasswd: {files / 'htpasswd'}\n")
    app.on_response_prepare.append(record)
    client = await aiohttp_client(app)
    await get_token(client, creds=ALICE)
    await get_token(client)
    assert seen == ["alice", None]
