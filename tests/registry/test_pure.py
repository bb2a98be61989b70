"""Pure modules: digests, references, manifests, the storage layout and the URL grammar."""

from __future__ import annotations

import json

import pytest

from registry import layout
from registry.digest import Digest, InvalidDigest
from registry.manifest import ManifestError, parse_manifest
from registry.reference import InvalidReference, is_valid_name, is_valid_tag, parse_reference
from registry.routes import Kind, match

HEX = "a" * 64


def test_digest_parsing():
    d = Digest.parse(f"sha256:{HEX}")
    assert (d.algorithm, d.hex, str(d)) == ("sha256", HEX, f"sha256:{HEX}")
    assert Digest.parse("sha512:" + "b" * 128).algorithm == "sha512"
    for bad in ["sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "sha256", "", "sha256:" + "g" * 64,
                "sha256:../" + "a" * 61, "sha512:" + "a" * 64]:
        with pytest.raises(InvalidDigest):
            Digest.parse(bad)
    assert Digest.from_bytes(b"").hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("name", ["a", "library/ubuntu", "a.b/c-d/e__f", "x" * 255, "a/b/c/d/e/f", "foo--bar"])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "A", "a//b", "/a", "a/", "../a", "a/../b", "a/.b", "_a", "a/_layers",
                                  "a:b", "a b", "a%2Fb", "x" * 256, "a/-b", "a..b"])
def test_invalid_names(name):
    assert not is_valid_name(name)


def test_tags():
    assert is_valid_tag("v1.2.3-rc_1")
    assert is_valid_tag("_x")
    assert not is_valid_tag("-x")
    assert not is_valid_tag(".x")
    assert not is_valid_tag("a" * 129)
    assert not is_valid_tag("a/b")
    assert not is_valid_tag("..")


@pytest.mark.parametrize(
    "text, registry, repo, tag",
    [
        ("busybox", "docker.io", "library/busybox", "latest"),
        ("user/app:1", "docker.io", "user/app", "1"),
        ("localhost:5000/a/b:c", "localhost:5000", "a/b", "c"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest"),
        ("ghcr.io/o/r:t", "ghcr.io", "o/r", "t"),
        ("localhost/x:y", "localhost", "x", "y"),
    ],
)
def test_parse_reference(text, registry, repo, tag):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repo, tag)


def test_parse_reference_with_digest():
    ref = parse_reference(f"reg.example:443/a/b@sha256:{HEX}")
    assert ref.digest is not None and ref.tag is None and ref.identifier == f"sha256:{HEX}"
    for bad in ["UPPER/x", "a:b:c", "x@sha256:abc", "", " x", "host:port/x"]:
        with pytest.raises(InvalidReference):
            parse_reference(bad)


def test_layout_paths_and_validation():
    d = Digest.parse(f"sha256:{HEX}")
    assert layout.blob_data(d) == f"/docker/registry/v2/blobs/sha256/aa/{HEX}/data"
    assert layout.layer_link("a/b", d) == f"/docker/registry/v2/repositories/a/b/_layers/sha256/{HEX}/link"
    assert layout.tag_current_link("a", "v1") == "/docker/registry/v2/repositories/a/_manifests/tags/v1/current/link"
    with pytest.raises(InvalidReference):
        layout.repository("../etc")
    with pytest.raises(InvalidReference):
        layout.tag_dir("a", "../../x")
    with pytest.raises(layout.InvalidUploadId):
        layout.upload_dir("a", "../x")
    assert layout.digest_from_link_path(f"/x/_layers/sha256/{HEX}/link") == d


def test_routes():
    assert match("/v2/") .kind is Kind.BASE
    assert match("/v2/_catalog").kind is Kind.CATALOG
    r = match("/v2/a/b/blobs/uploads/")
    assert (r.kind, r.name) == (Kind.UPLOAD_START, "a/b")
    r = match("/v2/a/b/blobs/uploads/123")
    assert (r.kind, r.name, r.reference) == (Kind.UPLOAD, "a/b", "123")
    r = match("/v2/a/manifests/blobs")  # a tag named like a path word
    assert (r.kind, r.name, r.reference) == (Kind.MANIFEST, "a", "blobs")
    r = match("/v2/x/blobs/y/tags/list")
    assert (r.kind, r.name) == (Kind.TAGS, "x/blobs/y")
    assert match("/v2/a/unknown") is None
    assert match("/other") is None


def _manifest(**over):
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{HEX}", "size": 2},
           "layers": []}
    doc.update(over)
    return json.dumps(doc).encode()


def test_manifest_parsing():
    m = parse_manifest(_manifest())
    assert m.config is not None and m.layers == () and not m.is_index
    with pytest.raises(ManifestError):
        parse_manifest(_manifest(schemaVersion=1))
    with pytest.raises(ManifestError):
        parse_manifest(_manifest(config={"digest": "nope", "size": 1, "mediaType": "x"}))
    with pytest.raises(ManifestError):
        parse_manifest(_manifest(layers=[{"mediaType": "x", "digest": f"sha256:{HEX}", "size": -1}]))
    with pytest.raises(ManifestError):
        parse_manifest(b"[]")
    with pytest.raises(ManifestError):
        parse_manifest(_manifest(), "application/vnd.docker.distribution.manifest.v2+json")
    idx = parse_manifest(json.dumps({"schemaVersion": 2, "manifests": []}).encode())
    assert idx.is_index
    art = parse_manifest(_manifest(artifactType="application/x"))
    assert art.effective_artifact_type == "application/x"
    foreign = parse_manifest(_manifest(layers=[{"mediaType": "x", "digest": f"sha256:{'b' * 64}", "size": 1,
                                                "urls": ["https://example.com/layer"]}]))
    assert [b.digest.hex for b in foreign.blobs] == [HEX]
