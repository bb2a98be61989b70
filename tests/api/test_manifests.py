"""Manifests, indexes, tags, catalog and referrers over every storage backend."""

from __future__ import annotations

import io
import json
import os

from tests.api.conftest import error_code, image_manifest, push_blob, push_image, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def test_put_get_head_manifest_by_tag_and_digest(client):
    digest, body = await push_image(client, "img/app", "v1")
    assert digest == sha256(body)
    for ref in ("v1", digest):
        resp = await client.get(f"/v2/img/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert resp.status == 200
        assert await resp.read() == body
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["ETag"] == f'"{digest}"'
        head = await client.head(f"/v2/img/app/manifests/{ref}")
        assert head.status == 200
        assert int(head.headers["Content-Length"]) == len(body)
    resp = await client.get("/v2/img/app/manifests/v1", headers={"If-None-Match": f'"{digest}"'})
    assert resp.status == 304


async def test_accept_headers_in_both_forms(client):
    digest, body = await push_image(client, "acc/x", "t")
    resp = await client.get("/v2/acc/x/manifests/t", headers=[("Accept", DOCKER_MANIFEST), ("Accept", OCI_MANIFEST)])
    assert resp.status == 200
    resp = await client.get("/v2/acc/x/manifests/t", headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    assert resp.status == 200


async def test_docker_schema2_manifest_keeps_exact_bytes(client):
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(500)
    await push_blob(client, "d/s2", config)
    await push_blob(client, "d/s2", layer)
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": sha256(config)},
           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer), "digest": sha256(layer)}]}
    body = json.dumps(doc, indent=3).encode()  # odd formatting must survive byte for byte
    resp = await client.put("/v2/d/s2/manifests/latest", data=body, headers={"Content-Type": DOCKER_MANIFEST})
    assert resp.status == 201
    got = await client.get("/v2/d/s2/manifests/latest")
    assert await got.read() == body
    assert got.headers["Content-Type"] == DOCKER_MANIFEST


async def test_manifest_validation_errors(client):
    config = b"{}"
    await push_blob(client, "v/x", config)
    missing = os.urandom(10)
    body = image_manifest(config, [missing])
    resp = await client.put("/v2/v/x/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
    resp = await client.put("/v2/v/x/manifests/t", data=b"{not json", headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    ok = image_manifest(config, [])
    resp = await client.put("/v2/v/x/manifests/t", data=ok, headers={"Content-Type": DOCKER_MANIFEST})
    assert resp.status == 400  # mediaType (OCI) disagrees with Content-Type (Docker)
    assert await error_code(resp) == "MANIFEST_INVALID"
    resp = await client.put(f"/v2/v/x/manifests/{sha256(b'other')}", data=ok, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    schema1 = json.dumps({"schemaVersion": 1, "name": "v/x", "tag": "t", "fsLayers": []}).encode()
    resp = await client.put("/v2/v/x/manifests/t", data=schema1,
                            headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"})
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    resp = await client.put("/v2/v/x/manifests/bad:tag!", data=ok, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 400


async def test_manifest_size_limit(client):
    big = b"{" + b" " * (4 * 1024 * 1024 + 10) + b"}"
    resp = await client.put("/v2/big/manifests/t", data=io.BytesIO(big), headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 413
    # 4 MiB itself is accepted (well-formed JSON padded with whitespace).
    config = b"{}"
    await push_blob(client, "big", config)
    doc = image_manifest(config, [])
    padded = doc[:-1] + b" " * (4 * 1024 * 1024 - len(doc)) + b"}"
    assert len(padded) == 4 * 1024 * 1024
    resp = await client.put("/v2/big/manifests/t", data=io.BytesIO(padded), headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()


async def test_index_requires_children(client):
    d1, m1 = await push_image(client, "multi", "amd64")
    d2, m2 = await push_image(client, "multi", "arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d1, "size": len(m1), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": d2, "size": len(m2), "platform": {"architecture": "arm64", "os": "linux"}},
    ]}
    body = json.dumps(index).encode()
    resp = await client.put("/v2/multi/manifests/latest", data=body, headers={"Content-Type": OCI_INDEX})
    assert resp.status == 201, await resp.text()
    got = await client.get("/v2/multi/manifests/latest")
    assert got.headers["Content-Type"] == OCI_INDEX
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": sha256(b"missing"), "size": 1})
    resp = await client.put("/v2/multi/manifests/broken", data=json.dumps(index).encode(), headers={"Content-Type": OCI_INDEX})
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_UNKNOWN"
    # Docker manifest list media type is accepted too.
    dl = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": index["manifests"][:2]}
    resp = await client.put("/v2/multi/manifests/dlist", data=json.dumps(dl).encode(), headers={"Content-Type": DOCKER_LIST})
    assert resp.status == 201


async def test_multi_tag_push(client):
    config = b'{"a":1}'
    await push_blob(client, "mt", config)
    body = image_manifest(config, [])
    digest = sha256(body)
    resp = await client.put(f"/v2/mt/manifests/{digest}?tag=a&tag=b&tag=c", data=body,
                            headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    assert sorted(resp.headers.getall("OCI-Tag")) == ["a", "b", "c"]
    tags = await (await client.get("/v2/mt/tags/list")).json()
    assert tags == {"name": "mt", "tags": ["a", "b", "c"]}


async def test_tag_listing_pagination(client):
    config = b'{"p":1}'
    await push_blob(client, "pg", config)
    body = image_manifest(config, [])
    names = ["b", "a", "d", "c", "e1", "e10", "e2"]
    for t in names:
        assert (await client.put(f"/v2/pg/manifests/{t}", data=body, headers={"Content-Type": OCI_MANIFEST})).status == 201
    full = await (await client.get("/v2/pg/tags/list")).json()
    assert full["tags"] == sorted(names)
    resp = await client.get("/v2/pg/tags/list?n=3")
    page = await resp.json()
    assert page["tags"] == ["a", "b", "c"]
    assert 'rel="next"' in resp.headers["Link"]
    assert "last=c" in resp.headers["Link"]
    page2 = await (await client.get("/v2/pg/tags/list?n=3&last=c")).json()
    assert page2["tags"] == ["d", "e1", "e10"]
    last = await client.get("/v2/pg/tags/list?n=10&last=e10")
    assert (await last.json())["tags"] == ["e2"]
    assert "Link" not in last.headers
    assert (await (await client.get("/v2/pg/tags/list?n=0")).json())["tags"] == []
    bad = await client.get("/v2/pg/tags/list?n=-1")
    assert bad.status == 400
    unknown = await client.get("/v2/nothing/here/tags/list")
    assert unknown.status == 404
    assert await error_code(unknown) == "NAME_UNKNOWN"


async def test_catalog_pagination(client):
    for name in ["zeta", "alpha/one", "alpha/two", "beta"]:
        await push_image(client, name, "t")
    cat = await (await client.get("/v2/_catalog")).json()
    assert cat["repositories"] == ["alpha/one", "alpha/two", "beta", "zeta"]
    resp = await client.get("/v2/_catalog?n=2")
    assert (await resp.json())["repositories"] == ["alpha/one", "alpha/two"]
    assert "last=alpha%2Ftwo" in resp.headers["Link"] or "last=alpha/two" in resp.headers["Link"]
    resp = await client.get("/v2/_catalog?n=2&last=alpha/two")
    assert (await resp.json())["repositories"] == ["beta", "zeta"]


async def test_delete_manifest_by_digest_and_by_tag(client):
    digest, _ = await push_image(client, "dm", "one")
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": "one"}).encode()
    # a second tag on the same digest goes away with the digest
    body = (await (await client.get("/v2/dm/manifests/one")).read())
    await client.put("/v2/dm/manifests/two", data=body, headers={"Content-Type": OCI_MANIFEST})
    d3, _ = await push_image(client, "dm", "three", config=config + b" ")
    resp = await client.delete("/v2/dm/manifests/three")
    assert resp.status == 202
    assert (await client.get("/v2/dm/manifests/three")).status == 404
    assert (await client.get(f"/v2/dm/manifests/{d3}")).status == 200  # untag only
    resp = await client.delete(f"/v2/dm/manifests/{digest}")
    assert resp.status == 202
    assert (await client.get(f"/v2/dm/manifests/{digest}")).status == 404
    assert (await client.get("/v2/dm/manifests/one")).status == 404
    tags = await (await client.get("/v2/dm/tags/list")).json()
    assert tags["tags"] == []
    resp = await client.delete(f"/v2/dm/manifests/{digest}")
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"


async def test_referrers(client):
    subject_digest, subject = await push_image(client, "ref", "base")
    empty = b"{}"
    await push_blob(client, "ref", empty)
    sig_blob = b"signature-bytes"
    await push_blob(client, "ref", sig_blob)
    referrer = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(sig_blob), "size": len(sig_blob)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject)},
        "annotations": {"org.example": "yes"},
    }
    body = json.dumps(referrer).encode()
    resp = await client.put(f"/v2/ref/manifests/{sha256(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    assert resp.headers["OCI-Subject"] == subject_digest
    # A second referrer with another artifact type (config media type as type).
    cfg2 = b'{"kind":"sbom"}'
    await push_blob(client, "ref", cfg2)
    ref2 = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example.sbom", "digest": sha256(cfg2), "size": len(cfg2)},
            "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject)}}
    body2 = json.dumps(ref2).encode()
    assert (await client.put(f"/v2/ref/manifests/{sha256(body2)}", data=body2,
                             headers={"Content-Type": OCI_MANIFEST})).status == 201
    resp = await client.get(f"/v2/ref/referrers/{subject_digest}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    index = await resp.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert by_digest[sha256(body)]["artifactType"] == "application/vnd.example.sig"
    assert by_digest[sha256(body)]["annotations"] == {"org.example": "yes"}
    assert by_digest[sha256(body2)]["artifactType"] == "application/vnd.example.sbom"
    assert by_digest[sha256(body)]["size"] == len(body)
    resp = await client.get(f"/v2/ref/referrers/{subject_digest}?artifactType=application/vnd.example.sig")
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in (await resp.json())["manifests"]] == [sha256(body)]
    # Unknown subject: an empty index.
    resp = await client.get(f"/v2/ref/referrers/{sha256(b'nothing')}")
    assert resp.status == 200
    assert (await resp.json())["manifests"] == []
    # Deleting a referrer removes it from the list.
    assert (await client.delete(f"/v2/ref/manifests/{sha256(body)}")).status == 202
    index = await (await client.get(f"/v2/ref/referrers/{subject_digest}")).json()
    assert [m["digest"] for m in index["manifests"]] == [sha256(body2)]
    bad = await client.get("/v2/ref/referrers/sha256:nothex")
    assert bad.status == 400


async def test_manifest_for_missing_subject_is_accepted(client):
    empty = b"{}"
    await push_blob(client, "orphan", empty)
    missing = sha256(b"not pushed")
    ref = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
           "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}}
    body = json.dumps(ref).encode()
    resp = await client.put(f"/v2/orphan/manifests/{sha256(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    index = await (await client.get(f"/v2/orphan/referrers/{missing}")).json()
    assert [m["digest"] for m in index["manifests"]] == [sha256(body)]


async def test_unknown_manifest(client):
    await push_image(client, "um", "t")
    resp = await client.get("/v2/um/manifests/nope")
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"
    resp = await client.get(f"/v2/um/manifests/{sha256(b'x')}")
    assert resp.status == 404


async def test_read_only_mode(app_factory):
    client = await app_factory("  maintenance:\n    readonly:\n      enabled: true\n")
    resp = await client.post("/v2/ro/blobs/uploads/")
    assert resp.status == 405
    assert await error_code(resp) == "UNSUPPORTED"
    assert (await client.get("/v2/")).status == 200


async def test_deletes_disabled(driver, aiohttp_client):
    from registry.app import create_app
    from registry.config import parse_config

    client = await aiohttp_client(create_app(parse_config("version: 0.1\n", environ={}), driver=driver))
    digest, _ = await push_image(client, "nd", "t")
    resp = await client.delete(f"/v2/nd/manifests/{digest}")
    assert resp.status == 405
    assert await error_code(resp) == "UNSUPPORTED"
