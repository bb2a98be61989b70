"""Conformance, content discovery: tag listing with ``n``/``last`` pagination, and the referrers API
(unfiltered, filtered by ``artifactType``, for a subject that was never pushed, for a missing digest)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.conformance.client import ConformanceHTTP
from tests.conformance.spec import (
    ANNOTATION_KEY,
    ARTIFACT_TYPE_A,
    DUMMY_DIGEST,
    OCI_INDEX,
    SpecData,
    is_2xx,
    put_manifest,
    upload,
    with_query,
)
from tests.realclients.checks import Response

TAGS = ["test0", "test1", "test2", "test3"]


@dataclass
class Discovered:
    """The workflow's namespace and the answers to the referrer PUTs (name -> response)."""

    repo: str
    puts: dict[str, Response]


@pytest.fixture(scope="module")
def discovered(http: ConformanceHTTP, spec: SpecData, namespace: str) -> Discovered:
    """Setup: tags test0..3, then the referrers graph around manifest 4 (some pushed before it)."""
    upload(http, namespace, spec.configs[2])
    upload(http, namespace, spec.layer)
    for tag in TAGS:
        assert is_2xx(put_manifest(http, namespace, tag, spec.manifests[2]))
    puts: dict[str, Response] = {}
    upload(http, namespace, spec.empty_json)
    upload(http, namespace, spec.ref_blob_a)
    # Referrers pushed before their subject exists.
    for name in ("a_config", "a_layer", "index"):
        puts[name] = put_manifest(http, namespace, spec.refs[name].digest, spec.refs[name])
    upload(http, namespace, spec.configs[4])
    assert is_2xx(put_manifest(http, namespace, "tagtest0", spec.manifests[4]))
    upload(http, namespace, spec.ref_blob_b)
    for name in ("b_config", "b_layer", "c_layer"):
        puts[name] = put_manifest(http, namespace, spec.refs[name].digest, spec.refs[name])
    for name, resp in puts.items():
        assert is_2xx(resp), f"PUT referrer {name}: {resp.status} {resp.body[:300]!r}"
    return Discovered(namespace, puts)


def _tags(resp: Response) -> list[str]:
    assert resp.status == 200, resp.body
    return list(resp.json().get("tags") or [])


def test_list_tags(http: ConformanceHTTP, discovered: Discovered) -> None:
    resp = http.request("GET", f"/v2/{discovered.repo}/tags/list")
    assert resp.json()["name"] == discovered.repo
    assert sorted(_tags(resp)) == sorted([*TAGS, "tagtest0"])


def test_tags_limited_by_n(http: ConformanceHTTP, discovered: Discovered, known_failure: Callable[[str], None]) -> None:
    known_failure("tag_pagination")
    every = _tags(http.request("GET", f"/v2/{discovered.repo}/tags/list"))
    half = len(every) // 2
    assert len(_tags(http.request("GET", with_query(f"/v2/{discovered.repo}/tags/list", n=str(half))))) == half


def test_tags_paginated_with_last(
    http: ConformanceHTTP, discovered: Discovered, known_failure: Callable[[str], None]
) -> None:
    """Pages of ``n`` in lexical order; ``last`` starts after the given tag; Link points to the next page."""
    known_failure("tag_pagination")
    every = sorted(_tags(http.request("GET", f"/v2/{discovered.repo}/tags/list")))
    half = len(every) // 2
    first = http.request("GET", with_query(f"/v2/{discovered.repo}/tags/list", n=str(half)))
    assert _tags(first) == every[:half]
    assert "rel=\"next\"" in first.headers.get("link", "")
    second = _tags(http.request("GET", with_query(f"/v2/{discovered.repo}/tags/list", n=str(half), last=every[half - 1])))
    assert second == every[half : 2 * half]
    rest = _tags(http.request("GET", with_query(f"/v2/{discovered.repo}/tags/list", last=every[half - 1])))
    assert rest == every[half:]


def test_put_with_subject_answers_oci_subject(
    discovered: Discovered, spec: SpecData, known_failure: Callable[[str], None]
) -> None:
    known_failure("referrers")
    for name, resp in discovered.puts.items():
        expected = spec.manifests[3 if name == "c_layer" else 4].digest
        assert resp.headers.get("oci-subject") == expected, name


def _referrers(http: ConformanceHTTP, repo: str, digest: str, **query: str) -> tuple[Response, list[dict[str, object]]]:
    path = f"/v2/{repo}/referrers/{digest}"
    resp = http.request("GET", with_query(path, **query) if query else path)
    assert resp.status == 200, resp.body[:300]
    assert resp.headers.get("content-type", "").split(";")[0] == OCI_INDEX
    doc = json.loads(resp.body)
    assert doc.get("schemaVersion") == 2 and doc.get("mediaType") == OCI_INDEX
    return resp, list(doc.get("manifests") or [])


def test_referrers_of_unknown_digest_is_empty_index(
    http: ConformanceHTTP, discovered: Discovered, known_failure: Callable[[str], None]
) -> None:
    known_failure("referrers")
    _, manifests = _referrers(http, discovered.repo, DUMMY_DIGEST)
    assert manifests == []


def test_referrers_lists_every_referrer_with_annotations(
    http: ConformanceHTTP, discovered: Discovered, spec: SpecData, known_failure: Callable[[str], None]
) -> None:
    known_failure("referrers")
    _, manifests = _referrers(http, discovered.repo, spec.manifests[4].digest)
    expected = {spec.refs[n].digest for n in ("a_config", "a_layer", "b_config", "b_layer", "index")}
    assert {m["digest"] for m in manifests} == expected
    assert len(manifests) == 5
    for entry in manifests:
        assert entry["annotations"] == {ANNOTATION_KEY: spec.annotations[str(entry["digest"])]}
        ref = next(c for c in spec.refs.values() if c.digest == entry["digest"])
        assert entry["size"] == len(ref.data) and entry["mediaType"] == ref.media_type
        assert entry.get("artifactType"), entry


def test_referrers_filtered_by_artifact_type(
    http: ConformanceHTTP, discovered: Discovered, spec: SpecData, known_failure: Callable[[str], None]
) -> None:
    known_failure("referrers")
    resp, manifests = _referrers(http, discovered.repo, spec.manifests[4].digest, artifactType=ARTIFACT_TYPE_A)
    assert resp.headers.get("oci-filters-applied") == "artifactType"
    assert {m["digest"] for m in manifests} == {spec.refs["a_config"].digest, spec.refs["a_layer"].digest}
    assert all(m["artifactType"] == ARTIFACT_TYPE_A for m in manifests)


def test_referrers_of_a_subject_never_pushed(
    http: ConformanceHTTP, discovered: Discovered, spec: SpecData, known_failure: Callable[[str], None]
) -> None:
    known_failure("referrers")
    _, manifests = _referrers(http, discovered.repo, spec.manifests[3].digest)
    assert [m["digest"] for m in manifests] == [spec.refs["c_layer"].digest]


def test_teardown_deletes(http: ConformanceHTTP, discovered: Discovered, spec: SpecData) -> None:
    for content in [*spec.refs.values(), spec.manifests[2], spec.manifests[4]]:
        resp = http.request("DELETE", f"/v2/{discovered.repo}/manifests/{content.digest}")
        assert is_2xx(resp) or resp.status in (404, 405), resp.status
    for content in (spec.configs[2], spec.configs[4], spec.layer, spec.empty_json, spec.ref_blob_a, spec.ref_blob_b):
        resp = http.request("DELETE", f"/v2/{discovered.repo}/blobs/{content.digest}")
        assert is_2xx(resp) or resp.status in (404, 405), resp.status
