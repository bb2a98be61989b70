"""The auth flow driven by hand: no network, just requests out and responses in."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from registry.client.authflow import Request, RegistryAuth, Response, merge_scopes
from registry.client.credentials import Credential
from registry.client.errors import AuthError

REALM = "https://auth.example/token"
BEARER = f'Bearer realm="{REALM}",service="reg.example",scope="repository:a/b:pull"'


def token_response(token: str, **extra: Any) -> Response:
    return Response(200, {}, [], json.dumps({"token": token, **extra}).encode())


def unauthorized(header: str) -> Response:
    return Response(401, {}, [header])


def test_no_challenge_passes_through() -> None:
    flow = RegistryAuth().flow(Request("GET", "https://reg.example/v2/a/b/manifests/1"))
    sent = next(flow)
    assert "Authorization" not in sent.headers
    with pytest.raises(StopIteration) as done:
        flow.send(Response(200))
    assert done.value.value.status == 200


def test_basic_challenge_retries_once_with_credentials() -> None:
    auth = RegistryAuth(lambda host: Credential("alice", "s3cret"))
    flow = auth.flow(Request("GET", "https://reg.example/v2/"))
    next(flow)
    retried = flow.send(unauthorized('Basic realm="Registry"'))
    assert retried.headers["Authorization"] == "Basic YWxpY2U6czNjcmV0"
    with pytest.raises(StopIteration) as done:
        flow.send(unauthorized('Basic realm="Registry"'))
    assert done.value.value.status == 401  # no loop: the 401 surfaces
    # The host's challenge is remembered: the next request carries Basic up front.
    second = next(auth.flow(Request("GET", "https://reg.example/v2/x")))
    assert second.headers["Authorization"].startswith("Basic ")


def test_anonymous_basic_challenge_is_returned() -> None:
    flow = RegistryAuth().flow(Request("GET", "https://reg.example/v2/"))
    next(flow)
    with pytest.raises(StopIteration) as done:
        flow.send(unauthorized('Basic realm="Registry"'))
    assert done.value.value.status == 401


def test_bearer_token_fetched_per_scope_and_cached() -> None:
    auth = RegistryAuth(lambda host: Credential("bob", "pw"))
    flow = auth.flow(Request("GET", "https://reg.example/v2/a/b/manifests/1"), ["repository:a/b:pull"])
    next(flow)
    token_req = flow.send(unauthorized(BEARER))
    assert token_req.is_token_request and token_req.method == "GET"
    query = parse_qs(urlsplit(token_req.url).query)
    assert query == {"service": ["reg.example"], "scope": ["repository:a/b:pull"]}
    assert token_req.headers["Authorization"].startswith("Basic ")
    retried = flow.send(token_response("T1", expires_in=300))
    assert retried.headers["Authorization"] == "Bearer T1"
    with pytest.raises(StopIteration):
        flow.send(Response(200))

    # Same scope: the cached token goes out first time, no 401 round trip.
    again = next(auth.flow(Request("GET", "https://reg.example/v2/a/b/blobs/x"), ["repository:a/b:pull"]))
    assert again.headers["Authorization"] == "Bearer T1"
    # A new scope: a token request comes first (the challenge is known), then the request.
    push = auth.flow(Request("PUT", "https://reg.example/v2/a/b/manifests/1"), ["repository:a/b:pull,push"])
    first = next(push)
    assert first.is_token_request and parse_qs(urlsplit(first.url).query)["scope"] == ["repository:a/b:pull,push"]
    assert push.send(token_response("T2")).headers["Authorization"] == "Bearer T2"


def test_expired_token_is_refetched() -> None:
    now = [1000.0]
    auth = RegistryAuth(clock=lambda: now[0])
    flow = auth.flow(Request("GET", "https://reg.example/v2/a/b/tags/list"), ["repository:a/b:pull"])
    next(flow)
    flow.send(unauthorized(BEARER))
    flow.send(token_response("OLD", expires_in=60))
    now[0] += 3600
    fresh = next(auth.flow(Request("GET", "https://reg.example/v2/a/b/tags/list"), ["repository:a/b:pull"]))
    assert fresh.is_token_request


def test_identity_token_uses_the_refresh_grant() -> None:
    auth = RegistryAuth(lambda host: Credential(identity_token="REFRESH"))
    flow = auth.flow(Request("GET", "https://reg.example/v2/a/b/manifests/1"), ["repository:a/b:pull"])
    next(flow)
    token_req = flow.send(unauthorized(BEARER))
    assert token_req.method == "POST"
    form = parse_qs(token_req.body.decode())
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == ["REFRESH"]
    assert form["scope"] == ["repository:a/b:pull"] and form["service"] == ["reg.example"]
    assert flow.send(Response(200, {}, [], b'{"access_token": "A"}')).headers["Authorization"] == "Bearer A"


def test_refresh_token_from_token_server_is_reused() -> None:
    auth = RegistryAuth(lambda host: Credential("u", "p"))
    flow = auth.flow(Request("GET", "https://reg.example/v2/a/b/manifests/1"), ["repository:a/b:pull"])
    next(flow)
    flow.send(unauthorized(BEARER))
    flow.send(token_response("T", refresh_token="R2"))
    second = auth.flow(Request("GET", "https://reg.example/v2/c/d/manifests/1"), ["repository:c/d:pull"])
    req = next(second)
    assert req.method == "POST" and parse_qs(req.body.decode())["refresh_token"] == ["R2"]


def test_insufficient_scope_merges_the_challenge_scope() -> None:
    auth = RegistryAuth()
    flow = auth.flow(Request("POST", "https://reg.example/v2/a/b/blobs/uploads/"), ["repository:a/b:push"])
    next(flow)
    header = f'Bearer realm="{REALM}",service="reg.example",scope="repository:a/b:pull",error="insufficient_scope"'
    token_req = flow.send(unauthorized(header))
    assert parse_qs(urlsplit(token_req.url).query)["scope"] == ["repository:a/b:pull,push"]


def test_token_server_refusal_is_an_auth_error() -> None:
    flow = RegistryAuth(lambda host: Credential("eve", "bad")).flow(Request("GET", "https://reg.example/v2/a/b/manifests/1"))
    next(flow)
    flow.send(unauthorized(BEARER))
    with pytest.raises(AuthError, match="reg.example.*as eve"):
        flow.send(Response(401))


def test_login_flow_prefers_an_identity_token() -> None:
    auth = RegistryAuth()
    flow = auth.login_flow("https://reg.example", Credential("u", "p"))
    ping = next(flow)
    assert ping.url == "https://reg.example/v2/"
    grant = flow.send(unauthorized(BEARER))
    form = parse_qs(grant.body.decode())
    assert form["grant_type"] == ["password"] and form["access_type"] == ["offline"]
    with pytest.raises(StopIteration) as done:
        flow.send(token_response("T", refresh_token="ID"))
    assert done.value.value == Credential("u", "", "ID")


def test_login_flow_falls_back_to_get_and_rejects_bad_passwords() -> None:
    flow = RegistryAuth().login_flow("https://reg.example", Credential("u", "p"))
    next(flow)
    flow.send(unauthorized(BEARER))
    fallback = flow.send(Response(404))
    assert fallback.method == "GET" and fallback.headers["Authorization"].startswith("Basic ")
    with pytest.raises(StopIteration) as done:
        flow.send(token_response("T"))
    assert done.value.value == Credential("u", "p")

    basic = RegistryAuth().login_flow("https://reg.example", Credential("u", "wrong"))
    next(basic)
    basic.send(unauthorized('Basic realm="r"'))
    with pytest.raises(AuthError, match="incorrect username or password for reg.example"):
        basic.send(Response(401))


def test_merge_scopes() -> None:
    assert merge_scopes(["repository:a:pull"], ["repository:a:push", "repository:b:pull"]) == [
        "repository:a:pull,push", "repository:b:pull"]
    assert merge_scopes(["registry:catalog:*"]) == ["registry:catalog:*"]
