"""Basic-auth mode (``auth.htpasswd``) through the real middleware on a small app."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any, Callable

import pytest

from auth.challenge import parse_www_authenticate
from tests.auth.conftest import POLICY, basic, raw_request, small_app, write_htpasswd



@pytest.fixture
def make(files: Path, aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    async def make(policy: bool = True, extra: str = "") -> Any:
        text = f"auth:\n  htpasswd: {{realm: Test Realm, path: {files / 'htpasswd'}}}\n"
        if policy:
            text += f"  policy: {{path: {files / 'policy.yml'}}}\n"
        return await aiohttp_client(small_app(text + extra))

    return make


async def error_code(resp: Any) -> str:
    return str((await resp.json())["errors"][0]["code"])


async def test_anonymous_gets_a_basic_challenge(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="Test Realm"'
    assert await error_code(resp) == "UNAUTHORIZED"


async def test_login(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/", headers=basic("alice", "wonderland"))
    assert resp.status == 200
    assert (await resp.json())["user"] == "alice"


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("alice", ""), ("ghost", "wonderland"),
                                           ("", "wonderland"), ("ALICE", "wonderland")])
async def test_bad_credentials(make: Any, user: str, password: str) -> None:
    client = await make()
    resp = await client.get("/v2/", headers=basic(user, password))
    assert resp.status == 401
    assert parse_www_authenticate(resp.headers["WWW-Authenticate"])[0].scheme == "basic"


async def test_health_and_metrics_need_nothing(make: Any) -> None:
    client = await make()
    assert (await client.get("/healthz")).status == 200


async def test_other_paths_need_a_login(make: Any) -> None:
    client = await make()
    assert (await client.get("/elsewhere")).status == 401
    assert (await client.get("/elsewhere", headers=basic("bob", "builder"))).status == 200


async def test_anonymous_pull_where_the_policy_allows_it(make: Any) -> None:
    client = await make()
    assert (await client.get("/v2/public/a/tags/list")).status == 200
    resp = await client.get("/v2/team/x/tags/list")
    assert resp.status == 401
    assert (await client.put("/v2/public/a/manifests/t")).status == 401


async def test_users_get_what_the_policy_allows(make: Any) -> None:
    client = await make()
    bob = basic("bob", "builder")
    assert (await client.get("/v2/team/x/tags/list", headers=bob)).status == 200
    resp = await client.put("/v2/team/x/manifests/new", headers=bob)
    assert resp.status == 403
    assert await error_code(resp) == "DENIED"
    assert (await client.put("/v2/team/x/manifests/new", headers=basic("alice", "wonderland"))).status == 201
    assert (await client.delete("/v2/secret/manifests/t", headers=basic("alice", "wonderland"))).status == 403


async def test_mount_needs_pull_on_the_source(make: Any) -> None:
    client = await make()
    alice = basic("alice", "wonderland")
    d = "sha256:" + "0" * 64
    assert (await client.post(f"/v2/team/x/blobs/uploads/?mount={d}&from=secret", headers=alice)).status == 403
    assert (await client.post(f"/v2/team/x/blobs/uploads/?mount={d}&from=public/a", headers=alice)).status == 200


async def test_without_a_policy_users_may_do_everything_and_anonymous_nothing(make: Any) -> None:
    client = await make(policy=False)
    bob = basic("bob", "builder")
    for method, path in [("GET", "/v2/secret/tags/list"), ("PUT", "/v2/secret/manifests/old"),
                         ("DELETE", "/v2/secret/manifests/x"), ("GET", "/v2/_catalog")]:
        assert (await client.request(method, path, headers=bob)).status in (200, 201), (method, path)
        assert (await client.request(method, path)).status == 401, (method, path)
    assert (await (await client.get("/v2/_catalog", headers=bob)).json())["repositories"] == [
        "public/a", "team/x", "team/y/z", "releases/v", "secret"]


async def test_catalog_lists_what_the_caller_may_pull(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/_catalog", headers=basic("bob", "builder"))
    assert (await resp.json())["repositories"] == ["public/a", "team/x", "team/y/z"]
    resp = await client.get("/v2/_catalog")
    assert (await resp.json())["repositories"] == ["public/a"]


async def test_overwrite(make: Any) -> None:
    client = await make()
    alice = basic("alice", "wonderland")
    assert (await client.put("/v2/team/x/manifests/v1", headers=alice)).status == 201
    resp = await client.put("/v2/releases/v/manifests/1.0", headers=alice)
    assert resp.status == 403
    body = await resp.json()
    assert body["errors"][0]["code"] == "DENIED" and "overwritten" in body["errors"][0]["message"]
    assert (await client.put("/v2/releases/v/manifests/2.0", headers=alice)).status == 201


async def test_overwrite_without_a_policy(make: Any) -> None:
    client = await make(policy=False)
    assert (await client.put("/v2/secret/manifests/old", headers=basic("bob", "builder"))).status == 201


async def test_invalid_names(make: Any) -> None:
    client = await make()
    alice = basic("alice", "wonderland")
    for path in ["/v2/Team/x/tags/list", "/v2/team//x/tags/list", "/v2/team/../x/tags/list"]:
        status, _, body = await raw_request(client, "GET", path, alice)
        assert status == 400 and b"NAME_INVALID" in body, path
        status, _, _ = await raw_request(client, "GET", path)
        assert status == 401, path


async def test_percent_encoded_slash_is_the_same_repository(make: Any) -> None:
    client = await make()
    bob = basic("bob", "builder")
    status, _, body = await raw_request(client, "GET", "/v2/team%2Fx/tags/list", bob)
    assert status == 200 and b'"path": "/v2/team/x/tags/list"' in body
    status, _, _ = await raw_request(client, "GET", "/v2/public%2Fa/../../secret/tags/list")
    assert status == 401


async def test_bearer_in_basic_mode_is_a_challenge(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/", headers={"Authorization": "Bearer abc"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("headers", [
    [("Authorization", "Basic " + base64.b64encode(b"alice:wonderland").decode())] * 2,
    [("Authorization", "Basic " + base64.b64encode(b"alice:wonderland").decode()), ("Authorization", "Bearer x")],
    [("Authorization", "Basic ***")],
    [("Authorization", "Basic " + base64.b64encode(b"alicewonderland").decode())],
])
async def test_malformed_or_repeated_authorization(make: Any, headers: list[tuple[str, str]]) -> None:
    client = await make()
    status, hdrs, body = await raw_request(client, "GET", "/v2/team/x/tags/list", headers)
    assert status == 400
    assert b"UNAUTHORIZED" in body and hdrs["www-authenticate"].startswith("Basic")


async def test_failed_logins_are_answered_429(make: Any) -> None:
    client = await make(extra="  loginlimit: {failures: 3, window: 1m}\n")
    for _ in range(3):
        assert (await client.get("/v2/", headers=basic("alice", "guess"))).status == 401
    resp = await client.get("/v2/", headers=basic("alice", "wonderland"))
    assert resp.status == 429
    assert await error_code(resp) == "TOOMANYREQUESTS"
    assert 0 < int(resp.headers["Retry-After"]) <= 60
    # Anonymous requests are not logins: still answered normally.
    assert (await client.get("/v2/public/a/tags/list")).status == 200


async def test_policy_changes_apply_without_restart(make: Any, files: Path) -> None:
    client = await make()
    bob = basic("bob", "builder")
    assert (await client.put("/v2/team/x/manifests/new", headers=bob)).status == 403
    (files / "policy.yml").write_text(POLICY.replace("users: {bob: [pull]}", "users: {bob: [pull, push]}"))
    for _ in range(40):  # the file is checked at most once a second
        await asyncio.sleep(0.1)
        if (await client.put("/v2/team/x/manifests/new", headers=bob)).status == 201:
            break
    else:
        pytest.fail("policy change not applied")


async def test_htpasswd_changes_apply_without_restart(make: Any, files: Path) -> None:
    client = await make(extra="  loginlimit: {failures: 0}\n")  # polling below fails logins
    write_htpasswd(files / "htpasswd", {"alice": "new-password"})
    for _ in range(40):
        await asyncio.sleep(0.1)
        if (await client.get("/v2/", headers=basic("alice", "new-password"))).status == 200:
            break
    else:
        pytest.fail("htpasswd change not applied")
    assert (await client.get("/v2/", headers=basic("alice", "wonderland"))).status == 401
    assert (await client.get("/v2/", headers=basic("bob", "builder"))).status == 401


async def test_no_password_in_any_log_line(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await make(extra="  loginlimit: {failures: 2, window: 1m}\n")
    with caplog.at_level(logging.DEBUG):
        await client.get("/v2/", headers=basic("alice", "wonderland"))
        await client.get("/v2/", headers=basic("alice", "S3cr3t-typo"))
        await client.get("/v2/", headers=basic("ghost", "An0ther-s3cret"))
        await client.get("/v2/", headers=basic("alice", "wonderland"))
    text = caplog.text
    assert "failed login" in text
    for secret in ("wonderland", "S3cr3t-typo", "An0ther-s3cret", base64.b64encode(b"alice:wonderland").decode()):
        assert secret not in text


async def test_startup_fails_on_a_missing_htpasswd(tmp_path: Path, aiohttp_client: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"^auth\.htpasswd\.path: cannot read .*missing: No such file"):
        await aiohttp_client(small_app(f"auth: {{htpasswd: {{path: {tmp_path / 'missing'}}}}}\n"))


async def test_startup_fails_on_a_bad_policy(files: Path, aiohttp_client: Callable[..., Any]) -> None:
    (files / "policy.yml").write_text("rules: [{repository: x, anonymous: [fly]}]")
    with pytest.raises(ValueError, match="fly"):
        await aiohttp_client(small_app(f"auth: {{htpasswd: {{path: {files / 'htpasswd'}}}, "
                                       f"policy: {{path: {files / 'policy.yml'}}}}}\n"))


async def test_empty_basic_credentials_are_anonymous(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    # containers/image (skopeo, podman) sends "Basic Og==" when it has no credentials.
    client = await make(extra="  loginlimit: {failures: 1, window: 1m}\n")
    with caplog.at_level(logging.WARNING, "berth.auth"):
        for _ in range(3):
            resp = await client.get("/v2/public/a/tags/list", headers=basic("", ""))
            assert resp.status == 200 and (await resp.json())["user"] is None
        assert (await client.get("/v2/team/x/tags/list", headers=basic("", ""))).status == 401
    assert "failed login" not in caplog.text
    assert (await client.get("/v2/", headers=basic("", "something"))).status == 401
