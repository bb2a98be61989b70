"""Authentication as real clients meet it: challenges, refused anonymous and wrong-password access.

Runs only against registries that require credentials (htpasswd on both registries, Berth's own
token service); every other real-client test also runs against them, logged in.
"""

from __future__ import annotations

import base64
import re

import pytest

from tests.images import ImageSet
from tests.realclients.checks import RegistryHTTP, verify_image
from tests.realclients.clients import ContainersTool, Skopeo, ToolFailed
from tests.servers import Dockerd, Server

pytestmark = [pytest.mark.realclient, pytest.mark.auth_only]


def test_anonymous_requests_are_challenged(registry: Server) -> None:
    anonymous = RegistryHTTP(registry.url)
    resp = anonymous.request("GET", "/v2/")
    assert resp.status == 401
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.split(" ", 1)[0] in ("Basic", "Bearer"), challenge
    assert "UNAUTHORIZED" in {e["code"] for e in resp.json()["errors"]}
    assert anonymous.request("GET", "/v2/some/repo/tags/list").status == 401


def test_anonymous_push_is_refused(registry: Server, skopeo: Skopeo, images: ImageSet, repo: str) -> None:
    with pytest.raises(ToolFailed, match=r"(?i)unauthorized|authentication required|denied"):
        skopeo.copy(images.one_layer.oci_ref, f"docker://{registry.addr}/{repo}:anon", "--dest-no-creds")
    assert registry.credentials is not None
    skopeo.copy(images.one_layer.oci_ref, f"docker://{registry.addr}/{repo}:authed")
    http = RegistryHTTP(registry.url, *registry.credentials)
    verify_image(http, repo, "authed", expect_digest=images.one_layer.manifest_digest)


def test_wrong_password_is_refused_by_every_client(
    registry: Server, skopeo: Skopeo, podman: ContainersTool, dockerd: Dockerd
) -> None:
    assert registry.credentials is not None
    user = registry.credentials[0]
    assert skopeo.run("login", "--tls-verify=false", "-u", user, "--password-stdin", registry.addr,
                      "--authfile", str(skopeo.workdir / "wrong.json"), stdin="wrong", check=False).returncode != 0
    assert podman.run("login", "--tls-verify=false", "-u", user, "--password-stdin", registry.addr,
                      "--authfile", str(podman.workdir / "wrong.json"), stdin="wrong", check=False).returncode != 0
    wrong = dockerd.docker("login", "-u", user, "--password-stdin", registry.addr, stdin="wrong", check=False)
    assert wrong.returncode != 0, wrong.stdout
    # The failed docker login must not have replaced the working credentials.
    dockerd.logged_in.discard(registry.addr)
    dockerd.login(registry.addr, *registry.credentials)


def test_wrong_password_over_http(registry: Server) -> None:
    assert registry.credentials is not None
    user = registry.credentials[0]
    wrong = "Basic " + base64.b64encode(f"{user}:not-the-password".encode()).decode()
    anonymous = RegistryHTTP(registry.url)
    if "htpasswd" in registry.config["auth"]:
        resp = anonymous.request("GET", "/v2/", {"Authorization": wrong})
        assert resp.status == 401
        return
    challenge = anonymous.request("GET", "/v2/").headers["www-authenticate"]
    realm = dict(re.findall(r'(\w+)="([^"]*)"', challenge))["realm"]
    resp = anonymous.request("GET", realm, {"Authorization": wrong})
    assert resp.status == 401
    right = "Basic " + base64.b64encode(f"{user}:{registry.credentials[1]}".encode()).decode()
    assert anonymous.request("GET", realm, {"Authorization": right}).status == 200
