"""Fixtures for the real-client suite: images, registries, and the tools that talk to them.

Everything expensive is session-scoped: the images are built once (and cached on disk), each
(registry, backend) pair runs once per session, one dockerd serves every docker test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import ImageSet, cached_standard_images
from tests.realclients.checks import RegistryHTTP, http_for
from tests.realclients.clients import ContainersTool, Skopeo
from tests.servers import (
    Dockerd,
    Server,
    auth_config,
    auth_matrix,
    deep_merge,
    start_dockerd,
    start_registry,
    storage_config,
)

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    """Register this suite's marker."""
    config.addinivalue_line("markers", "auth_only: runs only against registries that require credentials")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (visibly, in the summary) the combinations this suite does not run.

    ``auth_only`` tests run only where the registry requires credentials; with credentials,
    the client tests use the small images (authentication does not depend on layer size,
    and the ~100 MB image already runs through every client without auth).
    """
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("registry") if callspec is not None else None
        if HERE not in Path(str(item.path)).parents or not (isinstance(param, tuple) and len(param) == 3):
            keep.append(item)
            continue
        auth = param[2]
        if item.get_closest_marker("auth_only") is not None and auth == "none" or auth != "none" and callspec is not None and callspec.params.get("image_name") == "three-layer":
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def registry_params() -> list[object]:
    """One pytest param per (server kind, storage backend, auth mode); reference runs carry ``interop``."""
    params: list[object] = []
    for kind, backend, auth in auth_matrix():
        marks = [pytest.mark.interop] if kind == "reference" else []
        if backend == "s3":
            marks.append(pytest.mark.s3)
        label = f"{kind}-{backend}" + ("" if auth == "none" else f"-{auth}")
        params.append(pytest.param((kind, backend, auth), id=label, marks=marks))
    return params




@pytest.fixture(scope="session")
def images() -> ImageSet:
    """The standard test images (one-layer, three-layer with a ~100 MB layer, amd64+arm64 index)."""
    return cached_standard_images()


@pytest.fixture(scope="session", params=registry_params())
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running registry of the parametrized kind and backend, shared by the whole session."""
    kind, backend, auth = request.param
    workdir = tmp_path_factory.mktemp(f"{kind}-{backend}-{auth}")
    s3 = request.getfixturevalue("s3_server") if backend == "s3" else None
    overlay, credentials = auth_config(auth, kind, workdir / "auth")
    config = deep_merge(storage_config(backend, workdir, s3=s3), overlay)
    server = start_registry(kind, config, workdir / "server")
    server.credentials = credentials
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
def skopeo_tool(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    """skopeo with a private auth file (session-wide)."""
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture
def skopeo(skopeo_tool: Skopeo, registry: Server) -> Skopeo:
    """skopeo, logged in to ``registry`` when it requires credentials."""
    if registry.credentials:
        skopeo_tool.login(registry.addr, *registry.credentials)
    return skopeo_tool


@pytest.fixture(scope="session")
def podman_tool(tmp_path_factory: pytest.TempPathFactory) -> ContainersTool:
    """podman with private vfs storage (session-wide)."""
    return ContainersTool("podman", tmp_path_factory.mktemp("podman"))


@pytest.fixture
def podman(podman_tool: ContainersTool, registry: Server) -> ContainersTool:
    """podman, logged in to ``registry`` when it requires credentials."""
    if registry.credentials:
        podman_tool.login(registry.addr, *registry.credentials)
    return podman_tool


@pytest.fixture(scope="session")
def buildah_tool(tmp_path_factory: pytest.TempPathFactory) -> ContainersTool:
    """buildah with private vfs storage (session-wide)."""
    return ContainersTool("buildah", tmp_path_factory.mktemp("buildah"))


@pytest.fixture
def buildah(buildah_tool: ContainersTool, registry: Server) -> ContainersTool:
    """buildah, logged in to ``registry`` when it requires credentials."""
    if registry.credentials:
        buildah_tool.login(registry.addr, *registry.credentials)
    return buildah_tool


@pytest.fixture(scope="session")
def dockerd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """One private dockerd for the session (vfs, no iptables, socket under /tmp)."""
    daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def dockerd(dockerd_daemon: Dockerd, registry: Server) -> Dockerd:
    """The session's dockerd, its CLI logged in to ``registry`` when it requires credentials."""
    if registry.credentials:
        dockerd_daemon.login(registry.addr, *registry.credentials)
    return dockerd_daemon
