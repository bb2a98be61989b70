"""Fixtures for the client suite: real registries (the reference registry and Berth), small images, a private store.

Every registry binds 127.0.0.1 on a free port (``tests.servers``); each test gets its own
``$BERTH_HOME`` and ``$DOCKER_CONFIG`` so nothing touches the machine's own state.
"""

from __future__ import annotations

import io
import re
import sys
import tarfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from registry.client.cli import main as cli_main  # noqa: E402
from tests.images import BuiltImage, BuiltIndex, build_image, build_index  # noqa: E402
from tests.servers import Server, berth_available, filesystem_config, start_registry  # noqa: E402


def registry_kinds() -> list[object]:
    """The reference registry always; Berth once ``python -m registry serve`` works."""
    kinds: list[object] = [pytest.param("reference", marks=pytest.mark.interop, id="reference")]
    if berth_available():
        kinds.append(pytest.param("berth", id="berth"))
    return kinds


@pytest.fixture(scope="session", params=registry_kinds())
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running registry (filesystem storage, deletes enabled) shared by the session."""
    kind = request.param
    workdir = tmp_path_factory.mktemp(f"client-{kind}")
    server = start_registry(kind, filesystem_config(workdir / "data"), workdir / "server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def reference_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The reference registry alone (for tests that need a second, different registry)."""
    workdir = tmp_path_factory.mktemp("client-ref2")
    server = start_registry("reference", filesystem_config(workdir / "data"), workdir / "server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test (and its parameters)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"client/{name[:100]}"


@pytest.fixture(autouse=True)
def berth_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``$BERTH_HOME`` and ``$DOCKER_CONFIG`` for every test."""
    monkeypatch.setenv("BERTH_HOME", str(tmp_path / "berth-home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return tmp_path / "berth-home"


@dataclass
class Images:
    """Small images built offline: single-platform (docker-archive + OCI layout) and an amd64+arm64 index."""

    small: BuiltImage
    other: BuiltImage
    multi: BuiltIndex
    small_oci_tar: Path
    multi_oci_tar: Path


def tar_layout(layout: Path, dest: Path) -> Path:
    """An OCI layout directory as an oci-archive tar."""
    with tarfile.open(dest, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return dest


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The client suite's images (a few hundred KB each)."""
    dest = tmp_path_factory.mktemp("client-images")
    small = build_image(dest, "small", [100_000, 300_000, 50_000], seed=11)
    other = build_image(dest, "other", [200_000], seed=12)
    multi = build_index(dest, "multi", ["amd64", "arm64"], 60_000, seed=13)
    return Images(small, other, multi, tar_layout(small.layout, dest / "small-oci.tar"),
                  tar_layout(multi.layout, dest / "multi-oci.tar"))


@dataclass
class Result:
    """One CLI run."""

    code: int
    out: str
    err: str


def berth(*argv: str, stdin: bytes | None = None) -> Result:
    """Run ``berth VERB …`` in-process (sync tests only); capture stdout/stderr."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli_main(list(argv))
    finally:
        sys.stdin = old_stdin
    return Result(code, out.getvalue(), err.getvalue())


def ok(*argv: str, stdin: bytes | None = None) -> Result:
    """Run a verb that must succeed."""
    result = berth(*argv, stdin=stdin)
    assert result.code == 0, f"berth {' '.join(argv)} -> {result.code}\n{result.out}\n{result.err}"
    return result


def load_and_tag(archive: Path, name: str) -> None:
    """``berth load`` an archive whose single image then gets ``name``."""
    loaded = ok("load", "-i", str(archive)).out.split()
    ok("tag", loaded[-1], name)
    if not loaded[-1].startswith("sha256:") and loaded[-1] != name:
        ok("rmi", loaded[-1])
