"""podman against a real registry: push, pull, pull by platform, and buildah push."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import BuiltImage, ImageSet
from tests.realclients.checks import RegistryHTTP, verify_image
from tests.realclients.clients import ContainersTool, Skopeo
from tests.servers import Server

pytestmark = [pytest.mark.realclient]


def _pick(images: ImageSet, name: str) -> BuiltImage:
    return {"one-layer": images.one_layer, "three-layer": images.three_layer}[name]


@pytest.mark.parametrize("image_name", ["one-layer", "three-layer"])
def test_podman_push_then_pull(
    registry: Server,
    http: RegistryHTTP,
    podman: ContainersTool,
    images: ImageSet,
    repo: str,
    tmp_path: Path,
    image_name: str,
) -> None:
    image = _pick(images, image_name)
    ref = f"{registry.addr}/{repo}:v1"
    image_id = image.config.digest.split(":")[1]
    podman.run("pull", "-q", image.oci_ref)
    assert podman.image_field(image_id, "{{.Id}}") == image_id
    digest_file = tmp_path / "digest"
    podman.run("push", "--tls-verify=false", "--digestfile", str(digest_file), image_id, f"docker://{ref}")
    digest = digest_file.read_text().strip()
    verified = verify_image(http, repo, "v1", expect_digest=digest)
    assert verified.document["config"]["digest"] == image.config.digest

    podman.remove_all_images()
    podman.run("pull", "-q", "--tls-verify=false", ref)
    assert podman.image_field(ref, "{{.Id}}") == image_id
    assert podman.image_field(ref, "{{.Digest}}") == digest
    podman.remove_all_images()


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_podman_pull_by_platform(
    registry: Server, podman: ContainersTool, skopeo: Skopeo, images: ImageSet, repo: str, arch: str
) -> None:
    index = images.multi_arch
    skopeo.copy(index.oci_ref, f"docker://{registry.addr}/{repo}:multi", all_images=True)
    ref = f"{registry.addr}/{repo}:multi"
    podman.run("pull", "-q", "--tls-verify=false", "--platform", f"linux/{arch}", ref)
    assert podman.image_field(ref, "{{.Architecture}}") == arch
    assert podman.image_field(ref, "{{.Id}}") == index.images[arch].config.digest.split(":")[1]
    assert podman.image_field(ref, "{{.Digest}}") == index.manifest_digest
    podman.remove_all_images()


def test_podman_manifest_push_all(
    registry: Server, http: RegistryHTTP, podman: ContainersTool, skopeo: Skopeo, images: ImageSet, repo: str
) -> None:
    index = images.multi_arch
    skopeo.copy(index.oci_ref, f"docker://{registry.addr}/{repo}/src:multi", all_images=True)
    podman.run("manifest", "create", "berth-test-list")
    try:
        podman.run("manifest", "add", "--all", "--tls-verify=false", "berth-test-list", f"docker://{registry.addr}/{repo}/src:multi")
        podman.run("manifest", "push", "--all", "--tls-verify=false", "berth-test-list", f"docker://{registry.addr}/{repo}/dst:multi")
    finally:
        podman.run("manifest", "rm", "berth-test-list", check=False)
    verified = verify_image(http, f"{repo}/dst", "multi")
    assert set(verified.children) == {img.manifest_digest for img in index.images.values()}
    podman.remove_all_images()


@pytest.mark.parametrize("image_name", ["one-layer", "three-layer"])
def test_buildah_push(
    registry: Server,
    http: RegistryHTTP,
    buildah: ContainersTool,
    skopeo: Skopeo,
    images: ImageSet,
    repo: str,
    tmp_path: Path,
    image_name: str,
) -> None:
    image = _pick(images, image_name)
    ref = f"{registry.addr}/{repo}:v1"
    buildah.run("pull", "-q", image.oci_ref)
    digest_file = tmp_path / "digest"
    buildah.run("push", "--tls-verify=false", "--digestfile", str(digest_file), image.config.digest.split(":")[1], f"docker://{ref}")
    digest = digest_file.read_text().strip()
    verified = verify_image(http, repo, "v1", expect_digest=digest)
    assert verified.document["config"]["digest"] == image.config.digest

    # Pull back with another client and compare what it recorded.
    out = tmp_path / "out"
    skopeo.copy(f"docker://{ref}", f"oci:{out}:v1")
    raw = skopeo.inspect_raw(f"oci:{out}:v1")
    assert raw == http.get_manifest(repo, digest).body
    buildah.remove_all_images()
