"""The auth runs really authenticate: challenges, exactly the challenged scopes, cached tokens, mounts, catalog.

Runs only where the registry requires credentials (``berth-filesystem-token``,
``berth-filesystem-htpasswd``); the workflow modules run there unchanged. Each test uses its own
client and :class:`TokenCache`, so the counts it asserts are its own.
"""

from __future__ import annotations

import urllib.parse
import uuid

import pytest

from tests.conformance.client import (
    Challenge,
    ConformanceHTTP,
    TokenCache,
    TokenServiceError,
    auth_mode,
    basic_authorization,
    oci_env,
    send,
)
from tests.conformance.spec import (
    SpecData,
    error_codes,
    is_2xx,
    location,
    put_manifest,
    upload,
    with_query,
)
from tests.servers import Server

pytestmark = pytest.mark.auth_only


def _client(registry: Server, password: str | None = None) -> ConformanceHTTP:
    env = oci_env(registry)
    if password is not None:
        env["OCI_PASSWORD"] = password
    return ConformanceHTTP.from_env(env, TokenCache())


def _repo(what: str) -> str:
    return f"conformance/auth-{what}-{uuid.uuid4().hex[:8]}"


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:push"


def test_unauthenticated_base_is_challenged(registry: Server) -> None:
    resp = send("GET", registry.url + "/v2/")
    assert resp.status == 401, resp.body
    assert error_codes(resp) == ["UNAUTHORIZED"]
    challenge = Challenge.parse(resp.headers.get("www-authenticate", ""))
    if auth_mode(registry) == "token":
        assert challenge.scheme == "bearer"
        assert challenge.params["realm"].startswith("http://127.0.0.1:")
        assert challenge.params.get("service")
        assert not challenge.scopes  # /v2/ needs an authenticated caller, no scope
    else:
        assert challenge.scheme == "basic" and challenge.params.get("realm")


def test_unauthenticated_api_request_is_challenged_with_its_scope(registry: Server) -> None:
    repo = _repo("anon")
    resp = send("GET", f"{registry.url}/v2/{repo}/tags/list")
    assert resp.status == 401, resp.body
    challenge = Challenge.parse(resp.headers.get("www-authenticate", ""))
    if auth_mode(registry) == "token":
        assert challenge.scopes == {_pull(repo)}


def test_wrong_password_is_refused(registry: Server) -> None:
    client = _client(registry, password="not the password")
    if auth_mode(registry) == "token":
        with pytest.raises(TokenServiceError, match="401"):
            client.request("GET", "/v2/")
        assert not client.cache.fetched
    else:
        assert client.request("GET", "/v2/").status == 401


def test_base_with_credentials_is_200(registry: Server) -> None:
    client = _client(registry)
    assert client.request("GET", "/v2/").status == 200
    if auth_mode(registry) == "token":
        assert client.cache.fetched == [frozenset()]  # docker login's token: no scopes
    else:
        assert client.cache.basic and client.cache.basic_requests == 1


@pytest.mark.token_only
def test_token_flow_asks_for_the_challenged_scopes_and_caches_them(
    registry: Server, spec: SpecData
) -> None:
    """Push: one token for ``push``, reused by the upload's PUT; pull: one more for ``pull``, then none."""
    client = _client(registry)
    repo = _repo("flow")
    upload(client, repo, spec.blob_a)
    assert client.cache.fetched == [frozenset({_push(repo)})]
    for _ in range(3):
        resp = client.request("GET", f"/v2/{repo}/blobs/{spec.blob_a.digest}")
        assert resp.status == 200 and resp.body == spec.blob_a.data
    assert client.cache.fetched == [frozenset({_push(repo)}), frozenset({_pull(repo)})]
    # POST, PUT and the first GET were challenged once each; later GETs sent the cached token up front.
    assert len(client.cache.challenges) == 3
    assert client.cache.bearer_requests == 5


@pytest.mark.token_only
def test_a_token_grants_only_its_scopes(registry: Server, spec: SpecData) -> None:
    client = _client(registry)
    mine, other = _repo("mine"), _repo("other")
    upload(client, mine, spec.blob_a)
    token = client.cache.tokens[frozenset({_push(mine)})]
    resp = send("GET", f"{registry.url}/v2/{other}/blobs/{spec.blob_a.digest}", {"Authorization": f"Bearer {token}"})
    assert resp.status == 401, resp.body
    challenge = Challenge.parse(resp.headers["www-authenticate"])
    assert challenge.params.get("error") == "insufficient_scope"
    assert challenge.scopes == {_pull(other)}
    forged = send("GET", f"{registry.url}/v2/{mine}/tags/list", {"Authorization": f"Bearer {token[:-4]}AAAA"})
    assert forged.status == 401
    assert Challenge.parse(forged.headers["www-authenticate"]).params.get("error") == "invalid_token"


def test_cross_mount_asks_for_the_source_pull_scope(registry: Server, spec: SpecData) -> None:
    client = _client(registry)
    source, target = _repo("source"), _repo("target")
    upload(client, source, spec.blob_a)
    path = with_query(f"/v2/{target}/blobs/uploads/", mount=spec.blob_a.digest, **{"from": source})
    if auth_mode(registry) == "token":
        raw = send("POST", registry.url + path)
        assert raw.status == 401, raw.body
        assert Challenge.parse(raw.headers["www-authenticate"]).scopes == {_push(target), _pull(source)}
        # A token for the target alone does not mount.
        upload(client, target, spec.blob_b)
        narrow = client.cache.tokens[frozenset({_push(target)})]
        refused = send("POST", registry.url + path, {"Authorization": f"Bearer {narrow}"})
        assert refused.status == 401, refused.body
        assert Challenge.parse(refused.headers["www-authenticate"]).params.get("error") == "insufficient_scope"
    resp = client.request("POST", path)
    assert resp.status == 201, resp.body
    assert location(resp) == f"/v2/{target}/blobs/{spec.blob_a.digest}"
    if auth_mode(registry) == "token":
        assert client.cache.fetched[-1] == {_push(target), _pull(source)}
    assert client.request("GET", location(resp)).body == spec.blob_a.data


def test_catalog_with_credentials(registry: Server, spec: SpecData) -> None:
    client = _client(registry)
    repo = _repo("catalog")
    upload(client, repo, spec.configs[0])
    upload(client, repo, spec.layer)
    assert is_2xx(put_manifest(client, repo, "latest", spec.manifests[0]))
    resp = client.request("GET", "/v2/_catalog?n=1000")
    assert resp.status == 200, resp.body
    assert repo in resp.json()["repositories"]
    if auth_mode(registry) == "token":
        assert frozenset({"registry:catalog:*"}) in client.cache.fetched


@pytest.mark.token_only
def test_one_scope_parameter_holding_both_scopes_works(registry: Server, spec: SpecData) -> None:
    """The official suite's client passes the challenge's ``scope`` on as one parameter, spaces and all."""
    client = _client(registry)
    source, target = _repo("source"), _repo("target")
    upload(client, source, spec.blob_a)
    path = with_query(f"/v2/{target}/blobs/uploads/", mount=spec.blob_a.digest, **{"from": source})
    challenge = Challenge.parse(send("POST", registry.url + path).headers["www-authenticate"])
    scope = challenge.params["scope"]
    assert " " in scope
    query = urllib.parse.urlencode({"service": challenge.params["service"], "scope": scope})
    user, password = registry.credentials or ("", "")
    issued = send("GET", f"{challenge.params['realm']}?{query}", {"Authorization": basic_authorization(user, password)})
    assert issued.status == 200, issued.body
    token = issued.json()["token"]
    resp = send("POST", registry.url + path, {"Authorization": f"Bearer {token}"})
    assert resp.status == 201, resp.body
