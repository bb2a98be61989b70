"""skopeo copies Berth -> reference registry -> Berth and every digest survives both hops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import ImageSet
from tests.realclients.checks import http_for, verify_image
from tests.realclients.clients import Skopeo
from tests.servers import Server, server_matrix, start_registry, storage_config

pytestmark = [pytest.mark.realclient, pytest.mark.interop]


def _pair_params() -> list[object]:
    # With Berth deselected (BERTH_TEST_SERVERS=reference) the hops run reference -> reference.
    matrix = server_matrix()
    params: list[object] = []
    for backend in dict.fromkeys(b for _, b in matrix):
        first = "berth" if ("berth", backend) in matrix else "reference"
        marks = [pytest.mark.s3] if backend == "s3" else []
        params.append(pytest.param((first, backend), id=f"{first}-reference-{backend}", marks=marks))
    return params


@pytest.fixture(scope="module", params=_pair_params())
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """(Berth, reference registry), each on its own fresh storage."""
    kind, backend = request.param
    a_dir = tmp_path_factory.mktemp(f"cross-{kind}")
    b_dir = tmp_path_factory.mktemp("cross-reference")
    s3 = request.getfixturevalue("s3_server") if backend == "s3" else None
    a = start_registry(kind, storage_config(backend, a_dir, s3=s3), a_dir / "server")
    try:
        b = start_registry("reference", storage_config(backend, b_dir, s3=s3), b_dir / "server")
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.mark.parametrize("which", ["three-layer", "multi-arch"])
def test_berth_to_reference_to_berth(
    pair: tuple[Server, Server], skopeo_tool: Skopeo, images: ImageSet, tmp_path: Path, which: str
) -> None:
    berth, reference = pair
    skopeo = skopeo_tool
    source = images.three_layer if which == "three-layer" else images.multi_arch
    expected = source.manifest_digest
    multi = which == "multi-arch"

    skopeo.copy(source.oci_ref, f"docker://{berth.addr}/cross/{which}:v1", all_images=multi)
    first = verify_image(http_for(berth), f"cross/{which}", "v1", expect_digest=expected)

    skopeo.copy(f"docker://{berth.addr}/cross/{which}:v1", f"docker://{reference.addr}/hop/{which}:v1", all_images=multi)
    second = verify_image(http_for(reference), f"hop/{which}", "v1", expect_digest=expected)

    skopeo.copy(f"docker://{reference.addr}/hop/{which}:v1", f"docker://{berth.addr}/back/{which}:v1", all_images=multi)
    third = verify_image(http_for(berth), f"back/{which}", "v1", expect_digest=expected)

    assert first.document == second.document == third.document
    assert set(first.children) == set(second.children) == set(third.children)
