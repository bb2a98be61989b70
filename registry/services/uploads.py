"""Uploads: streamed, chunked and monolithic blob uploads, verified before they become visible (storage only).

Blob bytes are streamed into ``_uploads/<id>``, hashed while they stream, verified against the
client's digest, and only then moved to ``blobs/<alg>/<xx>/<hex>/data`` and linked into the
repository. Nothing unverified is ever visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from storage_backends.base import FileWriter, PathNotFound

from registry import layout
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.services.common import BlobInfo, ServiceBase, _parse_time

WRITE_BUFFER = 1 << 20  # bytes gathered before a write + hash step
HASHER_CACHE = 4096  # in-flight uploads whose running hash we keep in memory


@dataclass
class _RunningHash:
    offset: int
    hasher: Any
    algorithm: str


class Uploads(ServiceBase):
    """Upload sessions and their running hashes."""

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


