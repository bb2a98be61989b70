"""Registry services: the domain logic of blobs, uploads, manifests, tags, referrers and the catalog.

This layer sits between the HTTP handlers and the storage driver. It owns the
rules that keep the registry consistent:

* Blob bytes are streamed into ``_uploads/<id>``, hashed while they stream,
  verified against the client's digest, and only then moved to
  ``blobs/<alg>/<xx>/<hex>/data`` and linked into the repository. Nothing
  unverified is ever visible.
* A manifest is stored as a blob, then its revision link, then its tag links:
  a reader that finds a tag always finds the manifest and every blob it names.
* Services raise :class:`~registry.errors.RegistryError` for anything the client
  did wrong; storage errors other than "not found" propagate as typed driver errors.

Paths come only from :mod:`registry.layout`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from registry import layout
from registry import mediatypes as mt
from registry.digest import Digest, InvalidDigest
from registry.errors import ErrorCode, RegistryError
from registry.manifest import Manifest, ManifestError, detect_media_type, parse_manifest
from registry.reference import is_valid_name, is_valid_tag
from storage_backends.base import FileWriter, PathNotFound, StorageDriver

log = logging.getLogger("berth.services")

WRITE_BUFFER = 1 << 20  # bytes gathered before a write + hash step
HASHER_CACHE = 4096  # in-flight uploads whose running hash we keep in memory
MANIFEST_CACHE_BYTES = 32 << 20  # manifest bytes kept in memory, by digest


def parse_digest(value: str, code: ErrorCode = ErrorCode.DIGEST_INVALID) -> Digest:
    """Parse a client-supplied digest or raise ``code`` (400)."""
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise RegistryError(code, str(exc), {"digest": value[:200]}) from None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, "invalid repository name", {"name": name[:300]})
    return name


def check_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, "invalid tag", {"tag": tag[:200]})
    return tag


class _ByteBoundedCache:
    """An LRU of stored manifests bounded by the total size of their bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._items: OrderedDict[Digest, "StoredManifest"] = OrderedDict()

    def get(self, key: Digest) -> "StoredManifest | None":
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Digest, item: "StoredManifest") -> None:
        if len(item.data) > self._limit // 16 or key in self._items:
            return
        self._items[key] = item
        self._size += len(item.data)
        while self._size > self._limit:
            _, old = self._items.popitem(last=False)
            self._size -= len(old.data)


@dataclass
class _RunningHash:
    offset: int
    hasher: Any
    algorithm: str


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    data: bytes


@dataclass(frozen=True)
class PutManifestResult:
    digest: Digest
    manifest: Manifest
    tags: tuple[str, ...]


class UploadState:
    """Signs and verifies the ``_state`` token carried in upload ``Location`` URLs.

    The token binds an upload id to its repository (and records the offset and
    start time at signing), so any replica holding the same secret can continue
    an upload it did not start. Storage stays the source of truth for offsets.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, name: str, upload_id: str, offset: int, started_at: str) -> str:
        payload = json.dumps({"n": name, "u": upload_id, "o": offset, "s": started_at}, separators=(",", ":")).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def verify(self, token: str, name: str, upload_id: str) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "invalid upload state") from None
        mac, payload = raw[:32], raw[32:]
        if len(mac) != 32 or not hmac.compare_digest(mac, hmac.new(self._secret, payload, hashlib.sha256).digest()):
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload state signature is invalid")
        try:
            state = json.loads(payload)
        except ValueError:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "invalid upload state") from None
        if not isinstance(state, dict) or state.get("n") != name or state.get("u") != upload_id:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload state does not match this upload")
        return state


class Registry:
    """All registry operations over one storage driver."""

    def __init__(
        self,
        driver: StorageDriver,
        *,
        delete_enabled: bool = False,
        max_manifest_size: int = 4 << 20,
        executor: Any = None,
    ) -> None:
        self.driver = driver
        self.delete_enabled = delete_enabled
        self.max_manifest_size = max_manifest_size
        self._executor = executor
        self._hashes: OrderedDict[str, _RunningHash] = OrderedDict()
        # Manifest bytes by digest: content-addressed, so never stale. Links (tags, revisions)
        # are always read from storage, so replicas and deletes stay visible at once.
        self._manifests = _ByteBoundedCache(MANIFEST_CACHE_BYTES)
        self._upload_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ blobs
    async def blob_info(self, name: str, digest: Digest) -> BlobInfo:
        """Size of a blob linked into ``name``; BLOB_UNKNOWN otherwise."""
        linked, info = await asyncio.gather(self.driver.exists(layout.layer_link(name, digest)),
                                            self.blob_exists_anywhere(digest))
        if info is None or not (linked or await self.driver.exists(layout.revision_link(name, digest))):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        return info

    async def blob_exists_anywhere(self, digest: Digest) -> BlobInfo | None:
        try:
            info = await self.driver.stat(layout.blob_data(digest))
        except PathNotFound:
            return None
        return BlobInfo(digest, info.size)

    async def link_blob(self, name: str, digest: Digest) -> None:
        await self.driver.put_content(layout.layer_link(name, digest), str(digest).encode())

    async def delete_blob(self, name: str, digest: Digest) -> None:
        """Unlink a blob from a repository (the bytes go at garbage collection)."""
        self._require_delete()
        try:
            await self.driver.delete(layout.layer_link(name, digest).rsplit("/", 1)[0])
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None

    async def mount_blob(self, name: str, source: str, digest: Digest) -> BlobInfo | None:
        """Link ``digest`` from repository ``source`` into ``name``; None if ``source`` lacks it."""
        if not await self.driver.exists(layout.layer_link(source, digest)):
            return None
        info = await self.blob_exists_anywhere(digest)
        if info is None:
            return None
        await self.link_blob(name, digest)
        return info

    # ---------------------------------------------------------------- uploads
    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._upload_locks.get(upload_id)
        if lock is None:
            lock = self._upload_locks[upload_id] = asyncio.Lock()
        return lock

    async def start_upload(self, name: str) -> tuple[str, str]:
        """Create an upload; returns (id, started-at RFC 3339)."""
        upload_id = str(uuid.uuid4())
        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self.driver.put_content(layout.upload_started_at(name, upload_id), started.encode())
        return upload_id, started

    async def _require_upload(self, name: str, upload_id: str) -> str:
        try:
            layout.validate_upload_id(upload_id)
        except layout.InvalidUploadId:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id[:100]}) from None
        try:
            return (await self.driver.get_content(layout.upload_started_at(name, upload_id))).decode()
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id}) from None

    async def upload_status(self, name: str, upload_id: str) -> tuple[int, str]:
        """(bytes received, started-at) of an upload in progress."""
        started = await self._require_upload(name, upload_id)
        async with self._lock(upload_id):
            writer = await self.driver.writer(layout.upload_data(name, upload_id), append=True)
            size = writer.size
            await writer.close()
        return size, started

    async def cancel_upload(self, name: str, upload_id: str) -> None:
        await self._require_upload(name, upload_id)
        async with self._lock(upload_id):
            await self._drop_upload(name, upload_id)

    async def abort_upload(self, name: str, upload_id: str) -> None:
        """Remove an upload whether or not it still exists (cleanup after a failed request)."""
        async with self._lock(upload_id):
            await self._drop_upload(name, upload_id)

    async def _drop_upload(self, name: str, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        self._upload_locks.pop(upload_id, None)
        # Deleting the directory also discards an uncommitted writer below it (driver contract).
        try:
            await self.driver.delete(layout.upload_dir(name, upload_id))
        except PathNotFound:
            pass

    async def _hash(self, hasher: Any, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, hasher.update, data)

    async def _stream_into(self, writer: FileWriter, running: _RunningHash | None, body: AsyncIterator[bytes]) -> int:
        """Copy ``body`` into ``writer`` (and the running hash, if any) in ~1 MiB steps.

        Returns the number of bytes written.
        """
        buf = bytearray()
        written = 0

        async def flush() -> None:
            nonlocal buf, written
            data = bytes(buf)
            buf = bytearray()
            if running is None:
                await writer.write(data)
            else:
                await asyncio.gather(writer.write(data), self._hash(running.hasher, data))
                running.offset += len(data)
            written += len(data)

        async for chunk in body:
            buf += chunk
            if len(buf) >= WRITE_BUFFER:
                await flush()
        if buf:
            await flush()
        return written

    def _take_hash(self, upload_id: str, offset: int, algorithm: str) -> _RunningHash | None:
        """The running hash of an upload if it covers exactly ``offset`` bytes (else None).

        A fresh upload gets a new hasher. After a restart, or when another replica
        appended, the hash is unknown: the bytes are kept and re-hashed at commit.
        """
        running = self._hashes.pop(upload_id, None)
        if running is not None and running.offset == offset and running.algorithm == algorithm:
            return running
        if offset == 0:
            return _RunningHash(0, hashlib.new(algorithm), algorithm)
        return None

    def _remember(self, upload_id: str, running: _RunningHash | None) -> None:
        if running is None:
            return
        self._hashes[upload_id] = running
        while len(self._hashes) > HASHER_CACHE:
            self._hashes.popitem(last=False)

    async def _open_at(self, name: str, upload_id: str, start: int | None) -> FileWriter:
        """Open the upload for appending; a chunk must start at the current offset (else 416)."""
        writer = await self.driver.writer(layout.upload_data(name, upload_id), append=True)
        if start is not None and start != writer.size:
            offset = writer.size
            await writer.close()
            raise RegistryError(
                ErrorCode.RANGE_INVALID,
                f"chunk starts at {start}, upload is at {offset}",
                status=416,
                headers={"Range": f"0-{max(offset - 1, 0)}", "Docker-Upload-UUID": upload_id},
            )
        return writer

    async def _append(self, writer: FileWriter, running: _RunningHash | None,
                      body: AsyncIterator[bytes] | None, length: int | None) -> None:
        written = 0
        try:
            if body is not None:
                written = await self._stream_into(writer, running, body)
        except BaseException:
            await writer.close()
            raise
        if length is not None and written != length:
            await writer.close()
            raise RegistryError(ErrorCode.SIZE_INVALID, f"received {written} bytes, expected {length}",
                                detail={"received": written, "expected": length})

    async def append_upload(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> tuple[int, str]:
        """Append a chunk; ``start`` (from Content-Range) must equal the current offset.

        Returns the new offset and the upload's start time. On a range mismatch raises
        RANGE_INVALID (416) carrying the current ``Range`` header.
        """
        started = await self._require_upload(name, upload_id)
        async with self._lock(upload_id):
            writer = await self._open_at(name, upload_id, start)
            running = self._take_hash(upload_id, writer.size, "sha256")
            await self._append(writer, running, body, length)
            await writer.close()
            self._remember(upload_id, running)
            return writer.size, started

    async def complete_upload(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterator[bytes] | None = None,
        *,
        start: int | None = None,
        length: int | None = None,
        fresh: bool = False,
    ) -> BlobInfo:
        """Append the last chunk (if any), verify the digest, and make the blob visible.

        ``fresh`` says the client holds the upload at offset 0 (from its signed state): a
        small body is then verified in memory and stored in one atomic write.
        """
        await self._require_upload(name, upload_id)
        async with self._lock(upload_id):
            if fresh and body is not None and start in (None, 0):
                small, body = await _read_small(body)
                if small is not None:
                    try:
                        return await self._store_small(name, digest, small, length)
                    finally:
                        await self._drop_upload(name, upload_id)
            writer = await self._open_at(name, upload_id, start)
            running = self._take_hash(upload_id, writer.size, digest.algorithm)
            await self._append(writer, running, body, length)
            await writer.commit()
            size = writer.size
            data_path = layout.upload_data(name, upload_id)
            if running is not None:
                actual = running.hasher.hexdigest()
            else:
                actual = await self._rehash(data_path, digest)
            if actual != digest.hex:
                await self._drop_upload(name, upload_id)
                raise RegistryError(ErrorCode.DIGEST_INVALID, detail={"digest": str(digest)})
            # Replace even an existing copy (same verified bytes): its fresh timestamp tells a
            # concurrent garbage collector that the blob is in use again.
            await self.driver.move(data_path, layout.blob_data(digest))
            await asyncio.gather(self.link_blob(name, digest), self._drop_upload(name, upload_id))
            return BlobInfo(digest, size)

    async def store_blob(self, name: str, digest: Digest, body: AsyncIterator[bytes],
                         length: int | None = None) -> BlobInfo:
        """A monolithic upload (``POST ?digest=``): small blobs in one write, others through an upload."""
        small, body = await _read_small(body)
        if small is not None:
            return await self._store_small(name, digest, small, length)
        upload_id, _ = await self.start_upload(name)
        try:
            return await self.complete_upload(name, upload_id, digest, body, length=length)
        except BaseException:
            await self.abort_upload(name, upload_id)
            raise

    async def _store_small(self, name: str, digest: Digest, data: bytes, length: int | None) -> BlobInfo:
        """Verify bytes held in memory (at most WRITE_BUFFER), then write them in one atomic step."""
        if length is not None and len(data) != length:
            raise RegistryError(ErrorCode.SIZE_INVALID, f"received {len(data)} bytes, expected {length}",
                                detail={"received": len(data), "expected": length})
        hasher = digest.hasher()
        await self._hash(hasher, data)
        if hasher.hexdigest() != digest.hex:
            raise RegistryError(ErrorCode.DIGEST_INVALID, detail={"digest": str(digest)})
        await self.driver.put_content(layout.blob_data(digest), data)  # fresh timestamp, as above
        await self.link_blob(name, digest)
        return BlobInfo(digest, len(data))

    async def _rehash(self, path: str, digest: Digest) -> str:
        hasher = digest.hasher()
        async for chunk in self.driver.reader(path):
            await self._hash(hasher, chunk)
        return str(hasher.hexdigest())

    async def purge_uploads(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Delete uploads started more than ``older_than`` seconds ago; returns their paths."""
        now = time.time()
        purged: list[str] = []
        for name in await self.repositories(markers=("_uploads",)):
            try:
                ids = await self.driver.list(layout.uploads_dir(name))
            except PathNotFound:
                continue
            for path in ids:
                upload_id = path.rsplit("/", 1)[-1]
                try:
                    layout.validate_upload_id(upload_id)
                except layout.InvalidUploadId:
                    continue
                try:
                    raw = (await self.driver.get_content(layout.upload_started_at(name, upload_id))).decode()
                    started = _parse_time(raw)
                except (PathNotFound, ValueError):
                    try:
                        started = (await self.driver.stat(path)).modtime
                    except PathNotFound:
                        continue
                if now - started > older_than:
                    purged.append(path)
                    if not dry_run:
                        await self._drop_upload(name, upload_id)
        return purged

    # -------------------------------------------------------------- manifests
    async def resolve_tag(self, name: str, tag: str) -> Digest:
        try:
            raw = await self.driver.get_content(layout.tag_current_link(name, tag))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag}) from None
        return Digest.parse(raw.decode().strip())

    async def get_manifest(self, name: str, reference: str) -> StoredManifest:
        """A manifest by tag or digest, with the media type clients expect."""
        if ":" in reference:
            digest = parse_digest(reference)
            if not await self.driver.exists(layout.revision_link(name, digest)):
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": reference})
        else:
            if not is_valid_tag(reference):
                # No such tag can exist; the conformance suite expects 404 here, not 400.
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": reference[:200]})
            digest = await self.resolve_tag(name, reference)
        cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        try:
            data = await self.driver.get_content(layout.blob_data(digest))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)}) from None
        stored = StoredManifest(digest, stored_media_type(data), data)
        self._manifests.put(digest, stored)
        return stored

    async def put_manifest(
        self,
        name: str,
        reference: str,
        data: bytes,
        content_type: str | None,
        extra_tags: tuple[str, ...] = (),
    ) -> PutManifestResult:
        """Validate and store a manifest; tag it by ``reference`` (if a tag) and ``extra_tags``."""
        if len(data) > self.max_manifest_size:
            raise RegistryError(ErrorCode.SIZE_TOO_LARGE, "manifest too large",
                                {"limit": self.max_manifest_size}, status=413)
        tags: list[str] = []
        if ":" in reference:
            expected: Digest | None = parse_digest(reference)
        else:
            expected = None
            tags.append(check_tag(reference))
        for tag in extra_tags:
            check_tag(tag)
            if tag not in tags:
                tags.append(tag)
        try:
            manifest = parse_manifest(data, content_type)
        except ManifestError as exc:
            raise RegistryError(ErrorCode.MANIFEST_INVALID, str(exc)) from None
        algorithm = expected.algorithm if expected else "sha256"
        digest = Digest.from_bytes(data, algorithm)
        if expected is not None and digest != expected:
            raise RegistryError(ErrorCode.DIGEST_INVALID, "manifest digest does not match the reference",
                                {"expected": str(expected), "computed": str(digest)})
        await self._check_references(name, manifest)
        await self.driver.put_content(layout.blob_data(digest), data)  # small; rewriting is cheap
        await self.driver.put_content(layout.revision_link(name, digest), str(digest).encode())
        if manifest.subject is not None:
            await self.driver.put_content(
                layout.referrer_link(name, manifest.subject.digest, digest), str(digest).encode())
        for tag in tags:
            await self.tag_manifest(name, tag, digest)
        return PutManifestResult(digest, manifest, tuple(tags))

    async def _check_references(self, name: str, manifest: Manifest) -> None:
        async def check_blob(desc_digest: Digest) -> Digest | None:
            try:
                await self.blob_info(name, desc_digest)
            except RegistryError:
                return desc_digest
            return None

        async def check_child(desc_digest: Digest) -> Digest | None:
            if await self.driver.exists(layout.revision_link(name, desc_digest)):
                return None
            return desc_digest

        if manifest.is_index:
            missing = [d for d in await asyncio.gather(*(check_child(c.digest) for c in manifest.manifests)) if d]
            if missing:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, "index references unknown manifests",
                                    {"digests": [str(d) for d in missing]}, status=400)
            return
        missing = [d for d in await asyncio.gather(*(check_blob(b.digest) for b in manifest.blobs)) if d]
        if missing:
            raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail={"digests": [str(d) for d in missing]})

    async def tag_manifest(self, name: str, tag: str, digest: Digest) -> None:
        link = str(digest).encode()
        await asyncio.gather(self.driver.put_content(layout.tag_index_link(name, tag, digest), link),
                             self.driver.put_content(layout.tag_current_link(name, tag), link))

    async def tagged_digest(self, name: str, tag: str) -> Digest | None:
        """The digest ``tag`` points at, or None when the tag does not exist."""
        try:
            return await self.resolve_tag(name, tag)
        except RegistryError:
            return None

    async def delete_manifest(self, name: str, digest: Digest) -> list[str]:
        """Delete a manifest revision and every tag of ``name`` pointing at it; returns the tags."""
        self._require_delete()
        revision = layout.revision_link(name, digest)
        if not await self.driver.exists(revision):
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)})
        removed: list[str] = []
        for tag in await self.tags(name):
            try:
                if await self.resolve_tag(name, tag) == digest:
                    await self.driver.delete(layout.tag_dir(name, tag))
                    removed.append(tag)
            except (RegistryError, PathNotFound, InvalidDigest):
                continue
        try:
            manifest = parse_manifest(await self.driver.get_content(layout.blob_data(digest)))
            if manifest.subject is not None:
                link = layout.referrer_link(name, manifest.subject.digest, digest)
                await self.driver.delete(link.rsplit("/", 1)[0])
        except (PathNotFound, ManifestError):
            pass
        try:
            await self.driver.delete(revision.rsplit("/", 1)[0])
        except PathNotFound:
            pass
        return removed

    async def delete_tag(self, name: str, tag: str) -> Digest:
        self._require_delete()
        digest = await self.resolve_tag(name, tag)
        try:
            await self.driver.delete(layout.tag_dir(name, tag))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag}) from None
        return digest

    def _require_delete(self) -> None:
        if not self.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry")

    # ------------------------------------------------------------ tags, repos
    async def repository_exists(self, name: str) -> bool:
        return await self.driver.exists(layout.repository(name))

    async def tags(self, name: str) -> list[str]:
        try:
            paths = await self.driver.list(layout.tags_dir(name))
        except PathNotFound:
            if not await self.repository_exists(name):
                raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name}) from None
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in paths if is_valid_tag(p.rsplit("/", 1)[-1]))

    async def repositories(self, markers: tuple[str, ...] = ("_manifests", "_layers")) -> list[str]:
        """Every repository name, sorted: a directory holding one of ``markers``."""
        dirs = await self.driver.find_dirs(layout.REPOSITORIES, markers)
        return [d for d in dirs if is_valid_name(d)]

    # -------------------------------------------------------------- referrers
    async def referrers(self, name: str, subject: Digest, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of manifests in ``name`` whose ``subject`` is ``subject``."""
        try:
            paths = await self.driver.list(layout.referrers_dir(name, subject))
        except PathNotFound:
            return []
        out: list[dict[str, Any]] = []
        for alg_dir in paths:
            try:
                entries = await self.driver.list(alg_dir)
            except PathNotFound:
                continue
            for entry in entries:
                try:
                    digest = layout.digest_from_link_path(entry)
                    data = await self.driver.get_content(layout.blob_data(digest))
                    manifest = parse_manifest(data)
                except (InvalidDigest, PathNotFound, ManifestError):
                    continue
                if not await self.driver.exists(layout.revision_link(name, digest)):
                    continue
                desc: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(digest), "size": len(data)}
                kind = manifest.effective_artifact_type
                if kind:
                    desc["artifactType"] = kind
                if manifest.annotations:
                    desc["annotations"] = manifest.annotations
                if artifact_type is None or kind == artifact_type:
                    out.append(desc)
        out.sort(key=lambda d: d["digest"])
        return out


async def _read_small(body: AsyncIterator[bytes]) -> tuple[bytes | None, AsyncIterator[bytes]]:
    """The whole body if it ends within WRITE_BUFFER bytes; else None and an equivalent iterator."""
    head = bytearray()
    async for chunk in body:
        head += chunk
        if len(head) > WRITE_BUFFER:
            return None, _chain(bytes(head), body)
    return bytes(head), _chain(bytes(head), body)


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


def stored_media_type(data: bytes) -> str:
    """The media type of stored manifest bytes (from their ``mediaType``, else their shape)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return mt.OCI_MANIFEST
    if not isinstance(doc, dict):
        return mt.OCI_MANIFEST
    if doc.get("schemaVersion") == 1:  # written by an old registry; served as it is
        return mt.DOCKER_MANIFEST_V1_SIGNED if "signatures" in doc else mt.DOCKER_MANIFEST_V1
    try:
        return detect_media_type(doc, None)
    except ManifestError:
        return mt.OCI_MANIFEST


def _parse_time(text: str) -> float:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python < 3.11 cannot parse nanoseconds; trim to microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        frac = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(frac):]
        text = f"{head}.{frac[:6]}{zone}"
    return datetime.fromisoformat(text).timestamp()
