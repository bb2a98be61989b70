"""``berth save`` / ``berth load``: image tars in the shapes docker, podman, skopeo and crane use.

``save`` writes Docker 25's shape, which every tool reads: an OCI image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/…``) plus Docker's
``manifest.json`` and ``repositories``. Blobs are written as stored, so
manifest digests survive save → load → push.

``load`` reads, plain or compressed with gzip, zstd, bzip2 or xz:

* OCI layouts (``docker save`` since 25, ``podman save --format oci-archive``,
  ``skopeo copy … oci-archive:``, crane/``berth save``): blobs are kept as they are;
* Docker archives (``docker save`` before 25, ``podman save``, ``skopeo copy …
  docker-archive:``, ``crane save``): a manifest is built from ``manifest.json``
  (an OCI manifest; layers keep their bytes, so an uncompressed layer's digest is
  its diff ID and the config digest is docker's image ID).

Guarantees: the archive is read as a stream (stdin works), each member is
staged to disk while hashed, never held in memory; every blob is checked
against its digest and size, every docker-archive layer against the config's
``diff_ids``; nothing enters the store unless the whole archive verified.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import tarfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterator

import zstandard

from registry import mediatypes as mt
from registry.client.errors import ArchiveError, ClientError, DigestMismatch
from registry.client.platforms import Platform, default_platform
from registry.client.store import NAME_ANNOTATION, TAG_ANNOTATION, Image, Store, local_name
from registry.digest import Digest
from registry.manifest import Descriptor, ManifestError, parse_manifest
from registry.reference import InvalidReference, Reference, parse_reference

COPY_CHUNK = 1024 * 1024
_HEX64 = re.compile(r"([0-9a-f]{64})")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"


# Compression -------------------------------------------------------------------------------

def sniff(head: bytes) -> str:
    """``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``none`` from a stream's first bytes."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    return "none"


def decompressed(stream: IO[bytes], kind: str) -> IO[bytes]:
    """A reader yielding the decompressed bytes of ``stream``."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(stream)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(stream)  # type: ignore[return-value]
    return stream


class _Peekable(io.RawIOBase):
    """Wraps a non-seekable stream so its first bytes can be sniffed and then re-read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._stream.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


# Save --------------------------------------------------------------------------------------

@dataclass
class SaveItem:
    """One image to save and the names to give it."""

    image: Image
    names: list[Reference] = field(default_factory=list)


def _tarinfo(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def _docker_manifest_for(store: Store, image: Image) -> Descriptor | None:
    """The image manifest ``manifest.json`` describes for a stored entry (a platform child for an index)."""
    if not image.is_index:
        return image.descriptor
    index = store.manifest(image.digest, image.descriptor.media_type)
    present = [c for c in index.manifests if c.media_type in mt.IMAGE_MANIFESTS and store.has_blob(c.digest)
               and c.platform and (c.platform.get("os") != "unknown")]
    wanted = default_platform()
    for c in present:
        if c.platform and wanted.matches(Platform.from_json(c.platform)):
            return c
    return present[0] if present else None


def save(store: Store, items: list[SaveItem], out: IO[bytes], *, compress: bool = False) -> None:
    """Write one archive with every item (Docker 25 shape) to ``out``, streaming."""
    sink: IO[bytes] = out
    gz: gzip.GzipFile | None = None
    if compress:
        gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0)
        sink = gz  # type: ignore[assignment]
    blobs: list[Digest] = []
    seen: set[Digest] = set()
    index_entries: list[dict[str, Any]] = []
    docker_entries: dict[Digest, dict[str, Any]] = {}
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        for d in sorted(store.reachable([item.image.descriptor]), key=str):
            if store.has_blob(d) and d not in seen:
                seen.add(d)
                blobs.append(d)
        names = item.names or [None]  # type: ignore[list-item]
        for ref in names:
            annotations: dict[str, str] = {}
            if ref is not None:
                annotations[NAME_ANNOTATION] = str(ref)
                if ref.tag and not ref.digest:
                    annotations[TAG_ANNOTATION] = ref.tag
            entry = Descriptor(item.image.descriptor.media_type, item.image.digest, item.image.descriptor.size,
                               platform=item.image.descriptor.platform, annotations=annotations or None).to_json()
            if entry not in index_entries:
                index_entries.append(entry)
        target = _docker_manifest_for(store, item.image)
        if target is None:
            continue
        manifest = store.manifest(target.digest, target.media_type)
        if manifest.config is None:
            continue
        dentry = docker_entries.setdefault(target.digest, {
            "Config": f"blobs/{manifest.config.digest.algorithm}/{manifest.config.digest.hex}",
            "RepoTags": [],
            "Layers": [f"blobs/{d.digest.algorithm}/{d.digest.hex}" for d in manifest.layers],
        })
        for ref in item.names:
            if ref.digest is None:
                familiar = ref.familiar()
                if familiar not in dentry["RepoTags"]:
                    dentry["RepoTags"].append(familiar)
                if manifest.layers:
                    repo_name = familiar.rsplit(":", 1)[0]
                    repositories.setdefault(repo_name, {})[ref.tag or "latest"] = manifest.layers[-1].digest.hex
    try:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for directory in ("blobs/", "blobs/sha256/"):
                tar.addfile(_tarinfo(directory, 0, directory=True))
            for d in blobs:
                size = store.blob_size(d)
                with store.open_blob(d) as f:
                    tar.addfile(_tarinfo(f"blobs/{d.algorithm}/{d.hex}", size), f)
            small = {
                "oci-layout": json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode(),
                "index.json": json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries},
                                         separators=(",", ":")).encode(),
                "manifest.json": json.dumps(list(docker_entries.values()), separators=(",", ":")).encode(),
            }
            if repositories:
                small["repositories"] = json.dumps(repositories, separators=(",", ":")).encode()
            for name, data in small.items():
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        if gz is not None:
            gz.close()
        out.flush()
    except BrokenPipeError:
        raise ClientError("the output was closed before the archive was complete") from None


# Load --------------------------------------------------------------------------------------

@dataclass
class _Member:
    path: Path
    sha256: str
    size: int
    head: bytes


@dataclass
class LoadResult:
    """What a load added: the names (or image IDs of unnamed images)."""

    names: list[str]
    unnamed: list[Digest]


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts:
        raise ArchiveError(f"corrupt archive: unsafe member name {name!r}")
    return "/".join(parts)


class _Staged:
    """Archive members staged in a private directory of the store."""

    def __init__(self, store: Store) -> None:
        self.dir = store.tmp / f"load-{uuid.uuid4().hex}"
        self.dir.mkdir(parents=True)
        self.files: dict[str, _Member] = {}
        self.links: dict[str, str] = {}

    def add(self, name: str, reader: IO[bytes]) -> None:
        path = self.dir / f"{len(self.files):06d}"
        h = hashlib.sha256()
        size = 0
        head = b""
        with open(path, "wb") as f:
            while chunk := reader.read(COPY_CHUNK):
                if len(head) < 8:
                    head += chunk[: 8 - len(head)]
                h.update(chunk)
                f.write(chunk)
                size += len(chunk)
        self.files[name] = _Member(path, h.hexdigest(), size, head)

    def get(self, name: str) -> _Member | None:
        name = _safe_name(name)
        for _ in range(16):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                return None
            name = self.links[name]
        return None

    def need(self, name: str, what: str) -> _Member:
        member = self.get(name)
        if member is None:
            raise ArchiveError(f"corrupt archive: {what} {name!r} is missing")
        return member

    def read(self, name: str, what: str, limit: int = 64 * 1024 * 1024) -> bytes:
        member = self.need(name, what)
        if member.size > limit:
            raise ArchiveError(f"corrupt archive: {what} {name!r} is implausibly large")
        return member.path.read_bytes()

    def json(self, name: str, what: str) -> Any:
        try:
            return json.loads(self.read(name, what))
        except ValueError:
            raise ArchiveError(f"corrupt archive: {what} {name!r} is not valid JSON") from None

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _stage(store: Store, source: IO[bytes]) -> _Staged:
    peek = source.peek(8) if hasattr(source, "peek") else b""  # type: ignore[union-attr]
    raw: IO[bytes] = source
    if len(peek) < 8:
        wrapper = _Peekable(source)
        peek = wrapper.peek(8)
        raw = io.BufferedReader(wrapper, buffer_size=COPY_CHUNK)  # type: ignore[arg-type]
    if not peek:
        raise ArchiveError("corrupt archive: the input is empty")
    stream = decompressed(raw, sniff(peek[:8]))
    staged = _Staged(store)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = _safe_name(member.name)
                if not name:
                    continue
                if member.isreg():
                    reader = tar.extractfile(member)
                    if reader is None:
                        continue
                    staged.add(name, reader)
                elif member.issym():
                    target = member.linkname
                    joined = target if target.startswith("/") else str(PurePosixPath(name).parent / target)
                    staged.links[name] = os.path.normpath(joined).lstrip("/")
                elif member.islnk():
                    staged.links[name] = _safe_name(member.linkname)
        if not staged.files:
            raise ArchiveError("corrupt archive: it contains no files")
    except ArchiveError:
        staged.cleanup()
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, zstandard.ZstdError, lzma.LZMAError, ValueError) as exc:
        staged.cleanup()
        detail = str(exc) or exc.__class__.__name__
        raise ArchiveError(f"corrupt archive: {detail}") from None
    except BaseException:
        staged.cleanup()
        raise
    return staged


def _file_digest(member: _Member, algorithm: str) -> str:
    if algorithm == "sha256":
        return member.sha256
    h = hashlib.new(algorithm)
    with open(member.path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _uncompressed_digest(member: _Member) -> tuple[str, str]:
    """(compression, sha256 of the uncompressed bytes) of a staged layer."""
    kind = sniff(member.head)
    if kind == "none":
        return kind, member.sha256
    h = hashlib.sha256()
    try:
        with open(member.path, "rb") as raw:
            reader = decompressed(raw, kind)
            while chunk := reader.read(COPY_CHUNK):
                h.update(chunk)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError, lzma.LZMAError) as exc:
        raise ArchiveError(f"corrupt archive: a {kind} layer cannot be decompressed ({exc})") from None
    return kind, h.hexdigest()


_LAYER_TYPES = {"none": mt.OCI_LAYER, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


class _Loader:
    def __init__(self, store: Store, staged: _Staged) -> None:
        self.store = store
        self.staged = staged
        self.blob_files: dict[Digest, Path] = {}
        self.new_manifests: dict[Digest, bytes] = {}
        self.names: list[tuple[str | None, Descriptor]] = []

    def blob(self, desc: Descriptor, *, optional: bool = False) -> _Member | None:
        d = desc.digest
        member = self.staged.get(f"blobs/{d.algorithm}/{d.hex}")
        if member is None:
            if optional or self.store.has_blob(d):
                return None
            raise ArchiveError(f"corrupt archive: blob {d} is referenced but missing")
        if member.size != desc.size:
            raise DigestMismatch(f"digest mismatch: blob {d} in the archive is {member.size} bytes, its descriptor says {desc.size}")
        if _file_digest(member, d.algorithm) != d.hex:
            raise DigestMismatch(f"digest mismatch: blob {d} in the archive does not match its digest")
        self.blob_files[d] = member.path
        return member

    def walk(self, desc: Descriptor, depth: int = 0) -> None:
        optional_child = depth > 0 and desc.media_type in mt.MANIFESTS
        member = self.blob(desc, optional=optional_child)
        if desc.media_type not in mt.MANIFESTS:
            return
        if member is None:
            if depth == 0 and not self.store.has_blob(desc.digest):
                raise ArchiveError(f"corrupt archive: manifest {desc.digest} is missing")
            return
        if member.size > 4 * 1024 * 1024:
            raise ArchiveError(f"corrupt archive: manifest {desc.digest} is implausibly large")
        try:
            m = parse_manifest(member.path.read_bytes(), desc.media_type)
        except ManifestError as exc:
            raise ArchiveError(f"corrupt archive: manifest {desc.digest} is invalid ({exc})") from None
        for child in m.manifests:
            self.walk(child, depth + 1)
        if m.config is not None:
            self.walk(m.config, depth + 1)
        for layer in m.layers:
            if not layer.urls:
                self.walk(layer, depth + 1)

    def load_oci(self) -> None:
        index = self.staged.json("index.json", "index")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise ArchiveError("corrupt archive: index.json has no manifests list")
        tags_by_config: dict[str, list[str]] = {}
        if self.staged.get("manifest.json") is not None:
            for entry in self._docker_manifest():
                cfg = _HEX64.search(str(entry.get("Config") or ""))
                if cfg:
                    tags_by_config.setdefault(cfg.group(1), []).extend(str(t) for t in entry.get("RepoTags") or [])
        for i, raw in enumerate(index["manifests"]):
            try:
                desc = parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [raw]}).encode(),
                                      mt.OCI_INDEX).manifests[0]
            except ManifestError as exc:
                raise ArchiveError(f"corrupt archive: index.json entry {i} is invalid ({exc})") from None
            self.walk(desc)
            annotations = desc.annotations or {}
            names: list[str] = []
            full = annotations.get(NAME_ANNOTATION)
            ref_name = annotations.get(TAG_ANNOTATION, "")
            if full:
                names.append(full)
            elif ref_name and ("/" in ref_name or ":" in ref_name):
                names.append(ref_name)
            elif desc.media_type in mt.IMAGE_MANIFESTS:
                m = parse_manifest(self.staged.need(f"blobs/{desc.digest.algorithm}/{desc.digest.hex}", "manifest").path.read_bytes(),
                                   desc.media_type)
                if m.config is not None:
                    names.extend(tags_by_config.get(m.config.digest.hex, []))
            clean = Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform)
            if not names:
                self.names.append((None, clean))
            for n in names:
                self.names.append((_normalize(n), clean))

    def _docker_manifest(self) -> list[dict[str, Any]]:
        doc = self.staged.json("manifest.json", "manifest.json")
        if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
            raise ArchiveError("corrupt archive: manifest.json must be a list of objects")
        return doc

    def load_docker(self) -> None:
        for i, entry in enumerate(self._docker_manifest()):
            config_name = entry.get("Config")
            layers = entry.get("Layers")
            if not isinstance(config_name, str) or not isinstance(layers, list):
                raise ArchiveError(f"corrupt archive: manifest.json entry {i} lacks Config or Layers")
            config_member = self.staged.need(config_name, "image config")
            expected = _HEX64.search(PurePosixPath(config_name).name)
            if expected and expected.group(1) != config_member.sha256:
                raise DigestMismatch(f"digest mismatch: image config {config_name} does not match its digest")
            config = self.staged.json(config_name, "image config")
            diff_ids = ((config.get("rootfs") or {}).get("diff_ids") or []) if isinstance(config, dict) else []
            if len(diff_ids) != len(layers):
                raise ArchiveError(f"corrupt archive: {config_name} lists {len(diff_ids)} layers, manifest.json {len(layers)}")
            config_digest = Digest("sha256", config_member.sha256)
            self.blob_files[config_digest] = config_member.path
            layer_descs = []
            for n, (layer_name, diff_id) in enumerate(zip(layers, diff_ids)):
                member = self.staged.need(str(layer_name), "layer")
                kind, uncompressed = _uncompressed_digest(member)
                if f"sha256:{uncompressed}" != diff_id:
                    raise DigestMismatch(f"digest mismatch: layer {n + 1} ({layer_name}) does not match diff_id {diff_id} "
                                         f"of its image config")
                media_type = _LAYER_TYPES.get(kind)
                if media_type is None:
                    raise ArchiveError(f"layer {layer_name} is {kind}-compressed, which registries do not accept; "
                                       f"re-save it uncompressed or with gzip")
                digest = Digest("sha256", member.sha256)
                self.blob_files[digest] = member.path
                layer_descs.append({"mediaType": media_type, "digest": str(digest), "size": member.size})
            manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                        "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config_digest), "size": config_member.size},
                        "layers": layer_descs}
            data = json.dumps(manifest, separators=(",", ":")).encode()
            digest = Digest.from_bytes(data)
            self.new_manifests[digest] = data
            desc = Descriptor(mt.OCI_MANIFEST, digest, len(data))
            tags = [str(t) for t in entry.get("RepoTags") or [] if isinstance(t, str)]
            if not tags:
                self.names.append((None, desc))
            for t in tags:
                self.names.append((_normalize(t), desc))

    def commit(self) -> None:
        for digest, path in self.blob_files.items():
            if self.store.has_blob(digest):
                continue
            tmp = self.store.tmp / f"commit-{uuid.uuid4().hex}"
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            self.store.commit_file(tmp, digest)
        for digest, data in self.new_manifests.items():
            self.store.put_blob(data, digest)
        for name, desc in self.names:
            self.store.add_image(name, desc)


def _normalize(name: str) -> str:
    try:
        ref = parse_reference(name)
    except InvalidReference:
        raise ArchiveError(f"corrupt archive: image name {name!r} is not a valid reference") from None
    return local_name(ref)


def load(store: Store, source: IO[bytes]) -> LoadResult:
    """Read one archive from ``source`` into ``store``; all-or-nothing."""
    store.init()
    with store.adding_lock():
        staged = _stage(store, source)
        try:
            loader = _Loader(store, staged)
            if staged.get("index.json") is not None:
                loader.load_oci()
            elif staged.get("manifest.json") is not None:
                loader.load_docker()
            else:
                raise ArchiveError("not an image archive: it has neither index.json (OCI) nor manifest.json (docker)")
            loader.commit()
        finally:
            staged.cleanup()
    names = [n for n, _ in loader.names if n]
    unnamed = [d.digest for n, d in loader.names if not n]
    return LoadResult(names, unnamed)


def iter_names(result: LoadResult) -> Iterator[str]:
    """docker load's lines: ``Loaded image: NAME`` / ``Loaded image ID: DIGEST``."""
    for n in result.names:
        try:
            yield f"Loaded image: {parse_reference(n).familiar()}"
        except InvalidReference:
            yield f"Loaded image: {n}"
    for d in result.unnamed:
        yield f"Loaded image ID: {d}"


