"""One registry's storage served by the other: Distribution's data read by Berth and vice versa.

The writer gets images through skopeo (monolithic and chunked uploads, an index, several tags)
and oras (a chunked artifact push); it stops; the reader starts on the very same storage
(filesystem root or S3 prefix) and must serve every tag with the same digests and bytes, list
the same tags and repositories, accept new writes and deletes; and the writer, started again,
must see what the reader changed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.images import ImageSet, seeded_chunks
from tests.realclients.checks import (
    RegistryHTTP,
    assert_layout_holds,
    http_for,
    layout_manifest_digest,
    verify_image,
)
from tests.realclients.clients import Skopeo
from tests.servers import Server, server_matrix, start_registry, storage_config
from tests.tools import require_oras

pytestmark = [pytest.mark.interop]


def _direction_params() -> list[object]:
    matrix = server_matrix()
    params: list[object] = []
    for backend in dict.fromkeys(b for _, b in matrix):
        other = "berth" if ("berth", backend) in matrix else "reference"
        marks = [pytest.mark.s3] if backend == "s3" else []
        for writer, reader in (("reference", other), (other, "reference")):
            params.append(pytest.param((writer, reader, backend), id=f"{writer}-to-{reader}-{backend}", marks=marks))
    return params


@dataclass
class Written:
    """What the writer stored: repo -> {tag: manifest digest}, plus the oras artifact's digest."""

    tags: dict[str, dict[str, str]]
    artifact_digest: str


def _write_content(server: Server, skopeo: Skopeo, images: ImageSet, tmp_path: Path) -> Written:
    addr = server.addr
    skopeo.copy(images.one_layer.oci_ref, f"docker://{addr}/interop/one:v1")
    skopeo.copy(images.one_layer.oci_ref, f"docker://{addr}/interop/one:v2")
    skopeo.copy(images.three_layer.oci_ref, f"docker://{addr}/interop/three:big")
    skopeo.copy(images.multi_arch.oci_ref, f"docker://{addr}/interop/nested/multi:multi", all_images=True)

    artifact = tmp_path / "artifact.bin"
    with open(artifact, "wb") as handle:
        handle.writelines(seeded_chunks(77, 3 * (1 << 20) + 17))
    client = require_oras().OrasClient(hostname=addr, insecure=True)
    with contextlib.chdir(tmp_path):  # oras only pushes files below the working directory
        response = client.push(f"{addr}/interop/artifact:art", files=[artifact.name], do_chunked=True, chunk_size=1 << 20)
    assert response.status_code == 201, response.text
    return Written(
        tags={
            "interop/one": {"v1": images.one_layer.manifest_digest, "v2": images.one_layer.manifest_digest},
            "interop/three": {"big": images.three_layer.manifest_digest},
            "interop/nested/multi": {"multi": images.multi_arch.manifest_digest},
            "interop/artifact": {"art": response.headers["Docker-Content-Digest"]},
        },
        artifact_digest=response.headers["Docker-Content-Digest"],
    )


def _assert_serves(http: RegistryHTTP, written: Written) -> None:
    for repo, tags in written.tags.items():
        assert sorted(http.tags(repo)) == sorted(tags), repo
        for tag, digest in tags.items():
            verify_image(http, repo, tag, expect_digest=digest)
            verify_image(http, repo, digest, expect_digest=digest)
    assert set(written.tags) <= set(http.catalog())


@pytest.mark.parametrize("direction", _direction_params())
def test_storage_written_by_one_is_served_by_the_other(
    request: pytest.FixtureRequest,
    direction: tuple[str, str, str],
    skopeo: Skopeo,
    images: ImageSet,
    tmp_path: Path,
) -> None:
    writer_kind, reader_kind, backend = direction
    s3 = request.getfixturevalue("s3_server") if backend == "s3" else None
    config = storage_config(backend, tmp_path / "shared", s3=s3)

    writer = start_registry(writer_kind, config, tmp_path / "writer")
    try:
        written = _write_content(writer, skopeo, images, tmp_path)
        _assert_serves(http_for(writer), written)
    finally:
        writer.stop()

    reader = start_registry(reader_kind, config, tmp_path / "reader")
    try:
        http = http_for(reader)
        _assert_serves(http, written)

        # Pull everything back out through a real client and compare bytes with the originals.
        out = tmp_path / "pulled"
        skopeo.copy(f"docker://{reader.addr}/interop/three:big", f"oci:{out}:big")
        skopeo.copy(f"docker://{reader.addr}/interop/nested/multi:multi", f"oci:{out}:multi", all_images=True)
        assert layout_manifest_digest(out, "big") == images.three_layer.manifest_digest
        assert layout_manifest_digest(out, "multi") == images.multi_arch.manifest_digest
        originals = {b.digest: b.path for b in [images.three_layer.manifest, *images.three_layer.blobs]}
        for img in images.multi_arch.images.values():
            originals.update({b.digest: b.path for b in [img.manifest, *img.blobs]})
        assert_layout_holds(out, list(originals), originals)

        # The reader changes the shared storage: a new tag (blobs mounted from another repo) and a delete.
        skopeo.copy(f"docker://{reader.addr}/interop/three:big", f"docker://{reader.addr}/interop/copied:fromreader")
        delete = http.request("DELETE", f"/v2/interop/one/manifests/{images.one_layer.manifest_digest}")
        assert delete.status == 202, delete.body
        written.tags["interop/copied"] = {"fromreader": images.three_layer.manifest_digest}
        del written.tags["interop/one"]
        _assert_serves(http, written)
    finally:
        reader.stop()

    writer = start_registry(writer_kind, config, tmp_path / "writer-again")
    try:
        http = http_for(writer)
        _assert_serves(http, written)
        assert http.get_manifest("interop/one", "v1").status == 404
        assert http.get_manifest("interop/one", images.one_layer.manifest_digest).status == 404
    finally:
        writer.stop()
