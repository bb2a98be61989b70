"""oras (PyPI's Python SDK; it has no CLI) against a real registry: chunked and monolithic artifact pushes."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.images import seeded_chunks
from tests.realclients.checks import RegistryHTTP, file_digest, verify_image
from tests.servers import Server
from tests.tools import require_oras

pytestmark = [pytest.mark.realclient]


def _oras_client(registry: Server, repo: str) -> Any:
    """An oras client for ``registry`` with the credentials it needs for pushing to ``repo``.

    htpasswd: oras's Basic backend (its token backend would take the Basic realm for a URL).
    token: a pull+push token fetched up front from the challenge's realm, because oras-py keeps
    its first token (a pull-only one) and only refreshes after a 403, while registries answer
    a token without the needed scope with 401 insufficient_scope (as the token spec says).
    Not ``client.login()`` in either case: that writes the password into ~/.docker/config.json.
    """
    oras_client = require_oras()
    auth = registry.config.get("auth", {})
    backend = "basic" if "htpasswd" in auth else "token"
    client = oras_client.OrasClient(hostname=registry.addr, insecure=True, auth_backend=backend)
    if registry.credentials:
        client.auth.set_basic_auth(*registry.credentials)
    if "token" in auth:
        challenge = RegistryHTTP(registry.url).request("GET", "/v2/").headers["www-authenticate"]
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode({"service": params["service"], "scope": f"repository:{repo}:pull,push"})
        assert registry.credentials is not None
        token_http = RegistryHTTP(params["realm"], *registry.credentials)
        answer = token_http.request("GET", f"{params['realm']}?{query}", {"Authorization": _basic(*registry.credentials)})
        assert answer.status == 200, answer.body
        client.auth.set_token_auth(answer.json()["token"])
    return client


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _write_seeded(path: Path, size: int, seed: int) -> str:
    sha = hashlib.sha256()
    with open(path, "wb") as handle:
        for chunk in seeded_chunks(seed, size):
            sha.update(chunk)
            handle.write(chunk)
    return "sha256:" + sha.hexdigest()


@pytest.mark.parametrize(
    ("chunked", "size", "chunk_size"),
    [(True, 5 * (1 << 20) + 12345, 1 << 20), (True, 3000, 1024), (False, 2 * (1 << 20), 0)],
    ids=["chunked-1MiB", "chunked-small", "monolithic"],
)
def test_push_and_pull_artifact(
    registry: Server,
    http: RegistryHTTP,
    repo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunked: bool,
    size: int,
    chunk_size: int,
) -> None:
    monkeypatch.chdir(tmp_path)  # oras only pushes files below the working directory
    artifact = tmp_path / "artifact.bin"
    digest = _write_seeded(artifact, size, seed=size)
    client = _oras_client(registry, repo)
    target = f"{registry.addr}/{repo}:art"
    kwargs: dict[str, Any] = {"files": [artifact.name], "do_chunked": chunked}
    if chunked:
        kwargs["chunk_size"] = chunk_size
    empty_config = tmp_path / "docker-config.json"
    empty_config.write_text('{"auths": {}}')
    response = client.push(target, config_path=str(empty_config), **kwargs)
    assert response.status_code == 201, response.text

    verified = verify_image(http, repo, "art", expect_digest=response.headers["Docker-Content-Digest"])
    layer = verified.document["layers"][0]
    assert layer["digest"] == digest and layer["size"] == size
    assert layer["annotations"]["org.opencontainers.image.title"] == artifact.name

    outdir = tmp_path / "pulled"
    pulled = client.pull(target, config_path=str(empty_config), outdir=str(outdir))
    assert [os.path.basename(p) for p in pulled] == [artifact.name]
    assert file_digest(Path(pulled[0])) == digest
