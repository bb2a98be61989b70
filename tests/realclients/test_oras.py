"""oras (PyPI's Python SDK; it has no CLI) against a real registry: chunked and monolithic artifact pushes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.images import seeded_chunks
from tests.realclients.checks import RegistryHTTP, file_digest, verify_image
from tests.servers import Server
from tests.tools import require_oras

pytestmark = [pytest.mark.realclient]


def _oras_client(registry: Server) -> Any:
    oras_client = require_oras()
    client = oras_client.OrasClient(hostname=registry.addr, insecure=True)
    creds = getattr(registry, "credentials", None)
    if creds:
        client.login(username=creds[0], password=creds[1], hostname=registry.addr, insecure=True)
    return client


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
    client = _oras_client(registry)
    target = f"{registry.addr}/{repo}:art"
    kwargs: dict[str, Any] = {"files": [artifact.name], "do_chunked": chunked}
    if chunked:
        kwargs["chunk_size"] = chunk_size
    response = client.push(target, **kwargs)
    assert response.status_code == 201, response.text

    verified = verify_image(http, repo, "art", expect_digest=response.headers["Docker-Content-Digest"])
    layer = verified.document["layers"][0]
    assert layer["digest"] == digest and layer["size"] == size
    assert layer["annotations"]["org.opencontainers.image.title"] == artifact.name

    outdir = tmp_path / "pulled"
    pulled = client.pull(target, outdir=str(outdir))
    assert [os.path.basename(p) for p in pulled] == [artifact.name]
    assert file_digest(Path(pulled[0])) == digest
