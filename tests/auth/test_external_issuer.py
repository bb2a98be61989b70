"""Token mode with an external issuer: trust from rootcertbundle / jwks, kid forms, x5c chains."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest

from auth.tokens import jwk_thumbprint, libtrust_key_id, public_jwk
from tests.auth.conftest import bearer, cert_pem, ec_key, make_cert, rsa_key, small_app, x5c

ISSUER, SERVICE, REALM = "https://auth.example/", "registry.example", "https://auth.example/token"


def token(key: Any, alg: str = "RS256", *, sub: str = "carol", access: list[dict[str, Any]] | None = None,
          **headers: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "aud": SERVICE, "exp": now + 120, "nbf": now, "iat": now, "jti": "x",
              "access": access if access is not None else [
                  {"type": "repository", "name": "team/x", "actions": ["pull", "push"]}]}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


@pytest.fixture
def issuer(tmp_path: Path) -> dict[str, Any]:
    root_key, signer_key, jwks_key = ec_key(), rsa_key(), rsa_key()
    root = make_cert("token-root", root_key, ca=True)
    signer = make_cert("token-signer", signer_key, issuer=(root, root_key))
    selfsigned_key = rsa_key()
    selfsigned = make_cert("docker_auth", selfsigned_key)
    (tmp_path / "bundle.pem").write_bytes(cert_pem(root, selfsigned))
    (tmp_path / "jwks.json").write_text(json.dumps(
        {"keys": [{**public_jwk(jwks_key.public_key()), "kid": "2024-key", "use": "sig"}]}))
    return {"root": root, "signer": signer, "signer_key": signer_key, "selfsigned_key": selfsigned_key,
            "jwks_key": jwks_key, "dir": tmp_path}


@pytest.fixture
def make(issuer: dict[str, Any], aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    async def make(extra: str = "") -> Any:
        d = issuer["dir"]
        text = (f"auth:\n  token:\n    realm: {REALM}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
                f"    rootcertbundle: {d / 'bundle.pem'}\n    jwks: {d / 'jwks.json'}\n{extra}")
        return await aiohttp_client(small_app(text))

    return make


async def test_challenge_points_to_the_external_realm(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/team/x/tags/list")
    assert resp.headers["WWW-Authenticate"] == \
        f'Bearer realm="{REALM}",service="{SERVICE}",scope="repository:team/x:pull"'
    assert (await client.get("/auth/token")).status == 404  # no built-in service


async def test_x5c_chain(make: Any, issuer: dict[str, Any]) -> None:
    client = await make()
    t = token(issuer["signer_key"], x5c=x5c(issuer["signer"]))
    resp = await client.get("/v2/team/x/tags/list", headers=bearer(t))
    assert resp.status == 200 and (await resp.json())["user"] == "carol"


async def test_kid_forms(make: Any, issuer: dict[str, Any]) -> None:
    client = await make()
    key = issuer["selfsigned_key"]
    for kid in (libtrust_key_id(key.public_key()), jwk_thumbprint(key.public_key())):
        assert (await client.get("/v2/team/x/tags/list", headers=bearer(token(key, kid=kid)))).status == 200
    jkey = issuer["jwks_key"]
    assert (await client.get("/v2/team/x/tags/list", headers=bearer(token(jkey, kid="2024-key")))).status == 200


async def test_untrusted_signers(make: Any, issuer: dict[str, Any]) -> None:
    client = await make()
    stranger = rsa_key()
    forged_cert = make_cert("token-signer", stranger)  # same name, self-signed
    for t in (token(stranger, kid=libtrust_key_id(stranger.public_key())),
              token(stranger, kid=libtrust_key_id(issuer["selfsigned_key"].public_key())),
              token(stranger, x5c=x5c(forged_cert)),
              token(stranger, x5c=x5c(issuer["signer"])),
              token(issuer["signer_key"])):
        resp = await client.get("/v2/team/x/tags/list", headers=bearer(t))
        assert resp.status == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_pinned_algorithms(make: Any, issuer: dict[str, Any]) -> None:
    client = await make("    signingalgorithms: [ES256]\n")
    key = issuer["selfsigned_key"]
    t = token(key, kid=libtrust_key_id(key.public_key()))
    assert (await client.get("/v2/team/x/tags/list", headers=bearer(t))).status == 401


async def test_star_action_and_catalog_from_an_external_token(make: Any, issuer: dict[str, Any]) -> None:
    client = await make()
    key = issuer["selfsigned_key"]
    kid = libtrust_key_id(key.public_key())
    t = token(key, kid=kid, access=[{"type": "repository", "name": "team/x", "actions": ["*"]},
                                    {"type": "registry", "name": "catalog", "actions": ["*"]}])
    assert (await client.delete("/v2/team/x/manifests/a", headers=bearer(t))).status == 200
    resp = await client.get("/v2/_catalog", headers=bearer(t))
    assert resp.status == 200  # no policy file: an authenticated subject sees everything
    assert len((await resp.json())["repositories"]) == 5


async def test_startup_fails_on_an_unreadable_bundle(issuer: dict[str, Any],
                                                     aiohttp_client: Callable[..., Any]) -> None:
    (issuer["dir"] / "bundle.pem").write_text("junk")
    d = issuer["dir"]
    with pytest.raises(ValueError):
        await aiohttp_client(small_app(
            f"auth:\n  token:\n    realm: {REALM}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {d / 'bundle.pem'}\n"))
