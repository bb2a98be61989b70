"""Real clients log in with access tokens: docker, podman, skopeo and berth, in htpasswd and token-service
mode; a read-only token cannot push; a token revoked with `berth token revoke` stops working on a second
replica (another `berth serve` on the same storage) within a second."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.images import ImageSet
from tests.realclients.checks import RegistryHTTP
from tests.realclients.clients import ContainersTool, Skopeo, ToolFailed
from tests.realclients.conftest import dockerd_daemon, images, podman_tool  # noqa: F401  (session fixtures)
from tests.servers import (
    AUTH_USER,
    REPO_ROOT,
    Dockerd,
    Server,
    auth_config,
    deep_merge,
    start_berth,
    storage_config,
)

pytestmark = [pytest.mark.realclient, pytest.mark.slow]


def berth_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``python -m registry ARGS`` from this worktree; its stdout (raises with the output on failure)."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **(env or {}))
    result = subprocess.run([sys.executable, "-m", "registry", *args], capture_output=True, text=True, timeout=120,
                            env=full_env, input=stdin, check=False)
    assert result.returncode == 0, f"berth {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result.stdout


def create_token(server: Server, *scopes: str, name: str = "ci") -> str:
    """``berth token create`` on the server's config; the secret it prints."""
    argv = ["token", "create", "--config", str(server.config_path), "--user", AUTH_USER, "--name", name]
    for scope in scopes:
        argv += ["--scope", scope]
    secret = berth_cli(*argv, "--expires", "1d").strip()
    assert secret.startswith("berth_pat_")
    return secret


@pytest.fixture(scope="module", params=["htpasswd", "token"])
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two Berth replicas on one filesystem storage, in the parametrized auth mode."""
    workdir = tmp_path_factory.mktemp(f"pat-{request.param}")
    overlay, _ = auth_config(request.param, "berth", workdir / "auth")
    config = deep_merge(storage_config("filesystem", workdir), overlay)
    config = deep_merge(config, {"storage": {"delete": {"enabled": True}}})
    first = start_berth(config, workdir / "one")
    try:
        second = start_berth(config, workdir / "two")
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        second.stop()
        first.stop()


def test_clients_log_in_with_tokens_and_scopes_hold(servers: tuple[Server, Server], images: ImageSet,  # noqa: F811
                                                    dockerd_daemon: Dockerd, podman_tool: ContainersTool,  # noqa: F811
                                                    tmp_path: Path) -> None:
    server, _ = servers
    rw = create_token(server, "pat/**:pull,push", name="ci-deploy")
    ro = create_token(server, "pat/**:pull", name="readonly")
    writer = Skopeo(tmp_path / "skopeo-rw")
    writer.login(server.addr, AUTH_USER, rw)
    writer.copy(images.one_layer.oci_ref, f"docker://{server.addr}/pat/app:v1")
    reader = Skopeo(tmp_path / "skopeo-ro")
    reader.login(server.addr, AUTH_USER, ro)
    assert reader.list_tags(f"docker://{server.addr}/pat/app") == ["v1"]
    with pytest.raises(ToolFailed, match=r"(?i)denied|unauthorized|authentication required|insufficient"):
        reader.copy(images.one_layer.oci_ref, f"docker://{server.addr}/pat/app:v2")
    # Outside the scopes nothing works, not even a pull.
    with pytest.raises(ToolFailed):
        writer.copy(images.one_layer.oci_ref, f"docker://{server.addr}/other/app:v1")

    podman = podman_tool
    podman.login(server.addr, AUTH_USER, ro)
    podman.run("pull", "--tls-verify=false", f"{server.addr}/pat/app:v1")

    dockerd_daemon.logged_in.discard(server.addr)
    dockerd_daemon.login(server.addr, AUTH_USER, ro)
    dockerd_daemon.docker("pull", f"{server.addr}/pat/app:v1")
    dockerd_daemon.logged_in.discard(server.addr)  # other tests log in with their own credentials

    env = {"DOCKER_CONFIG": str(tmp_path / "berth-client")}
    assert "Login Succeeded" in berth_cli("login", "-u", AUTH_USER, "--password-stdin", server.addr,
                                          stdin=ro + "\n", env=env)
    assert "v1" in berth_cli("tags", f"{server.addr}/pat/app", env=env)
    listing = berth_cli("token", "list", "--config", str(server.config_path))
    assert "ci-deploy" in listing and "readonly" in listing and rw not in listing and ro not in listing


def test_revoked_token_stops_on_second_replica_at_once(servers: tuple[Server, Server], images: ImageSet,  # noqa: F811
                                                       tmp_path: Path) -> None:
    first, second = servers
    secret = create_token(first, "pat/**:pull", name="revoke-me")
    skopeo = Skopeo(tmp_path / "skopeo")
    skopeo.login(second.addr, AUTH_USER, secret)
    assert _status(second, secret) in (200, 404)
    token_id = secret.split("_")[2]
    berth_cli("token", "revoke", token_id, "--config", str(first.config_path))
    revoked_at = time.monotonic()
    while True:
        status = _status(second, secret)
        if status == 401 or time.monotonic() - revoked_at > 1.5:
            break
        time.sleep(0.05)
    assert status == 401, "the second replica still accepts the revoked token"
    assert time.monotonic() - revoked_at <= 1.5
    fresh = Skopeo(tmp_path / "skopeo-after")
    assert fresh.login(second.addr, AUTH_USER, secret, check=False).returncode != 0


def _status(server: Server, secret: str) -> int:
    """The status of a fresh authenticated probe (Basic in htpasswd mode; through the token service otherwise)."""
    try:
        resp: Any = RegistryHTTP(server.url, AUTH_USER, secret).request("GET", "/v2/pat/app/tags/list")
    except urllib.error.HTTPError as err:  # the token service refused the credentials
        return int(err.code)
    return int(resp.status)
