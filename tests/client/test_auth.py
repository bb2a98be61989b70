"""login/logout and authenticated push/pull against real registries in their auth modes.

Basic: the reference registry and Berth with ``auth.htpasswd``. Bearer: Berth's built-in token
service (``auth.token.signingkey``), whose OAuth2 endpoint hands out refresh tokens, which
``berth login`` stores as docker's ``identitytoken`` instead of the password.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Iterator

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.client.conftest import Images, berth, load_and_tag, ok
from tests.servers import Server, berth_available, filesystem_config, start_registry

USER, PASSWORD = "alice", "wonderland"


def _modes() -> list[object]:
    modes: list[object] = [pytest.param(("reference", "htpasswd"), id="reference-basic", marks=pytest.mark.interop)]
    if berth_available():
        modes += [pytest.param(("berth", "htpasswd"), id="berth-basic"), pytest.param(("berth", "token"), id="berth-token")]
    return modes


@pytest.fixture(scope="module", params=_modes())
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A registry that requires ``alice``'s credentials."""
    kind, mode = request.param
    workdir = tmp_path_factory.mktemp(f"auth-{kind}-{mode}")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_bytes(f"{USER}:".encode() + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)) + b"\n")
    if mode == "htpasswd":
        auth = {"htpasswd": {"realm": "berth-test", "path": str(htpasswd)}}
    else:
        key = workdir / "signing.pem"
        key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        auth = {"token": {"signingkey": str(key), "htpasswd": str(htpasswd)}}
    server = start_registry(kind, filesystem_config(workdir / "data", auth=auth), workdir / "server")
    server.kind = f"{kind}-{mode}"
    try:
        yield server
    finally:
        server.stop()


def _config(berth_env: Path) -> dict[str, object]:
    return json.loads((berth_env.parent / "docker-config" / "config.json").read_text())


def test_login_push_pull_logout(secured: Server, repo: str, images: Images, berth_env: Path) -> None:
    ref = f"{secured.addr}/{repo}:v1"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]

    anonymous = berth("push", ref)
    assert anonymous.code == 3
    assert f"{secured.addr} requires authentication" in anonymous.err and f"berth login {secured.addr}" in anonymous.err

    wrong = berth("login", secured.addr, "-u", USER, "--password-stdin", stdin=b"nope\n")
    assert wrong.code == 3 and "incorrect username or password" in wrong.err and "Traceback" not in wrong.err

    assert ok("login", secured.addr, "-u", USER, "--password-stdin", stdin=f"{PASSWORD}\n".encode()).out.strip() == "Login Succeeded"
    entry = _config(berth_env)["auths"][secured.addr]  # type: ignore[index]
    if secured.kind.endswith("token"):
        assert entry["identitytoken"]  # a refresh token; the password is not stored
        assert PASSWORD not in json.dumps(entry)
    else:
        assert base64.b64decode(entry["auth"]) == f"{USER}:{PASSWORD}".encode()

    digest = ok("push", ref).out.split("digest: ")[1].split()[0]
    ok("rmi", ref)
    assert f"Digest: {digest}" in ok("pull", ref).out
    assert ok("tags", f"{secured.addr}/{repo}").out.split() == ["v1"]
    ok("copy", ref, f"{secured.addr}/{repo}-copy:v1")
    assert json.loads(ok("inspect", f"{secured.addr}/{repo}-copy:v1").out)["Digest"] == digest

    assert "Removing login credentials" in ok("logout", secured.addr).out
    assert secured.addr not in _config(berth_env)["auths"]  # type: ignore[operator]
    after = berth("inspect", ref)
    assert after.code == 3 and "berth login" in after.err


def test_cross_registry_copy_with_credentials_on_one_side(secured: Server, registry: Server, repo: str, images: Images) -> None:
    ref = f"{registry.addr}/{repo}:open"
    load_and_tag(images.other.docker_archive, ref)  # type: ignore[arg-type]
    ok("push", ref)
    ok("login", secured.addr, "-u", USER, "-p", PASSWORD)
    target = f"{secured.addr}/{repo}:copied"
    digest = ok("copy", ref, target).out.split("digest: ")[1].split()[0]
    assert json.loads(ok("inspect", target).out)["Digest"] == digest
