"""Deterministic test images, built offline with tarfile + gzip from seeded random content.

Owns the on-disk form of every image the real-client, interop and benchmark suites push:
an OCI image layout (``oci:DIR:TAG`` for skopeo/podman/buildah) and, for single-platform
images, a docker-archive tar (``docker load``). Guarantees: the same arguments give the same
bytes (fixed mtimes, owners and gzip headers; content from ``random.Random(seed)``), and no
layer is ever held whole in memory.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import pickle
import random
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20
EPOCH = 946684800  # 2000-01-01T00:00:00Z: the mtime of every file in every layer
MAX_FILE = 16 << 20  # a layer's payload is split into files of at most this size


class SeededStream:
    """A read-only stream of ``size`` pseudo-random bytes from ``seed`` (never all in memory)."""

    def __init__(self, seed: int, size: int) -> None:
        self._rng = random.Random(seed)
        self._left = size

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (the rest if ``n`` < 0, in one go: only for small streams)."""
        if n < 0 or n > self._left:
            n = self._left
        self._left -= n
        return self._rng.randbytes(n)


def seeded_chunks(seed: int, size: int, chunk: int = CHUNK) -> Iterable[bytes]:
    """``size`` pseudo-random bytes from ``seed``, as chunks of at most ``chunk`` bytes."""
    stream = SeededStream(seed, size)
    left = size
    while left > 0:
        data = stream.read(min(chunk, left))
        left -= len(data)
        yield data


@dataclass(frozen=True)
class Blob:
    """A content-addressed file in a layout: its descriptor fields and where it lies."""

    digest: str
    size: int
    media_type: str
    path: Path

    def descriptor(self, **extra: object) -> dict[str, object]:
        """The OCI descriptor of this blob (plus ``extra`` fields such as ``platform``)."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass
class BuiltImage:
    """One single-platform image in an OCI layout (and optionally a docker-archive)."""

    name: str
    layout: Path
    tag: str
    manifest: Blob
    config: Blob
    layers: list[Blob]
    diff_ids: list[str]
    platform: dict[str, str]
    docker_archive: Path | None = None

    @property
    def oci_ref(self) -> str:
        """``oci:LAYOUT:TAG`` as skopeo, podman and buildah spell it."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def manifest_digest(self) -> str:
        """The digest of the manifest's bytes."""
        return self.manifest.digest

    @property
    def blobs(self) -> list[Blob]:
        """Config and layers."""
        return [self.config, *self.layers]

    @property
    def total_size(self) -> int:
        """Bytes of config plus layers."""
        return sum(b.size for b in self.blobs)


@dataclass
class BuiltIndex:
    """A multi-platform image: an OCI index in a layout, with one :class:`BuiltImage` per platform."""

    name: str
    layout: Path
    tag: str
    index: Blob
    images: dict[str, BuiltImage] = field(default_factory=dict)

    @property
    def oci_ref(self) -> str:
        """``oci:LAYOUT:TAG``."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def manifest_digest(self) -> str:
        """The digest of the index's bytes."""
        return self.index.digest


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def canonical_json(value: object) -> bytes:
    """Compact, key-sorted JSON bytes (what the layouts store and registries receive)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(layout: Path, data: bytes, media_type: str) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Blob(digest, len(data), media_type, path)


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def write_layer(layout: Path, workdir: Path, size: int, seed: int, prefix: str) -> tuple[Blob, str, Path]:
    """Write one gzip layer of about ``size`` payload bytes; (blob, diff_id, uncompressed tar path)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tar_path = workdir / f"{prefix}-{seed}.tar"
    with open(tar_path, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_tarinfo(f"{prefix}", tarfile.DIRTYPE, 0))
        left, index = size, 0
        while left > 0 or index == 0:
            part = min(left, MAX_FILE)
            info = _tarinfo(f"{prefix}/data-{index:04d}.bin", tarfile.REGTYPE, part)
            tar.addfile(info, SeededStream(seed * 1000 + index, part))
            left -= part
            index += 1
        marker = f"seed={seed} size={size}\n".encode()
        info = _tarinfo(f"{prefix}/MANIFEST.txt", tarfile.REGTYPE, len(marker))
        tar.addfile(info, _BytesReader(marker))
    diff_id = _file_sha256(tar_path)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    tmp = blobs / f".tmp-{prefix}-{seed}"
    with open(tmp, "wb") as raw:
        writer = _HashingWriter(raw)
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=writer, mtime=0, compresslevel=1)
        with gz, open(tar_path, "rb") as src:
            shutil.copyfileobj(src, gz, CHUNK)
    digest = "sha256:" + writer.sha.hexdigest()
    final = blobs / digest.split(":", 1)[1]
    tmp.replace(final)
    return Blob(digest, writer.size, OCI_LAYER_GZIP, final), diff_id, tar_path


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data)
        out, self._data = self._data[:n], self._data[n:]
        return out


def _tarinfo(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _init_layout(layout: Path) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))


def _write_index_json(layout: Path, entries: list[dict[str, object]]) -> None:
    (layout / "index.json").write_bytes(
        canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    )


def _image_into_layout(
    layout: Path,
    workdir: Path,
    name: str,
    layer_sizes: list[int],
    seed: int,
    arch: str,
) -> tuple[Blob, Blob, list[Blob], list[str], list[Path]]:
    layers: list[Blob] = []
    diff_ids: list[str] = []
    tars: list[Path] = []
    for i, size in enumerate(layer_sizes):
        blob, diff_id, tar_path = write_layer(layout, workdir, size, seed * 100 + i, f"{name}-{arch}-l{i}")
        layers.append(blob)
        diff_ids.append(diff_id)
        tars.append(tar_path)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "2000-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"], "Env": [f"BERTH_TEST_IMAGE={name}"], "Labels": {"berth.test.seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2000-01-01T00:00:00Z", "created_by": f"berth tests layer {i}"} for i in range(len(layers))],
    }
    config_blob = _write_blob(layout, canonical_json(config), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
        "annotations": {"org.opencontainers.image.title": name},
    }
    manifest_blob = _write_blob(layout, canonical_json(manifest), OCI_MANIFEST)
    return manifest_blob, config_blob, layers, diff_ids, tars


def build_image(
    dest: Path,
    name: str,
    layer_sizes: list[int],
    seed: int,
    arch: str = "amd64",
    tag: str = "latest",
    docker_archive: bool = True,
) -> BuiltImage:
    """Build a single-platform image under ``dest/name``: OCI layout + docker-archive tar."""
    root = dest / name
    layout = root / "oci"
    work = root / "work"
    _init_layout(layout)
    manifest, config, layers, diff_ids, tars = _image_into_layout(layout, work, name, layer_sizes, seed, arch)
    _write_index_json(layout, [manifest.descriptor(annotations={REF_NAME: tag})])
    image = BuiltImage(name, layout, tag, manifest, config, layers, diff_ids, {"os": "linux", "architecture": arch})
    if docker_archive:
        image.docker_archive = write_docker_archive(root / f"{name}.docker.tar", image, tars, f"berth-test/{name}:{tag}")
    for tar_path in tars:
        tar_path.unlink()
    return image


def write_docker_archive(path: Path, image: BuiltImage, layer_tars: list[Path], repo_tag: str) -> Path:
    """A ``docker save``-format tar of ``image`` (uncompressed layers) that ``docker load`` reads."""
    config_name = image.config.digest.split(":", 1)[1] + ".json"
    layer_names = [f"{diff_id.split(':', 1)[1]}/layer.tar" for diff_id in image.diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add_bytes(tar, config_name, image.config.path.read_bytes())
        for name, tar_path in zip(layer_names, layer_tars):
            tar.addfile(_tarinfo(name.split("/")[0], tarfile.DIRTYPE, 0))
            info = _tarinfo(name, tarfile.REGTYPE, tar_path.stat().st_size)
            with open(tar_path, "rb") as src:
                tar.addfile(info, src)
        _add_bytes(tar, "manifest.json", canonical_json(manifest))
    return path


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, tarfile.REGTYPE, len(data)), _BytesReader(data))


def build_index(dest: Path, name: str, arches: list[str], layer_size: int, seed: int, tag: str = "latest") -> BuiltIndex:
    """Build a multi-platform OCI index (one single-layer image per arch) in one layout."""
    root = dest / name
    layout = root / "oci"
    work = root / "work"
    _init_layout(layout)
    images: dict[str, BuiltImage] = {}
    entries: list[dict[str, object]] = []
    for i, arch in enumerate(arches):
        manifest, config, layers, diff_ids, tars = _image_into_layout(layout, work, name, [layer_size], seed + i, arch)
        for tar_path in tars:
            tar_path.unlink()
        platform = {"os": "linux", "architecture": arch}
        images[arch] = BuiltImage(f"{name}-{arch}", layout, tag, manifest, config, layers, diff_ids, platform)
        entries.append(manifest.descriptor(platform=platform))
    index_doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    index = _write_blob(layout, canonical_json(index_doc), OCI_INDEX)
    _write_index_json(layout, [index.descriptor(annotations={REF_NAME: tag})])
    return BuiltIndex(name, layout, tag, index, images)


@dataclass
class ImageSet:
    """The suite's standard images."""

    one_layer: BuiltImage
    three_layer: BuiltImage
    multi_arch: BuiltIndex

    @property
    def single(self) -> list[BuiltImage]:
        """The single-platform images."""
        return [self.one_layer, self.three_layer]


BIG_LAYER = 100 << 20


def build_standard_images(dest: Path, big_layer: int = BIG_LAYER) -> ImageSet:
    """One-layer (256 KiB), three-layer (64 KiB, ``big_layer`` ~100 MB, 1 MiB), amd64+arm64 index."""
    dest.mkdir(parents=True, exist_ok=True)
    return ImageSet(
        one_layer=build_image(dest, "one-layer", [256 << 10], seed=1),
        three_layer=build_image(dest, "three-layer", [64 << 10, big_layer, 1 << 20], seed=2),
        multi_arch=build_index(dest, "multi-arch", ["amd64", "arm64"], 512 << 10, seed=3),
    )


def _cache_key(big_layer: int) -> str:
    source = Path(__file__).read_bytes()
    return hashlib.sha256(source + str(big_layer).encode()).hexdigest()[:16]


def cached_standard_images(cache_root: Path | None = None, big_layer: int = BIG_LAYER) -> ImageSet:
    """:func:`build_standard_images`, built once per machine and generator version, then reused.

    The cache lives in ``$BERTH_TEST_IMAGE_CACHE`` or the temp dir, keyed by a hash of this
    module's source, and is guarded by a file lock so parallel sessions build it once.
    """
    base = cache_root or Path(os.environ.get("BERTH_TEST_IMAGE_CACHE", Path(tempfile.gettempdir()) / "berth-test-images"))
    base.mkdir(parents=True, exist_ok=True)
    dest = base / _cache_key(big_layer)
    done = dest / "imageset.pickle"
    with open(base / ".lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if done.exists():
                images = pickle.loads(done.read_bytes())
                if isinstance(images, ImageSet) and _intact(images):
                    return images
            shutil.rmtree(dest, ignore_errors=True)
            images = build_standard_images(dest, big_layer)
            done.write_bytes(pickle.dumps(images))
            return images
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _intact(images: ImageSet) -> bool:
    blobs = [b for img in images.single for b in (img.manifest, *img.blobs)]
    blobs += [images.multi_arch.index] + [b for img in images.multi_arch.images.values() for b in (img.manifest, *img.blobs)]
    archives = [img.docker_archive for img in images.single]
    return all(b.path.is_file() and b.path.stat().st_size == b.size for b in blobs) and all(
        a is not None and a.is_file() for a in archives
    )
