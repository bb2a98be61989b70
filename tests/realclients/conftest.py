"""Fixtures for the real-client suite: images, registries, and the tools that talk to them.

Everything expensive is session-scoped: the images are built once (and cached on disk), each
(registry, backend) pair runs once per session, one dockerd serves every docker test.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.images import ImageSet, cached_standard_images  # noqa: E402
from tests.realclients.checks import RegistryHTTP, http_for  # noqa: E402
from tests.realclients.clients import ContainersTool, Skopeo  # noqa: E402
from tests.s3server import seaweedfs_fixture  # noqa: E402
from tests.servers import (  # noqa: E402
    Dockerd,
    Server,
    server_matrix,
    start_dockerd,
    start_registry,
    storage_config,
)


def registry_params() -> list[object]:
    """One pytest param per (server kind, storage backend); reference runs carry ``interop``."""
    params: list[object] = []
    for kind, backend in server_matrix():
        marks = [pytest.mark.interop] if kind == "reference" else []
        if backend == "s3":
            marks.append(pytest.mark.s3)
        params.append(pytest.param((kind, backend), id=f"{kind}-{backend}", marks=marks))
    return params


s3_server = seaweedfs_fixture()
"""One SeaweedFS for the session, started only when an s3 parameter runs."""


@pytest.fixture(scope="session")
def images() -> ImageSet:
    """The standard test images (one-layer, three-layer with a ~100 MB layer, amd64+arm64 index)."""
    return cached_standard_images()


@pytest.fixture(scope="session", params=registry_params())
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running registry of the parametrized kind and backend, shared by the whole session."""
    kind, backend = request.param
    workdir = tmp_path_factory.mktemp(f"{kind}-{backend}")
    s3 = request.getfixturevalue("s3_server") if backend == "s3" else None
    server = start_registry(kind, storage_config(backend, workdir, s3=s3), workdir / "server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(registry: Server) -> RegistryHTTP:
    """An independent HTTP client for checking what ``registry`` holds."""
    return http_for(registry)


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test (and its parameters)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"rc/{name[:120]}"


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    """skopeo with a private auth file."""
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> ContainersTool:
    """podman with private vfs storage."""
    return ContainersTool("podman", tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> ContainersTool:
    """buildah with private vfs storage."""
    return ContainersTool("buildah", tmp_path_factory.mktemp("buildah"))


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """One private dockerd for the session (vfs, no iptables, socket under /tmp)."""
    daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        yield daemon
    finally:
        daemon.stop()
