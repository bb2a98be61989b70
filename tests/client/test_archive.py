"""berth save / berth load offline: shapes, compression, verification, corruption."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import zstandard

from registry.client.store import Store
from tests.client.conftest import Images, berth, ok


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isreg() else b"") for m in tar}  # type: ignore[union-attr]


def _rewrite(src: Path, dest: Path, change: dict[str, bytes | None], extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
            if m.name in change:
                if change[m.name] is None:
                    continue
                data = change[m.name]
                m.size = len(data)  # type: ignore[arg-type]
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return dest


def test_docker_archive_loads_with_docker_ids(images: Images) -> None:
    out = ok("load", "-i", str(images.small.docker_archive)).out
    assert out.strip() == "Loaded image: berth-test/small:latest"
    store = Store()
    image = store.get("berth-test/small:latest")
    assert store.image_id(image) == store.image_id(store.get(images.small.config.digest))
    assert str(store.image_id(image)) == images.small.config.digest  # docker's image ID
    manifest = store.manifest(image.digest)
    assert [str(d.digest) for d in manifest.layers] == images.small.diff_ids  # layers kept uncompressed
    listing = ok("images").out.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == ["berth-test/small", "latest", images.small.config.digest[7:19]]


def test_oci_archive_keeps_manifest_digests(images: Images) -> None:
    out = ok("load", "-i", str(images.multi_oci_tar)).out
    assert out.strip() == f"Loaded image ID: {images.multi.manifest_digest}"
    store = Store()
    (image,) = store.images()
    assert image.name is None and str(image.digest) == images.multi.manifest_digest
    ok("tag", images.multi.manifest_digest[7:19], "reg.example/multi:1")
    assert [i.name for i in store.images()] == ["reg.example/multi:1"]  # the name replaced the <none> entry


def test_compressed_archives(images: Images, tmp_path: Path) -> None:
    raw = images.small_oci_tar.read_bytes()
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "a.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    for name in ("a.tar.gz", "a.tar.zst"):
        assert images.small.manifest_digest in ok("load", "-i", str(tmp_path / name)).out


def test_save_is_docker_25_shaped_and_roundtrips(images: Images, tmp_path: Path) -> None:
    ok("load", "-i", str(images.small.docker_archive))
    ok("load", "-i", str(images.multi_oci_tar))
    ok("tag", images.multi.manifest_digest, "reg.example/team/multi:2")
    archive = tmp_path / "out.tar"
    ok("save", "-o", str(archive), "berth-test/small", "reg.example/team/multi:2")
    members = _members(archive)
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(members["index.json"])
    names = [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]
    assert names == ["docker.io/berth-test/small:latest", "reg.example/team/multi:2"]
    assert index["manifests"][1]["digest"] == images.multi.manifest_digest
    docker = json.loads(members["manifest.json"])
    assert [e["RepoTags"] for e in docker] == [["berth-test/small:latest"], ["reg.example/team/multi:2"]]
    assert docker[0]["Config"] == f"blobs/sha256/{images.small.config.digest[7:]}"
    for entry in docker:
        for name in [entry["Config"], *entry["Layers"]]:
            assert hashlib.sha256(members[name]).hexdigest() == name.rsplit("/", 1)[1]
    assert "repositories" in members
    blob_names = [n for n in members if n.startswith("blobs/sha256/") and n != "blobs/sha256/"]
    assert len(blob_names) == len(set(blob_names))

    before = {i.name: i.digest for i in Store().images()}
    ok("rmi", "berth-test/small", "reg.example/team/multi:2")
    assert not list((Store().blobs / "sha256").iterdir())
    ok("load", "-i", str(archive))
    assert {i.name: i.digest for i in Store().images()} == before


def test_crane_style_gzip_layers_are_verified_against_diff_ids(images: Images, tmp_path: Path) -> None:
    members = _members(images.small.docker_archive)  # type: ignore[arg-type]
    manifest = json.loads(members["manifest.json"])
    change: dict[str, bytes | None] = {}
    extra: dict[str, bytes] = {}
    layers = []
    for name in manifest[0]["Layers"]:
        compressed = gzip.compress(members[name], mtime=0)
        new = hashlib.sha256(compressed).hexdigest() + ".tar.gz"
        extra[new] = compressed
        change[name] = None
        layers.append(new)
    manifest[0]["Layers"] = layers
    change["manifest.json"] = json.dumps(manifest).encode()
    archive = _rewrite(images.small.docker_archive, tmp_path / "crane.tar", change, extra)  # type: ignore[arg-type]
    ok("load", "-i", str(archive))
    store = Store()
    m = store.manifest(store.get("berth-test/small").digest)
    assert [d.media_type for d in m.layers] == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 3
    assert [d.digest.hex + ".tar.gz" for d in m.layers] == layers


def test_tampered_layer_is_a_digest_mismatch_and_stores_nothing(images: Images, tmp_path: Path) -> None:
    members = _members(images.small.docker_archive)  # type: ignore[arg-type]
    layer = json.loads(members["manifest.json"])[0]["Layers"][1]
    data = bytearray(members[layer])
    data[600] ^= 0xFF
    archive = _rewrite(images.small.docker_archive, tmp_path / "bad.tar", {layer: bytes(data)})  # type: ignore[arg-type]
    result = berth("load", "-i", str(archive))
    assert result.code == 5 and "does not match diff_id" in result.err
    assert Store().images() == []

    oci = _members(images.small_oci_tar)
    blob = f"blobs/sha256/{images.small.layers[0].digest[7:]}"
    bad = bytearray(oci[blob])
    bad[-30] ^= 0xFF
    archive = _rewrite(images.small_oci_tar, tmp_path / "bad-oci.tar", {blob: bytes(bad)})
    result = berth("load", "-i", str(archive))
    assert result.code == 5 and "does not match its digest" in result.err
    assert Store().images() == [] and not list((Store().blobs / "sha256").iterdir())


def test_corrupt_archives_exit_8(images: Images, tmp_path: Path) -> None:
    raw = images.small_oci_tar.read_bytes()
    cases = {
        "truncated.tar": raw[: len(raw) // 2],
        "empty.tar": b"",
        "text.tar": b"hello, this is not a tar archive at all" * 20,
        "truncated.tar.gz": gzip.compress(raw)[:5000],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        result = berth("load", "-i", str(tmp_path / name))
        assert result.code == 8, (name, result)
        assert result.err.startswith("berth: ") and len(result.err.strip().splitlines()) == 1
    missing = _rewrite(images.small_oci_tar, tmp_path / "missing.tar", {f"blobs/sha256/{images.small.config.digest[7:]}": None})
    result = berth("load", "-i", str(missing))
    assert result.code == 8 and "missing" in result.err
    evil = _rewrite(images.small_oci_tar, tmp_path / "evil.tar", {}, {"../../etc/evil": b"x"})
    result = berth("load", "-i", str(evil))
    assert result.code == 8 and "unsafe member name" in result.err
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    result = berth("load", "-i", str(plain))
    assert result.code == 8 and "not an image archive" in result.err
    assert Store().images() == []
    assert berth("load", "-i", str(tmp_path / "nope.tar")).code == 1
