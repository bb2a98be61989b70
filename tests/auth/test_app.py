"""Auth on the full registry app (``registry.app.create_app``): real handlers, real storage."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import pytest

from registry.app import create_app
from registry.appkeys import EVENTS
from registry.config import parse_config
from registry.events import Event
from storage_backends import create_driver
from tests.auth.conftest import basic, bearer, write_htpasswd

POLICY = """
groups: {devs: [alice], ci: [robot]}
admins: [root]
rules:
  - repository: "public/**"
    anonymous: [pull]
  - repository: "team/**"
    groups: {devs: ["*"]}
  - repository: "releases/**"
    groups: {ci: [pull, push]}
    authenticated: [pull]
    immutable: true
"""
SERVICE = "berth-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Recorder:
    """An event sink that keeps what it is given (to see the actor)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "robot": "beep", "root": "toor"})
    (tmp_path / "policy.yml").write_text(POLICY)
    return tmp_path


@pytest.fixture
async def driver() -> AsyncIterator[Any]:
    drv = create_driver("inmemory")
    yield drv
    await drv.close()


@pytest.fixture
def make(files: Path, driver: Any, aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    async def make(mode: str = "token", policy: bool = True) -> Any:
        if mode == "token":
            auth = (f"auth:\n  token:\n    signingkey: {files / 'key.pem'}\n"
                    f"    htpasswd: {files / 'htpasswd'}\n")
        else:
            auth = f"auth:\n  htpasswd:\n    realm: berth\n    path: {files / 'htpasswd'}\n"
        if policy:
            auth += f"  policy:\n    path: {files / 'policy.yml'}\n"
        config = parse_config("version: 0.1\nhttp: {secret: test}\nstorage: {delete: {enabled: true}}\n" + auth,
                              environ={})
        app = create_app(config, driver=driver)
        recorder = Recorder()
        app[EVENTS] = recorder
        client = await aiohttp_client(app)
        client.recorder = recorder
        return client

    return make


class Session:
    """A client that does the token dance for the scopes it is told to use."""

    def __init__(self, client: Any, user: tuple[str, str] | None, mode: str = "token") -> None:
        self.client, self.user, self.mode = client, user, mode

    async def headers(self, *scopes: str) -> dict[str, str]:
        if self.mode == "basic":
            return basic(*self.user) if self.user else {}
        params = [("service", SERVICE)] + [("scope", s) for s in scopes]
        resp = await self.client.get("/auth/token", params=params, headers=basic(*self.user) if self.user else None)
        assert resp.status == 200, await resp.text()
        return bearer((await resp.json())["token"])

    async def push_blob(self, repo: str, data: bytes) -> Any:
        h = await self.headers(f"repository:{repo}:pull,push")
        return await self.client.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}", data=data, headers=h)

    async def push_image(self, repo: str, tag: str, seed: bytes = b"") -> tuple[Any, str]:
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed.hex()}).encode()
        layer = os.urandom(500) + seed
        for blob in (config, layer):
            resp = await self.push_blob(repo, blob)
            if resp.status != 201:
                return resp, ""
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                        "size": len(layer)}]}).encode()
        h = await self.headers(f"repository:{repo}:pull,push")
        resp = await self.client.put(f"/v2/{repo}/manifests/{tag}", data=manifest,
                                     headers={**h, "Content-Type": OCI_MANIFEST})
        return resp, sha256(manifest)

    async def put_manifest(self, repo: str, tag: str, digest: str) -> Any:
        h = await self.headers(f"repository:{repo}:pull")
        resp = await self.client.get(f"/v2/{repo}/manifests/{digest}", headers={**h, "Accept": OCI_MANIFEST})
        assert resp.status == 200
        body = await resp.read()
        h = await self.headers(f"repository:{repo}:pull,push")
        return await self.client.put(f"/v2/{repo}/manifests/{tag}", data=body,
                                     headers={**h, "Content-Type": OCI_MANIFEST})

    async def get(self, path: str, *scopes: str) -> Any:
        return await self.client.get(path, headers=await self.headers(*scopes))


@pytest.mark.parametrize("mode", ["token", "basic"])
async def test_push_pull_and_actor(make: Any, mode: str) -> None:
    client = await make(mode)
    alice = Session(client, ("alice", "wonderland"), mode)
    resp, digest = await alice.push_image("team/app", "v1")
    assert resp.status == 201, await resp.text()
    resp = await alice.get("/v2/team/app/manifests/v1", "repository:team/app:pull")
    assert resp.status == 200 and resp.headers["Docker-Content-Digest"] == digest
    actors = {e.actor for e in client.recorder.events}
    assert actors == {"alice"}


@pytest.mark.parametrize("mode", ["token", "basic"])
async def test_others_are_kept_out(make: Any, mode: str) -> None:
    client = await make(mode)
    resp, _ = await Session(client, ("alice", "wonderland"), mode).push_image("team/app", "v1")
    assert resp.status == 201
    robot = Session(client, ("robot", "beep"), mode)
    resp = await robot.get("/v2/team/app/manifests/v1", "repository:team/app:pull")
    assert resp.status == (401 if mode == "token" else 403)
    resp, _ = await robot.push_image("team/app", "v2")
    assert resp.status == (401 if mode == "token" else 403)
    anon = Session(client, None, mode)
    assert (await anon.get("/v2/team/app/tags/list", "repository:team/app:pull")).status == 401


async def test_anonymous_pull_of_public(make: Any) -> None:
    client = await make()
    resp, _ = await Session(client, ("root", "toor")).push_image("public/base", "latest")
    assert resp.status == 201
    anon = Session(client, None)
    resp = await anon.get("/v2/public/base/manifests/latest", "repository:public/base:pull")
    assert resp.status == 200
    resp, _ = await anon.push_image("public/base", "evil")
    assert resp.status == 401


async def test_immutable_tags(make: Any) -> None:
    client = await make()
    robot = Session(client, ("robot", "beep"))
    resp, first = await robot.push_image("releases/app", "1.0", b"one")
    assert resp.status == 201
    # Re-pushing the same manifest under the same tag is not an overwrite.
    assert (await robot.put_manifest("releases/app", "1.0", first)).status == 201
    resp, _ = await robot.push_image("releases/app", "1.0", b"two")
    assert resp.status == 403
    assert (await resp.json())["errors"][0]["code"] == "DENIED"
    resp, _ = await robot.push_image("releases/app", "1.1", b"two")
    assert resp.status == 201
    # Admins are bound by immutability too.
    resp, _ = await Session(client, ("root", "toor")).push_image("releases/app", "1.0", b"three")
    assert resp.status == 403
    resp = await robot.get("/v2/releases/app/manifests/1.0", "repository:releases/app:pull")
    assert resp.headers["Docker-Content-Digest"] == first


async def test_tags_move_freely_without_a_policy(make: Any) -> None:
    client = await make(policy=False)
    robot = Session(client, ("robot", "beep"))
    assert (await robot.push_image("any/app", "1.0", b"one"))[0].status == 201
    assert (await robot.push_image("any/app", "1.0", b"two"))[0].status == 201


async def test_catalog_is_filtered(make: Any) -> None:
    client = await make()
    root = Session(client, ("root", "toor"))
    for repo in ("public/base", "team/app", "releases/app", "hidden/thing"):
        assert (await root.push_image(repo, "v1"))[0].status == 201
    resp = await root.get("/v2/_catalog", "registry:catalog:*")
    assert (await resp.json())["repositories"] == ["hidden/thing", "public/base", "releases/app", "team/app"]
    resp = await Session(client, ("robot", "beep")).get("/v2/_catalog", "registry:catalog:*")
    assert (await resp.json())["repositories"] == ["public/base", "releases/app"]
    resp = await Session(client, None).get("/v2/_catalog", "registry:catalog:*")
    assert (await resp.json())["repositories"] == ["public/base"]
    resp = await Session(client, ("alice", "wonderland")).get("/v2/_catalog?n=1", "registry:catalog:*")
    assert (await resp.json())["repositories"] == ["public/base"]


async def test_cross_repository_mount_needs_pull_on_the_source(make: Any) -> None:
    client = await make()
    root, alice = Session(client, ("root", "toor")), Session(client, ("alice", "wonderland"))
    secret = os.urandom(300)
    assert (await root.push_blob("hidden/thing", secret)).status == 201
    url = f"/v2/team/app/blobs/uploads/?mount={sha256(secret)}&from=hidden/thing"
    h = await alice.headers("repository:team/app:pull,push", "repository:hidden/thing:pull")
    resp = await client.post(url, headers=h)
    assert resp.status == 401
    assert "repository:hidden/thing:pull" in resp.headers["WWW-Authenticate"]
    resp = await client.post(url, headers=await root.headers("repository:team/app:push",
                                                             "repository:hidden/thing:pull"))
    assert resp.status == 201


async def test_health_is_free(make: Any) -> None:
    client = await make()
    resp = await client.get("/healthz")
    assert resp.status != 401


async def test_docker_login_flow_on_the_full_app(make: Any) -> None:
    client = await make()
    resp = await client.get("/v2/")
    assert resp.status == 401
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="http://127.0.0.1:')
    resp = await client.get("/auth/token", params={"account": "alice", "client_id": "docker",
                                                   "offline_token": "true", "service": SERVICE},
                            headers=basic("alice", "wonderland"))
    body = await resp.json()
    assert (await client.get("/v2/", headers=bearer(body["token"]))).status == 200
    resp = await client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": "docker",
                                                  "refresh_token": body["refresh_token"], "service": SERVICE,
                                                  "scope": "repository:team/app:pull,push"})
    assert resp.status == 200 and (await resp.json())["scope"] == "repository:team/app:pull,push"


async def test_head_challenge_has_no_body(make: Any) -> None:
    client = await make()
    resp = await client.head("/v2/team/app/manifests/latest")
    assert resp.status == 401 and "scope=\"repository:team/app:pull\"" in resp.headers["WWW-Authenticate"]
    assert await resp.read() == b""


async def test_automatic_mount_never_reveals_a_blob_the_caller_may_not_pull(make: Any) -> None:
    """A digest alone must not copy a blob out of a repository the caller may not pull."""
    client = await make("token")
    root = Session(client, ("root", "toor"))
    secret = os.urandom(256)
    assert (await root.push_blob("private/secret", secret)).status == 201
    alice = Session(client, ("alice", "wonderland"))
    h = await alice.headers("repository:team/steal:pull,push")
    resp = await client.post(f"/v2/team/steal/blobs/uploads/?mount={sha256(secret)}", headers=h)
    assert resp.status == 202  # a normal upload, not a mount
    resp = await client.head(f"/v2/team/steal/blobs/{sha256(secret)}", headers=h)
    assert resp.status == 404
    assert not [e for e in client.recorder.events if e.action == "mount"]


@pytest.mark.parametrize("mode", ["token", "basic"])
async def test_automatic_mount_from_a_repository_the_caller_may_pull(make: Any, mode: str) -> None:
    client = await make(mode)
    alice = Session(client, ("alice", "wonderland"), mode)
    shared = os.urandom(256)
    # Also linked from a repository alice may not pull: the mount names the one she may.
    assert (await Session(client, ("root", "toor"), mode).push_blob("private/copy", shared)).status == 201
    assert (await alice.push_blob("team/base", shared)).status == 201
    h = await alice.headers("repository:team/app:pull,push")
    resp = await client.post(f"/v2/team/app/blobs/uploads/?mount={sha256(shared)}", headers=h)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"].endswith(f"/v2/team/app/blobs/{sha256(shared)}")
    assert (await client.get(f"/v2/team/app/blobs/{sha256(shared)}", headers=h)).status == 200
    mounts = [e for e in client.recorder.events if e.action == "mount"]
    assert [(m.repository, m.from_repository) for m in mounts] == [("team/app", "team/base")]
    # The target already linking the blob mounts too (the official suite's check).
    resp = await client.post(f"/v2/team/app/blobs/uploads/?mount={sha256(shared)}", headers=h)
    assert resp.status == 201


async def test_automatic_mount_without_a_policy_file_mounts_any_stored_blob(make: Any) -> None:
    client = await make("token", policy=False)
    data = os.urandom(256)
    assert (await Session(client, ("root", "toor")).push_blob("elsewhere/src", data)).status == 201
    alice = Session(client, ("alice", "wonderland"))
    h = await alice.headers("repository:mine/app:pull,push")
    resp = await client.post(f"/v2/mine/app/blobs/uploads/?mount={sha256(data)}", headers=h)
    assert resp.status == 201
    missing = sha256(b"never stored")
    resp = await client.post(f"/v2/mine/app/blobs/uploads/?mount={missing}", headers=h)
    assert resp.status == 202


async def test_automatic_mount_checks_a_bounded_number_of_repositories(make: Any, driver: Any) -> None:
    """Many pullable repositories, the blob linked from none near the target: bounded link checks,
    then a normal upload; a repository list taken once per snapshot, not per request."""
    from registry import layout
    from registry.digest import Digest
    from registry.services.blobs import AUTOMOUNT_CANDIDATES

    client = await make("token")
    root = Session(client, ("root", "toor"))
    data = os.urandom(256)
    assert (await root.push_blob("private/only", data)).status == 201
    other = Digest.parse(sha256(b"other"))
    for i in range(3 * AUTOMOUNT_CANDIDATES):
        await driver.put_content(layout.layer_link(f"team/r{i:03d}", other), str(other).encode())
    link_checks: list[str] = []
    listings: list[str] = []
    exists, find_dirs = driver.exists, driver.find_dirs

    async def counting_exists(path: str) -> bool:
        if path.endswith("/link") and "/_layers/" in path:
            link_checks.append(path)
        return await exists(path)

    async def counting_find_dirs(path: str, *args: Any, **kwargs: Any) -> Any:
        listings.append(path)
        return await find_dirs(path, *args, **kwargs)

    driver.exists, driver.find_dirs = counting_exists, counting_find_dirs
    alice = Session(client, ("alice", "wonderland"))
    h = await alice.headers("repository:team/r050x:pull,push")
    for _ in range(3):
        resp = await client.post(f"/v2/team/r050x/blobs/uploads/?mount={sha256(data)}", headers=h)
        assert resp.status == 202
    assert 0 < len(link_checks) <= 3 * AUTOMOUNT_CANDIDATES
    assert len(listings) == 1
    assert not any("/private/" in p for p in link_checks)  # never asked about a repository she may not pull


@pytest.mark.parametrize("path", ["/admin/webhooks", "/admin/du"])
async def test_admin_endpoints_need_an_admin(make: Any, path: str) -> None:
    client = await make("basic")
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers=basic("alice", "wonderland"))).status == 403
    assert (await client.get(path, headers=basic("root", "toor"))).status == 200
