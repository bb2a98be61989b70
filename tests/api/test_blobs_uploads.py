"""Blob and upload endpoints over every storage backend."""

from __future__ import annotations

import hashlib
import os

from tests.api.conftest import error_code, push_blob, rel, sha256


async def test_base_endpoint(client):
    resp = await client.get("/v2/")
    assert resp.status == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_monolithic_push_and_pull(client):
    data = os.urandom(300_000)
    digest = await push_blob(client, "lib/app", data)
    head = await client.head(f"/v2/lib/app/blobs/{digest}")
    assert head.status in (200, 307)
    if head.status == 200:
        assert int(head.headers["Content-Length"]) == len(data)
        assert head.headers["Docker-Content-Digest"] == digest
    get = await client.get(f"/v2/lib/app/blobs/{digest}")
    assert get.status == 200
    assert await get.read() == data


async def test_blob_range_requests(client):
    data = os.urandom(10_000)
    digest = await push_blob(client, "r/x", data)
    resp = await client.get(f"/v2/r/x/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert resp.status == 206
    assert await resp.read() == data[100:200]
    resp = await client.get(f"/v2/r/x/blobs/{digest}", headers={"Range": "bytes=20000-"})
    assert resp.status == 416


async def test_streamed_patch_then_put(client):
    data = os.urandom(3 * 1024 * 1024 + 17)
    resp = await client.post("/v2/s/t/blobs/uploads/")
    assert resp.status == 202
    assert resp.headers["Range"] == "0-0"
    assert "OCI-Chunk-Min-Length" in resp.headers
    uuid = resp.headers["Docker-Upload-UUID"]
    location = rel(resp.headers["Location"])

    async def gen():
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    resp = await client.patch(location, data=gen())  # chunked transfer encoding, no Content-Range
    assert resp.status == 202, await resp.text()
    assert resp.headers["Range"] == f"0-{len(data) - 1}"
    assert resp.headers["Docker-Upload-UUID"] == uuid
    location = rel(resp.headers["Location"])
    status = await client.get(location)
    assert status.status == 204
    assert status.headers["Range"] == f"0-{len(data) - 1}"
    digest = sha256(data)
    sep = "&" if "?" in location else "?"
    resp = await client.put(f"{location}{sep}digest={digest}")
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    assert (await (await client.get(f"/v2/s/t/blobs/{digest}")).read()) == data


async def test_chunked_upload_with_content_range_and_out_of_order_chunk(client):
    data = os.urandom(5000)
    resp = await client.post("/v2/c/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    resp = await client.patch(loc, data=data[:2000], headers={"Content-Range": "0-1999",
                                                                "Content-Type": "application/octet-stream"})
    assert resp.status == 202
    loc = rel(resp.headers["Location"])
    # Out of order: skips bytes 2000-2999.
    bad = await client.patch(loc, data=data[3000:], headers={"Content-Range": "3000-4999"})
    assert bad.status == 416
    assert bad.headers["Range"] == "0-1999"
    # Overlapping chunk.
    bad = await client.patch(loc, data=data[1000:2000], headers={"Content-Range": "1000-1999"})
    assert bad.status == 416
    resp = await client.patch(loc, data=data[2000:4000], headers={"Content-Range": "2000-3999"})
    assert resp.status == 202
    loc = rel(resp.headers["Location"])
    digest = sha256(data)
    resp = await client.put(f"{loc}&digest={digest}", data=data[4000:],
                            headers={"Content-Range": "4000-4999"})
    assert resp.status == 201, await resp.text()
    assert await (await client.get(f"/v2/c/blobs/{digest}")).read() == data


async def test_wrong_digest_stores_nothing(client):
    data = b"hello world"
    wrong = sha256(b"something else")
    resp = await client.post(f"/v2/w/blobs/uploads/?digest={wrong}", data=data)
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await client.head(f"/v2/w/blobs/{wrong}")
    assert resp.status == 404
    resp = await client.head(f"/v2/w/blobs/{sha256(data)}")
    assert resp.status == 404


async def test_sha512_digest(client):
    data = os.urandom(4096)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    resp = await client.post(f"/v2/x/blobs/uploads/?digest={digest}", data=data)
    assert resp.status == 201, await resp.text()
    assert await (await client.get(f"/v2/x/blobs/{digest}")).read() == data


async def test_size_mismatch_is_rejected(client):
    resp = await client.post("/v2/sz/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    resp = await client.patch(loc, data=b"abcd", headers={"Content-Range": "0-9"})
    assert resp.status in (400, 416)


async def test_upload_unknown_and_cancel(client):
    resp = await client.get("/v2/u/blobs/uploads/00000000-0000-0000-0000-000000000000")
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UPLOAD_UNKNOWN"
    resp = await client.get("/v2/u/blobs/uploads/..%2F..%2Fetc")
    assert resp.status in (400, 404)
    resp = await client.post("/v2/u/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    assert (await client.delete(loc)).status == 204
    assert (await client.get(loc)).status == 404


async def test_tampered_upload_state_is_rejected(client):
    resp = await client.post("/v2/st/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    other = await client.post("/v2/other/blobs/uploads/")
    other_state = other.headers["Location"].split("_state=")[1]
    bad = loc.split("_state=")[0] + "_state=" + other_state
    resp = await client.patch(bad, data=b"x")
    assert resp.status == 400
    assert await error_code(resp) == "BLOB_UPLOAD_INVALID"


async def test_cross_repository_mount(client):
    data = os.urandom(2048)
    digest = await push_blob(client, "src/repo", data)
    resp = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    assert (await client.head(f"/v2/dst/repo/blobs/{digest}")).status in (200, 307)
    # Not in the source: falls back to a normal upload.
    missing = sha256(b"nope")
    resp = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={missing}&from=src/repo")
    assert resp.status == 202
    # Automatic mount without from.
    resp = await client.post(f"/v2/third/blobs/uploads/?mount={digest}")
    assert resp.status == 201


async def test_blob_is_scoped_to_repository(client):
    digest = await push_blob(client, "a/one", b"scoped")
    assert (await client.head(f"/v2/a/two/blobs/{digest}")).status == 404


async def test_blob_delete(client):
    digest = await push_blob(client, "del/b", b"to delete")
    resp = await client.delete(f"/v2/del/b/blobs/{digest}")
    assert resp.status == 202
    assert (await client.head(f"/v2/del/b/blobs/{digest}")).status == 404
    resp = await client.delete(f"/v2/del/b/blobs/{digest}")
    assert resp.status == 404




async def test_malformed_digest_and_names(client):
    resp = await client.get("/v2/ok/blobs/sha256:xyz")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await client.get("/v2/UPPER/blobs/sha256:" + "a" * 64)
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"
    resp = await client.get("/v2/a/../b/tags/list")
    assert resp.status in (400, 404)
    resp = await client.post("/v2/ok/blobs/uploads/?digest=md5:abc", data=b"x")
    assert resp.status == 400
    long_name = "/".join(["abcdefghij"] * 30)
    resp = await client.get(f"/v2/{long_name}/tags/list")
    assert resp.status == 400


async def test_unknown_route_is_spec_error(client):
    resp = await client.get("/v2/foo/bar/unknown")
    assert resp.status == 404
    body = await resp.json()
    assert "errors" in body
    resp = await client.put("/v2/foo/blobs/" + sha256(b"x"))
    assert resp.status == 405


async def test_forwarded_headers_shape_locations(client):
    resp = await client.post("/v2/fw/blobs/uploads/", headers={"X-Forwarded-Proto": "https",
                                                               "X-Forwarded-Host": "registry.example.com"})
    assert resp.headers["Location"].startswith("https://registry.example.com/v2/fw/blobs/uploads/")
    resp = await client.post("/v2/fw/blobs/uploads/", headers={"X-Forwarded-Host": "evil.example/path?x"})
    assert resp.headers["Location"].startswith("http://127.0.0.1")


async def test_tls_handshake_on_plain_port_gets_a_quick_400(client):
    """Go clients probe with TLS first and fall back to HTTP when they get a 400 back at once."""
    import asyncio
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    writer.write(outgoing.read())  # the ClientHello
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), timeout=2)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400")


async def test_small_put_after_post_is_verified(client):
    """POST then PUT with the whole (small) body: verified in memory before it is stored."""
    data = os.urandom(4096)
    resp = await client.post("/v2/fast/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    bad = await client.put(f"{loc}&digest={sha256(b'other')}", data=data)
    assert bad.status == 400
    assert await error_code(bad) == "DIGEST_INVALID"
    assert (await client.head(f"/v2/fast/blobs/{sha256(data)}")).status == 404
    assert (await client.get(loc)).status == 404  # a failed completion ends the upload
    resp = await client.post("/v2/fast/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    ok = await client.put(f"{loc}&digest={sha256(data)}", data=data)
    assert ok.status == 201
    assert await (await client.get(f"/v2/fast/blobs/{sha256(data)}")).read() == data
    # A body just above the in-memory limit takes the streaming path and is verified too.
    big = os.urandom(1024 * 1024 + 1)
    resp = await client.post("/v2/fast/blobs/uploads/")
    loc = rel(resp.headers["Location"])
    assert (await client.put(f"{loc}&digest={sha256(big)}", data=big)).status == 201
    resp = await client.post(f"/v2/fast/blobs/uploads/?digest={sha256(b'x' + big)}", data=big)
    assert resp.status == 400
