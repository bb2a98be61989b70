"""Round trips with the real tools: docker, podman and skopeo archives in and out of Berth's store.

Tars written by ``docker save``, ``podman save`` (both formats) and ``skopeo copy`` load into the
store and push with unchanged digests; tars written by ``berth save`` load in docker and podman
and copy with skopeo; ``berth copy`` between Berth and the reference registry keeps digests.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import pytest

from registry.client.store import Store
from tests.client.conftest import Images, load_and_tag, ok
from tests.realclients.clients import ContainersTool, Skopeo
from tests.servers import Dockerd, Server, start_dockerd

pytestmark = pytest.mark.realclient


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private dockerd for this module."""
    daemon = start_dockerd(tmp_path_factory.mktemp("client-dockerd"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> ContainersTool:
    """podman with private vfs storage."""
    return ContainersTool("podman", tmp_path_factory.mktemp("client-podman"))


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    """skopeo with a private auth file."""
    return Skopeo(tmp_path_factory.mktemp("client-skopeo"))


def _digest_of_remote(skopeo: Skopeo, ref: str) -> str:
    return "sha256:" + hashlib.sha256(skopeo.inspect_raw(f"docker://{ref}")).hexdigest()


def _push(name: str) -> str:
    return ok("push", name).out.split("digest: ")[1].split()[0]


def test_docker_save_loads_and_pushes_with_docker_ids(dockerd: Dockerd, registry: Server, repo: str, images: Images,
                                                      tmp_path: Path, skopeo: Skopeo) -> None:
    dockerd.docker("load", "-i", str(images.small.docker_archive))
    image_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", "berth-test/small:latest").stdout.strip()
    saved = tmp_path / "docker-save.tar"
    dockerd.docker("save", "-o", str(saved), "berth-test/small:latest")
    assert ok("load", "-i", str(saved)).out.strip() == "Loaded image: berth-test/small:latest"
    store = Store()
    assert str(store.image_id(store.get("berth-test/small:latest"))) == image_id
    target = f"{registry.addr}/{repo}:docker"
    ok("tag", "berth-test/small:latest", target)
    pushed = _push(target)
    assert pushed == _digest_of_remote(skopeo, target)
    config = json.loads(ok("inspect", target).out)["Config"]["Digest"]
    assert config == image_id  # the config digest docker calls the image ID is unchanged


def test_berth_save_loads_in_docker(dockerd: Dockerd, images: Images, tmp_path: Path) -> None:
    load_and_tag(images.small.docker_archive, "reg.example/docker/small:1")  # type: ignore[arg-type]
    load_and_tag(images.multi_oci_tar, "reg.example/docker/multi:1")
    archive = tmp_path / "berth.tar"
    ok("save", "-o", str(archive), "reg.example/docker/small:1", "reg.example/docker/multi:1")
    out = dockerd.docker("load", "-i", str(archive)).stdout
    assert "reg.example/docker/small:1" in out and "reg.example/docker/multi:1" in out
    image_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", "reg.example/docker/small:1").stdout.strip()
    assert image_id == images.small.config.digest
    arch = dockerd.docker("image", "inspect", "--format", "{{.Architecture}}", "reg.example/docker/multi:1").stdout.strip()
    assert arch == "amd64"
    gz = tmp_path / "berth.tar.gz"
    ok("save", "--gzip", "-o", str(gz), "reg.example/docker/small:1")
    dockerd.docker("rmi", "reg.example/docker/small:1")
    assert "reg.example/docker/small:1" in dockerd.docker("load", "-i", str(gz)).stdout


def test_podman_archives_load_and_push_with_unchanged_digests(podman: ContainersTool, registry: Server, repo: str,
                                                                images: Images, tmp_path: Path, skopeo: Skopeo) -> None:
    podman.run("load", "-i", str(images.small.docker_archive))
    docker_tar, oci_tar = tmp_path / "podman-docker.tar", tmp_path / "podman-oci.tar"
    podman.run("save", "-o", str(docker_tar), "berth-test/small:latest")
    podman.run("save", "--format", "oci-archive", "-o", str(oci_tar), "berth-test/small:latest")
    podman_id = podman.image_field("berth-test/small:latest", "{{.Id}}")

    name = "localhost/berth-test/small:latest"  # podman's name for an image loaded without a registry
    assert ok("load", "-i", str(docker_tar)).out.strip() == f"Loaded image: {name}"
    store = Store()
    assert store.image_id(store.get(name)).hex == podman_id
    ok("tag", name, f"{registry.addr}/{repo}:docker-archive")
    pushed = _push(f"{registry.addr}/{repo}:docker-archive")
    assert pushed == _digest_of_remote(skopeo, f"{registry.addr}/{repo}:docker-archive")

    oci_index = json.loads(_tar_member(oci_tar, "index.json"))
    oci_manifest = oci_index["manifests"][0]["digest"]
    assert ok("load", "-i", str(oci_tar)).out.strip() == f"Loaded image: {name}"
    ok("tag", name, f"{registry.addr}/{repo}:oci-archive")
    assert _push(f"{registry.addr}/{repo}:oci-archive") == oci_manifest  # the archive's manifest, byte for byte


def test_berth_save_loads_in_podman(podman: ContainersTool, images: Images, tmp_path: Path) -> None:
    load_and_tag(images.small.docker_archive, "reg.example/podman/small:1")  # type: ignore[arg-type]
    archive = tmp_path / "berth.tar"
    ok("save", "-o", str(archive), "reg.example/podman/small:1")
    out = podman.run("load", "-i", str(archive)).stdout
    assert "reg.example/podman/small:1" in out
    assert podman.image_field("reg.example/podman/small:1", "{{.Id}}") == images.small.config.digest[7:]


def test_skopeo_archives_load_and_berth_save_copies_with_skopeo(skopeo: Skopeo, registry: Server, repo: str,
                                                                images: Images, tmp_path: Path) -> None:
    docker_tar, oci_tar = tmp_path / "skopeo-docker.tar", tmp_path / "skopeo-oci.tar"
    skopeo.run("copy", images.small.oci_ref, f"docker-archive:{docker_tar}:skopeo/small:1")
    skopeo.run("copy", images.small.oci_ref, f"oci-archive:{oci_tar}:skopeo/small:2")
    assert ok("load", "-i", str(docker_tar)).out.strip() == "Loaded image: skopeo/small:1"
    assert ok("load", "-i", str(oci_tar)).out.strip() == "Loaded image: skopeo/small:2"
    ok("tag", "skopeo/small:2", f"{registry.addr}/{repo}:from-oci-archive")
    assert _push(f"{registry.addr}/{repo}:from-oci-archive") == images.small.manifest_digest

    archive = tmp_path / "berth.tar"
    ok("save", "-o", str(archive), f"{registry.addr}/{repo}:from-oci-archive", "skopeo/small:1")
    for source, name in ((f"oci-archive:{archive}:from-oci-archive", "oci"), (f"docker-archive:{archive}:skopeo/small:1", "docker")):
        dest = f"{registry.addr}/{repo}:via-skopeo-{name}"
        skopeo.copy(source, f"docker://{dest}")
        assert ok("pull", dest).out
    assert _digest_of_remote(skopeo, f"{registry.addr}/{repo}:via-skopeo-oci") == images.small.manifest_digest


def test_berth_copy_between_berth_and_reference_keeps_digests(registry: Server, reference_registry: Server, repo: str,
                                                              images: Images, skopeo: Skopeo) -> None:
    if registry.kind != "berth":
        pytest.skip("the Berth <-> reference direction needs the Berth server")
    src = f"{registry.addr}/{repo}:multi"
    load_and_tag(images.multi_oci_tar, src)
    ok("push", src)
    there = f"{reference_registry.addr}/{repo}:multi"
    ok("copy", "--all-platforms", src, there)
    back = f"{registry.addr}/{repo}-back:multi"
    ok("copy", "--all-platforms", there, back)
    for ref in (src, there, back):
        assert _digest_of_remote(skopeo, ref) == images.multi.manifest_digest


def _tar_member(path: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(path) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()
