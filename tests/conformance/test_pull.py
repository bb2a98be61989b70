"""Conformance, pull workflow: blobs and manifests by digest and tag, 404s, the error body."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conformance.client import ConformanceHTTP
from tests.conformance.spec import (
    DUMMY_DIGEST,
    ERROR_CODES,
    NONEXISTENT_MANIFEST,
    OCI_MANIFEST,
    SpecData,
    error_codes,
    is_2xx,
    put_manifest,
    upload,
)

TAG = "tagtest0"


@pytest.fixture(scope="module")
def pulled(http: ConformanceHTTP, spec: SpecData, namespace: str) -> str:
    """Setup: configs 0 and 1, the layer, manifest 0 under a tag and manifest 1 by digest."""
    upload(http, namespace, spec.configs[0])
    upload(http, namespace, spec.configs[1])
    upload(http, namespace, spec.layer)
    assert is_2xx(put_manifest(http, namespace, TAG, spec.manifests[0]))
    assert is_2xx(put_manifest(http, namespace, spec.manifests[1].digest, spec.manifests[1]))
    return namespace


def test_head_nonexistent_blob_is_404(http: ConformanceHTTP, pulled: str) -> None:
    assert http.request("HEAD", f"/v2/{pulled}/blobs/{DUMMY_DIGEST}").status == 404


def test_head_existing_blob_is_200(http: ConformanceHTTP, pulled: str, spec: SpecData) -> None:
    resp = http.request("HEAD", f"/v2/{pulled}/blobs/{spec.configs[0].digest}")
    assert resp.status == 200
    assert resp.headers.get("docker-content-digest", spec.configs[0].digest) == spec.configs[0].digest
    assert resp.headers.get("content-length") == spec.configs[0].length
    assert resp.body == b""


def test_get_nonexistent_blob_is_404(http: ConformanceHTTP, pulled: str) -> None:
    resp = http.request("GET", f"/v2/{pulled}/blobs/{DUMMY_DIGEST}")
    assert resp.status == 404
    assert "BLOB_UNKNOWN" in error_codes(resp)


def test_get_existing_blob_is_200(http: ConformanceHTTP, pulled: str, spec: SpecData) -> None:
    resp = http.request("GET", f"/v2/{pulled}/blobs/{spec.configs[0].digest}")
    assert resp.status == 200
    assert resp.body == spec.configs[0].data


def test_head_nonexistent_manifest_is_404(http: ConformanceHTTP, pulled: str) -> None:
    assert http.head_manifest(pulled, NONEXISTENT_MANIFEST).status == 404


@pytest.mark.parametrize("index", [0, 1])
def test_head_manifest_by_digest_is_200(http: ConformanceHTTP, pulled: str, spec: SpecData, index: int) -> None:
    resp = http.head_manifest(pulled, spec.manifests[index].digest, accept=OCI_MANIFEST)
    assert resp.status == 200
    assert resp.headers.get("docker-content-digest", spec.manifests[index].digest) == spec.manifests[index].digest


def test_head_manifest_by_tag_is_200(http: ConformanceHTTP, pulled: str, spec: SpecData) -> None:
    resp = http.head_manifest(pulled, TAG, accept=OCI_MANIFEST)
    assert resp.status == 200
    assert resp.headers.get("docker-content-digest", spec.manifests[0].digest) == spec.manifests[0].digest


def test_get_nonexistent_manifest_is_404(http: ConformanceHTTP, pulled: str) -> None:
    assert http.get_manifest(pulled, NONEXISTENT_MANIFEST).status == 404


@pytest.mark.parametrize("index", [0, 1])
def test_get_manifest_by_digest_is_200(http: ConformanceHTTP, pulled: str, spec: SpecData, index: int) -> None:
    resp = http.get_manifest(pulled, spec.manifests[index].digest, accept=OCI_MANIFEST)
    assert resp.status == 200
    assert resp.body == spec.manifests[index].data
    assert resp.headers["content-type"].split(";")[0] == OCI_MANIFEST


def test_get_manifest_by_tag_is_200(http: ConformanceHTTP, pulled: str, spec: SpecData) -> None:
    resp = http.get_manifest(pulled, TAG, accept=OCI_MANIFEST)
    assert resp.status == 200
    assert resp.body == spec.manifests[0].data


def test_error_body_is_oci_json(http: ConformanceHTTP, pulled: str, known_failure: Callable[[str], None]) -> None:
    """The spec allows 400 or 404 for a malformed reference; a 400 must carry an OCI error body."""
    known_failure("malformed_reference_400")
    resp = http.request(
        "GET", f"/v2/{pulled}/manifests/sha256:totallywrong", {"Content-Type": OCI_MANIFEST}, b"blablabla"
    )
    assert resp.status in (400, 404)
    if resp.status == 400:
        assert error_codes(resp)[0] in ERROR_CODES


def test_malformed_digest_reference_is_400(
    http: ConformanceHTTP, pulled: str, known_failure: Callable[[str], None]
) -> None:
    """Stricter than the spec: a reference that is neither a tag nor a digest is a client error."""
    known_failure("malformed_reference_400")
    resp = http.get_manifest(pulled, "sha256:totallywrong")
    assert resp.status == 400
    assert error_codes(resp)[0] in ERROR_CODES


def test_teardown_deletes_are_accepted(http: ConformanceHTTP, pulled: str, spec: SpecData) -> None:
    for manifest in spec.manifests[:2]:
        resp = http.request("DELETE", f"/v2/{pulled}/manifests/{manifest.digest}")
        assert is_2xx(resp) or resp.status == 405, resp.status
    for blob in (spec.configs[0], spec.configs[1], spec.layer):
        resp = http.request("DELETE", f"/v2/{pulled}/blobs/{blob.digest}")
        assert is_2xx(resp) or resp.status in (404, 405), resp.status
