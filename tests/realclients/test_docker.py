"""The docker CLI and a real dockerd against a registry: load, tag, push, pull, save, by platform."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from tests.images import BuiltImage, ImageSet
from tests.realclients.checks import RegistryHTTP, verify_image
from tests.realclients.clients import Skopeo
from tests.servers import Dockerd, Server

pytestmark = [pytest.mark.realclient]


def _pick(images: ImageSet, name: str) -> BuiltImage:
    return {"one-layer": images.one_layer, "three-layer": images.three_layer}[name]


def _pushed_digest(output: str) -> str:
    match = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", output)
    assert match, f"docker push printed no digest:\n{output}"
    return match.group(1)


def _inspect(dockerd: Dockerd, ref: str) -> dict[str, object]:
    doc = json.loads(dockerd.docker("image", "inspect", ref).stdout)
    assert len(doc) == 1
    return dict(doc[0])


@pytest.mark.parametrize("image_name", ["one-layer", "three-layer"])
def test_load_tag_push_pull_save(
    registry: Server,
    http: RegistryHTTP,
    dockerd: Dockerd,
    images: ImageSet,
    repo: str,
    tmp_path: Path,
    image_name: str,
) -> None:
    image = _pick(images, image_name)
    assert image.docker_archive is not None
    local = f"berth-test/{image.name}:{image.tag}"
    ref = f"{registry.addr}/{repo}:v1"
    dockerd.docker("load", "-i", str(image.docker_archive))
    dockerd.docker("tag", local, ref)

    digest = _pushed_digest(dockerd.docker("push", ref).stdout)
    verified = verify_image(http, repo, "v1", expect_digest=digest)
    # docker recompresses layers, but the config (the image id) and the diff ids survive.
    assert verified.document["config"]["digest"] == image.config.digest

    dockerd.docker("rmi", ref, local)
    pulled = dockerd.docker("pull", ref).stdout
    assert f"Digest: {digest}" in pulled
    info = _inspect(dockerd, ref)
    assert info["Id"] == image.config.digest
    assert info["RootFS"] == {"Type": "layers", "Layers": image.diff_ids}
    assert f"{registry.addr}/{repo}@{digest}" in info["RepoDigests"]  # type: ignore[operator]

    # Pull by digest, then save and load the pulled image again.
    dockerd.docker("rmi", ref)
    dockerd.docker("pull", f"{registry.addr}/{repo}@{digest}")
    saved = tmp_path / "saved.tar"
    dockerd.docker("save", "-o", str(saved), f"{registry.addr}/{repo}@{digest}")
    with tarfile.open(saved) as tar:
        manifest_member = tar.extractfile("manifest.json")
        assert manifest_member is not None
        saved_manifest = json.loads(manifest_member.read())
        config_member = tar.extractfile(saved_manifest[0]["Config"])
        assert config_member is not None
        assert json.loads(config_member.read())["rootfs"]["diff_ids"] == image.diff_ids
    dockerd.docker("rmi", f"{registry.addr}/{repo}@{digest}")
    loaded = dockerd.docker("load", "-i", str(saved)).stdout
    assert image.config.digest in loaded
    dockerd.docker("rmi", image.config.digest)


def test_tag_and_push_second_tag_reuses_blobs(
    registry: Server, http: RegistryHTTP, dockerd: Dockerd, images: ImageSet, repo: str
) -> None:
    image = images.one_layer
    assert image.docker_archive is not None
    dockerd.docker("load", "-i", str(image.docker_archive))
    first = f"{registry.addr}/{repo}:first"
    second = f"{registry.addr}/{repo}:second"
    dockerd.docker("tag", f"berth-test/{image.name}:{image.tag}", first)
    dockerd.docker("tag", first, second)
    digest_one = _pushed_digest(dockerd.docker("push", first).stdout)
    out = dockerd.docker("push", second).stdout
    assert "Layer already exists" in out, out
    assert _pushed_digest(out) == digest_one
    assert sorted(http.tags(repo)) == ["first", "second"]
    dockerd.docker("rmi", first, second, f"berth-test/{image.name}:{image.tag}")


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_pull_by_platform_from_index(
    registry: Server, dockerd: Dockerd, skopeo: Skopeo, images: ImageSet, repo: str, arch: str
) -> None:
    index = images.multi_arch
    skopeo.copy(index.oci_ref, f"docker://{registry.addr}/{repo}:multi", all_images=True)
    ref = f"{registry.addr}/{repo}:multi"
    out = dockerd.docker("pull", "--platform", f"linux/{arch}", ref).stdout
    assert f"Digest: {index.manifest_digest}" in out
    info = _inspect(dockerd, ref)
    assert info["Architecture"] == arch
    assert info["Id"] == index.images[arch].config.digest
    dockerd.docker("rmi", ref)
