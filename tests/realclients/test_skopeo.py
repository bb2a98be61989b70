"""skopeo against a real registry: copy in and out byte for byte, --all, list-tags, delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import BuiltImage, ImageSet
from tests.realclients.checks import (
    RegistryHTTP,
    assert_layout_holds,
    layout_manifest_digest,
    verify_image,
)
from tests.realclients.clients import Skopeo
from tests.servers import Server

pytestmark = [pytest.mark.realclient]


def _pick(images: ImageSet, name: str) -> BuiltImage:
    return {"one-layer": images.one_layer, "three-layer": images.three_layer}[name]


@pytest.mark.parametrize("image_name", ["one-layer", "three-layer"])
def test_copy_image_in_and_out_byte_for_byte(
    registry: Server, http: RegistryHTTP, skopeo: Skopeo, images: ImageSet, repo: str, tmp_path: Path, image_name: str
) -> None:
    image = _pick(images, image_name)
    skopeo.copy(image.oci_ref, f"docker://{registry.addr}/{repo}:v1")

    verified = verify_image(http, repo, "v1", expect_digest=image.manifest_digest)
    assert verified.blob_digests == [b.digest for b in image.blobs]
    assert skopeo.inspect_raw(f"docker://{registry.addr}/{repo}:v1") == image.manifest.path.read_bytes()

    out = tmp_path / "out"
    skopeo.copy(f"docker://{registry.addr}/{repo}:v1", f"oci:{out}:copy")
    assert layout_manifest_digest(out, "copy") == image.manifest_digest
    originals = {b.digest: b.path for b in [image.manifest, *image.blobs]}
    assert_layout_holds(out, list(originals), originals)


def test_copy_all_multi_arch_index(
    registry: Server, http: RegistryHTTP, skopeo: Skopeo, images: ImageSet, repo: str, tmp_path: Path
) -> None:
    index = images.multi_arch
    skopeo.copy(index.oci_ref, f"docker://{registry.addr}/{repo}:multi", all_images=True)

    verified = verify_image(http, repo, "multi", expect_digest=index.manifest_digest)
    assert set(verified.children) == {img.manifest_digest for img in index.images.values()}
    for arch, img in index.images.items():
        child = verified.children[img.manifest_digest]
        assert child.blob_digests == [b.digest for b in img.blobs], arch

    out = tmp_path / "out"
    skopeo.copy(f"docker://{registry.addr}/{repo}:multi", f"oci:{out}:multi", all_images=True)
    assert layout_manifest_digest(out, "multi") == index.manifest_digest
    originals = {index.index.digest: index.index.path}
    for img in index.images.values():
        originals.update({b.digest: b.path for b in [img.manifest, *img.blobs]})
    assert_layout_holds(out, list(originals), originals)


def test_copy_single_platform_out_of_index(
    registry: Server, skopeo: Skopeo, images: ImageSet, repo: str, tmp_path: Path
) -> None:
    index = images.multi_arch
    skopeo.copy(index.oci_ref, f"docker://{registry.addr}/{repo}:multi", all_images=True)
    arm = index.images["arm64"]
    out = tmp_path / "arm"
    skopeo.copy(f"docker://{registry.addr}/{repo}:multi", f"oci:{out}:arm", "--override-arch=arm64")
    assert layout_manifest_digest(out, "arm") == arm.manifest_digest


def test_list_tags(registry: Server, skopeo: Skopeo, images: ImageSet, repo: str) -> None:
    tags = ["v1", "v2", "latest", "1.0.0-rc.1", "Z_last"]
    for tag in tags:
        skopeo.copy(images.one_layer.oci_ref, f"docker://{registry.addr}/{repo}:{tag}")
    assert sorted(skopeo.list_tags(f"docker://{registry.addr}/{repo}")) == sorted(tags)


def test_delete_by_digest(
    registry: Server, http: RegistryHTTP, skopeo: Skopeo, images: ImageSet, repo: str
) -> None:
    image = images.one_layer
    skopeo.copy(image.oci_ref, f"docker://{registry.addr}/{repo}:doomed")
    skopeo.copy(image.oci_ref, f"docker://{registry.addr}/{repo}:alias")
    assert http.get_manifest(repo, image.manifest_digest).status == 200

    # skopeo resolves the tag and deletes the manifest by digest, taking every tag with it.
    skopeo.delete(f"docker://{registry.addr}/{repo}:doomed")

    assert http.get_manifest(repo, image.manifest_digest).status == 404
    assert http.get_manifest(repo, "doomed").status == 404
    assert http.get_manifest(repo, "alias").status == 404
    remaining = skopeo.list_tags(f"docker://{registry.addr}/{repo}")
    if registry.label == "reference-s3":
        # Distribution 2.8 lists tag "directories" that SeaweedFS keeps after their objects go.
        assert sorted(remaining) in ([], ["alias", "doomed"])
    else:
        assert remaining == []
    # A fresh push after the delete works and is whole again.
    skopeo.copy(image.oci_ref, f"docker://{registry.addr}/{repo}:again")
    verify_image(http, repo, "again", expect_digest=image.manifest_digest)


def test_copy_between_repositories_mounts_blobs(
    registry: Server, http: RegistryHTTP, skopeo: Skopeo, images: ImageSet, repo: str
) -> None:
    image = images.three_layer
    skopeo.copy(image.oci_ref, f"docker://{registry.addr}/{repo}/src:v1")
    skopeo.copy(f"docker://{registry.addr}/{repo}/src:v1", f"docker://{registry.addr}/{repo}/dst:v1")
    verify_image(http, f"{repo}/dst", "v1", expect_digest=image.manifest_digest)
