"""The local image store: one OCI image layout under ``$BERTH_HOME``.

Layout (an OCI image layout, plus Berth's private ``.berth/`` folder)::

    $BERTH_HOME/                       default $XDG_DATA_HOME/berth (~/.local/share/berth)
      oci-layout                       {"imageLayoutVersion": "1.0.0"}
      index.json                       one descriptor per local name (annotations below)
      blobs/sha256/<hex>               every blob once: manifests, indexes, configs, layers
      .berth/
        index.lock                     flock: exclusive around every read-modify-write of index.json
        gc.lock                        flock: shared while a command adds blobs, exclusive for gc
        tmp/                           staging (downloads, archive members); <hex>.partial resumes
        tmp/<hex>.lock                 flock: one writer per blob across processes
        sources.json                   digest -> ["host/repo", ...] where the blob is known to live

An index entry's ``io.containerd.image.name`` annotation is the full reference
(``localhost:5000/app:1.0``, or ``host/repo@sha256:…`` for a digest-only pull);
``org.opencontainers.image.ref.name`` is the tag. An entry without a name is a
dangling (``<none>``) image.

Guarantees: a blob appears under ``blobs/`` only by an atomic rename of a
verified file; manifests are stored byte-for-byte, so digests survive; two
``berth`` processes may run at once (flocks above); ``gc`` deletes only blobs
that no index entry reaches, and never while another command is adding.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from registry import mediatypes as mt
from registry.client.errors import ClientError, DigestMismatch, NotFound, UsageError
from registry.digest import Digest, InvalidDigest
from registry.manifest import Descriptor, ManifestError, parse_manifest
from registry.reference import InvalidReference, Reference, parse_reference

NAME_ANNOTATION = "io.containerd.image.name"
TAG_ANNOTATION = "org.opencontainers.image.ref.name"
MAX_SOURCES = 8
COPY_CHUNK = 1024 * 1024
_ID_RE = re.compile(r"^(?:sha256:)?([0-9a-f]{4,64})$")


def default_home() -> Path:
    """``$BERTH_HOME``, else ``$XDG_DATA_HOME/berth``, else ``~/.local/share/berth``."""
    if os.environ.get("BERTH_HOME"):
        return Path(os.environ["BERTH_HOME"])
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "berth"


def local_name(ref: Reference) -> str:
    """The store name of a reference: ``host/repo:tag`` or ``host/repo@digest``."""
    if ref.digest is not None:
        return f"{ref.registry}/{ref.repository}@{ref.digest}"
    return f"{ref.registry}/{ref.repository}:{ref.tag}"


class FileLock:
    """An ``flock`` on a file (blocking; run ``acquire`` in a thread from async code)."""

    def __init__(self, path: Path, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        """Block until the lock is held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class Image:
    """One entry of the store's index.json."""

    name: str | None
    descriptor: Descriptor

    @property
    def reference(self) -> Reference | None:
        """The parsed name (None for a dangling image)."""
        if not self.name:
            return None
        try:
            return parse_reference(self.name)
        except InvalidReference:
            return None

    @property
    def digest(self) -> Digest:
        """The manifest (or index) digest."""
        return self.descriptor.digest

    @property
    def is_index(self) -> bool:
        """Whether this entry is a multi-platform index."""
        return self.descriptor.media_type in mt.INDEXES


@dataclass(frozen=True)
class ImageSummary:
    """What ``berth images`` shows for one entry."""

    image: Image
    image_id: Digest
    created: str
    size: int


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Store:
    """An OCI image layout used as berth's local image store."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_home()
        self.blobs = self.root / "blobs"
        self.private = self.root / ".berth"
        self.tmp = self.private / "tmp"

    # Setup and locks ----------------------------------------------------------------------

    def init(self) -> "Store":
        """Create the layout if needed (idempotent, safe to race)."""
        (self.blobs / "sha256").mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._write_atomic(layout, json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode())
        index = self.root / "index.json"
        if not index.exists():
            with self.index_lock():
                if not index.exists():
                    self._write_index([])
        return self

    def index_lock(self) -> FileLock:
        """Exclusive lock around index.json and sources.json updates."""
        return FileLock(self.private / "index.lock")

    def adding_lock(self) -> FileLock:
        """Shared lock held while a command adds blobs that no entry references yet."""
        return FileLock(self.private / "gc.lock", shared=True)

    def gc_lock(self) -> FileLock:
        """Exclusive lock for garbage collection."""
        return FileLock(self.private / "gc.lock")

    def blob_lock(self, digest: Digest) -> FileLock:
        """One writer per blob across processes."""
        return FileLock(self.tmp / f"{digest.algorithm}-{digest.hex}.lock")

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    # Blobs ---------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives."""
        return self.blobs / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is in the store."""
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: Digest) -> int:
        """A stored blob's size (raises :class:`NotFound`)."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from the local store {self.root}") from None

    def open_blob(self, digest: Digest) -> IO[bytes]:
        """Open a stored blob for reading."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from the local store {self.root}") from None

    def read_blob(self, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small stored blob's bytes (manifests, configs)."""
        with self.open_blob(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ClientError(f"blob {digest} is too large to read as a document")
        return data

    def staging_file(self, prefix: str = "stage") -> tuple[IO[bytes], Path]:
        """A new temporary file in the store's filesystem (to be committed by rename)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{prefix}-", dir=self.tmp)
        return os.fdopen(fd, "wb"), Path(name)

    def commit_file(self, path: Path, digest: Digest) -> None:
        """Move a verified file into ``blobs/`` (a no-op, dropping ``path``, when already there)."""
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            path.unlink(missing_ok=True)
            return
        os.replace(path, target)

    def put_blob(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store a small blob from memory (manifests, configs); verifies ``expected``."""
        algorithm = expected.algorithm if expected else "sha256"
        digest = Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
        if expected is not None and digest != expected:
            raise DigestMismatch(f"digest mismatch: content announced as {expected} hashes to {digest}")
        if not self.has_blob(digest):
            self._write_atomic(self.blob_path(digest), data)
        return digest

    def verify_blob(self, digest: Digest) -> bool:
        """Re-hash a stored blob."""
        h = digest.hasher()
        with self.open_blob(digest) as f:
            while chunk := f.read(COPY_CHUNK):
                h.update(chunk)
        return bool(h.hexdigest() == digest.hex)

    # Index ---------------------------------------------------------------------------------

    def _read_index(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return []
        except ValueError:
            raise ClientError(f"{self.root / 'index.json'} is corrupt; restore it or remove the store") from None
        manifests = doc.get("manifests") if isinstance(doc, dict) else None
        return [m for m in manifests or [] if isinstance(m, dict)]

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
        self._write_atomic(self.root / "index.json", json.dumps(doc, indent=2).encode())

    def images(self) -> list[Image]:
        """Every index entry."""
        out = []
        for entry in self._read_index():
            try:
                desc = Descriptor(str(entry["mediaType"]), Digest.parse(str(entry["digest"])), int(entry["size"]),
                                  platform=entry.get("platform"), annotations=entry.get("annotations"))
            except (KeyError, ValueError, InvalidDigest):
                continue
            name = (desc.annotations or {}).get(NAME_ANNOTATION)
            out.append(Image(name or None, desc))
        return out

    def add_image(self, name: str | None, descriptor: Descriptor, extra_annotations: dict[str, str] | None = None) -> Image:
        """Point ``name`` at ``descriptor`` (replacing what it named); None adds a dangling entry."""
        annotations = dict(extra_annotations or {})
        if name:
            annotations[NAME_ANNOTATION] = name
            ref = parse_reference(name)
            if ref.tag and not ref.digest:
                annotations[TAG_ANNOTATION] = ref.tag
        entry = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size,
                           platform=descriptor.platform, annotations=annotations or None).to_json()
        with self.index_lock():
            entries = self._read_index()
            kept = []
            for e in entries:
                ename = (e.get("annotations") or {}).get(NAME_ANNOTATION)
                if name and ename == name:
                    continue
                if not ename and e.get("digest") == str(descriptor.digest):
                    continue  # a dangling entry of this image: the name replaces it
                kept.append(e)
            kept.append(entry)
            self._write_index(kept)
        return Image(name, Descriptor(descriptor.media_type, descriptor.digest, descriptor.size,
                                      platform=descriptor.platform, annotations=annotations or None))

    def remove_images(self, images: list[Image]) -> None:
        """Drop index entries (blobs stay until :meth:`gc`)."""
        doomed = {(i.name, str(i.digest)) for i in images}
        with self.index_lock():
            entries = self._read_index()
            kept = [e for e in entries
                    if ((e.get("annotations") or {}).get(NAME_ANNOTATION) or None, e.get("digest")) not in doomed]
            self._write_index(kept)

    def find(self, text: str) -> list[Image]:
        """Entries a user's word names: a reference, or an image ID / digest (prefix)."""
        images = self.images()
        m = _ID_RE.match(text)
        if m and (len(m.group(1)) >= 12 or text.startswith("sha256:")):
            prefix = m.group(1)
            hits = [i for i in images if i.digest.hex.startswith(prefix) or self.image_id(i).hex.startswith(prefix)]
            if hits:
                return hits
        try:
            ref = parse_reference(text)
        except InvalidReference as exc:
            raise UsageError(f"invalid reference {text!r}: {exc}") from None
        name = local_name(ref)
        hits = [i for i in images if i.name == name]
        if not hits and ref.digest is not None:
            hits = [i for i in images if i.digest == ref.digest and i.reference is not None
                    and i.reference.registry == ref.registry and i.reference.repository == ref.repository]
        return hits

    def find_name(self, name: str) -> Image | None:
        """The entry with exactly this store name, if any."""
        return next((i for i in self.images() if i.name == name), None)

    def get(self, text: str) -> Image:
        """Exactly one entry for a user's word (raises :class:`NotFound`)."""
        hits = self.find(text)
        if not hits:
            raise NotFound(f"no such image: {text} is not in the local store (try `berth images`, or `berth pull {text}`)")
        named = {i.digest for i in hits}
        if len(named) > 1:
            raise UsageError(f"{text} is ambiguous: it matches {len(hits)} images; use a longer ID or a full reference")
        return hits[0]

    # Content walking -----------------------------------------------------------------------

    def manifest(self, digest: Digest, media_type: str | None = None) -> Any:
        """Parse a stored manifest or index."""
        data = self.read_blob(digest)
        try:
            return parse_manifest(data, media_type)
        except ManifestError as exc:
            raise ClientError(f"stored manifest {digest} is invalid: {exc}") from None

    def image_id(self, image: Image) -> Digest:
        """Docker's image ID: the config digest of a manifest, the digest of an index."""
        if image.is_index:
            return image.digest
        try:
            m = self.manifest(image.digest, image.descriptor.media_type)
        except (ClientError, NotFound):
            return image.digest
        return m.config.digest if m.config is not None else image.digest

    def reachable(self, roots: list[Descriptor]) -> set[Digest]:
        """Every blob the descriptors reach (present ones are walked; missing ones are named)."""
        seen: set[Digest] = set()
        stack = list(roots)
        while stack:
            desc = stack.pop()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            if desc.media_type in mt.MANIFESTS and self.has_blob(desc.digest):
                try:
                    m = self.manifest(desc.digest, desc.media_type)
                except ClientError:
                    continue
                stack.extend(m.manifests)
                if m.config is not None:
                    stack.append(m.config)
                stack.extend(m.layers)
                if m.subject is not None:
                    pass  # a referrer does not keep its subject alive
        return seen

    def summary(self, image: Image) -> ImageSummary:
        """Image ID, creation time and size of an entry."""
        created = ""
        size = 0
        if image.is_index:
            try:
                index = self.manifest(image.digest, image.descriptor.media_type)
            except (ClientError, NotFound):
                return ImageSummary(image, image.digest, "", 0)
            for child in index.manifests:
                if self.has_blob(child.digest):
                    sub = self.summary(Image(None, child))
                    size += sub.size
                    created = max(created, sub.created)
            return ImageSummary(image, image.digest, created, size)
        try:
            m = self.manifest(image.digest, image.descriptor.media_type)
        except (ClientError, NotFound):
            return ImageSummary(image, image.digest, "", 0)
        size = sum(d.size for d in m.layers) + (m.config.size if m.config else 0)
        if m.config is not None and self.has_blob(m.config.digest) and m.config.size < 16 * 1024 * 1024:
            try:
                cfg = json.loads(self.read_blob(m.config.digest))
                created = str(cfg.get("created") or "") if isinstance(cfg, dict) else ""
            except (ValueError, ClientError):
                created = ""
        return ImageSummary(image, m.config.digest if m.config else image.digest, created, size)

    def gc(self) -> tuple[int, int]:
        """Delete every blob no entry reaches; returns (blobs removed, bytes freed)."""
        removed = freed = 0
        with self.gc_lock(), self.index_lock():
            keep = self.reachable([i.descriptor for i in self.images()])
            for algdir in self.blobs.iterdir() if self.blobs.exists() else []:
                if not algdir.is_dir():
                    continue
                for path in algdir.iterdir():
                    try:
                        digest = Digest(algdir.name, path.name)
                        Digest.parse(str(digest))
                    except InvalidDigest:
                        continue
                    if digest in keep:
                        continue
                    try:
                        size = path.stat().st_size
                        path.unlink()
                    except FileNotFoundError:
                        continue
                    removed += 1
                    freed += size
            self._forget_sources(keep)
        return removed, freed

    # Where blobs came from (for cross-repository mounts) ----------------------------------

    def sources(self) -> dict[str, list[str]]:
        """digest -> ``host/repo`` list, most recent last."""
        try:
            doc = json.loads((self.private / "sources.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def record_sources(self, digests: list[Digest], host: str, repo: str) -> None:
        """Remember that ``host/repo`` holds these blobs."""
        where = f"{host}/{repo}"
        with self.index_lock():
            doc = self.sources()
            for d in digests:
                lst = [x for x in doc.get(str(d), []) if x != where]
                lst.append(where)
                doc[str(d)] = lst[-MAX_SOURCES:]
            self._write_atomic(self.private / "sources.json", json.dumps(doc).encode())

    def _forget_sources(self, keep: set[Digest]) -> None:
        doc = self.sources()
        kept = {k: v for k, v in doc.items() if k in {str(d) for d in keep}}
        if len(kept) != len(doc):
            self._write_atomic(self.private / "sources.json", json.dumps(kept).encode())


def humanize_size(size: int) -> str:
    """``docker images`` style sizes: 1.2kB, 34.5MB, 1.02GB (decimal units)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{size}B"


def humanize_age(created: str, now: _dt.datetime | None = None) -> str:
    """``2 days ago`` from an RFC 3339 timestamp (``N/A`` when unknown)."""
    if not created:
        return "N/A"
    text = re.sub(r"(\.\d{6})\d+", r"\1", created.replace("Z", "+00:00"))
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        return "N/A"
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    seconds = (now - when).total_seconds()
    if seconds < 0:
        return "Less than a second ago"
    for unit, length in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400), ("day", 86400),
                         ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= length:
            n = int(seconds // length)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago"
