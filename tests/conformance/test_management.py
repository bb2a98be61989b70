"""Conformance, content management: delete a tag, delete a manifest by digest, delete blobs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conformance.client import ConformanceHTTP
from tests.conformance.spec import (
    OCI_MANIFEST,
    SpecData,
    error_codes,
    is_2xx,
    put_manifest,
    upload,
)

TAG = "tagtest0"
OTHER_TAG = "keepme"


@pytest.fixture(scope="module")
def managed(http: ConformanceHTTP, spec: SpecData, namespace: str) -> str:
    """Setup: config 3, the layer, manifest 3 under two tags."""
    upload(http, namespace, spec.configs[3])
    upload(http, namespace, spec.layer)
    assert is_2xx(put_manifest(http, namespace, TAG, spec.manifests[3]))
    assert is_2xx(put_manifest(http, namespace, OTHER_TAG, spec.manifests[3]))
    return namespace


def _tags(http: ConformanceHTTP, repo: str) -> list[str]:
    resp = http.request("GET", f"/v2/{repo}/tags/list")
    if resp.status == 404:
        return []
    assert resp.status == 200, resp.body
    return list(resp.json().get("tags") or [])


def test_delete_tag(http: ConformanceHTTP, managed: str, spec: SpecData, known_failure: Callable[[str], None]) -> None:
    """DELETE /manifests/<tag> removes that tag only (202); the spec also allows 400 UNSUPPORTED or 405."""
    known_failure("tag_delete")
    before = _tags(http, managed)
    resp = http.request("DELETE", f"/v2/{managed}/manifests/{TAG}")
    assert resp.status in (202, 400, 405), resp.body
    if resp.status == 400:
        assert error_codes(resp)[0] == "UNSUPPORTED"
    assert resp.status == 202, "Berth and the spec's preferred behaviour: tag deletes are supported"
    assert sorted(_tags(http, managed)) == sorted(t for t in before if t != TAG)
    assert http.get_manifest(managed, TAG).status == 404
    assert http.get_manifest(managed, OTHER_TAG, accept=OCI_MANIFEST).status == 200
    assert http.get_manifest(managed, spec.manifests[3].digest, accept=OCI_MANIFEST).status == 200


def test_delete_manifest_by_digest(
    http: ConformanceHTTP, managed: str, spec: SpecData, known_failure: Callable[[str], None]
) -> None:
    known_failure("s3_tag_listing_after_delete")
    before = _tags(http, managed)
    resp = http.request("DELETE", f"/v2/{managed}/manifests/{spec.manifests[3].digest}")
    assert resp.status in (202, 404), resp.body
    assert http.get_manifest(managed, spec.manifests[3].digest).status == 404
    after = _tags(http, managed)
    assert len(after) < len(before) or not before
    assert OTHER_TAG not in after
    assert http.get_manifest(managed, OTHER_TAG).status == 404


def test_delete_blobs(http: ConformanceHTTP, managed: str, spec: SpecData) -> None:
    for content in (spec.configs[3], spec.layer):
        resp = http.request("DELETE", f"/v2/{managed}/blobs/{content.digest}")
        assert resp.status in (202, 404, 405), resp.body
        assert resp.status == 202, "deletes are enabled in this configuration"
    fetched = http.request("GET", f"/v2/{managed}/blobs/{spec.configs[3].digest}")
    assert fetched.status == 404
    assert "BLOB_UNKNOWN" in error_codes(fetched)
    again = http.request("DELETE", f"/v2/{managed}/blobs/{spec.configs[3].digest}")
    assert again.status == 404


def test_delete_unknown_manifest_is_404(http: ConformanceHTTP, managed: str) -> None:
    resp = http.request("DELETE", f"/v2/{managed}/manifests/sha256:{'ab' * 32}")
    assert resp.status == 404
    assert "MANIFEST_UNKNOWN" in error_codes(resp)
