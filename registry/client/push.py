"""``berth push`` and the blob-upload machinery shared with ``berth copy``.

Guarantees: a blob the target repository already has is not sent; one that
another repository of the same registry is known to hold (the store's
``sources.json``, or the copy source) is mounted; large blobs go up in
``PATCH`` chunks (``Content-Range``), small ones in one ``PUT``; uploads run
concurrently (default 5); an index is pushed after all its children, and
manifests are sent byte-for-byte so their digests do not change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from registry.client.authflow import repository_scope
from registry.client.errors import ClientError, DigestMismatch, NetworkError, NotFound, RegistryResponseError
from registry.client.progress import QuietReporter, Reporter, Task
from registry.client.store import Image, Store
from registry.client.transport import RegistryClient, gather_or_cancel
from registry.digest import Digest
from registry.manifest import Descriptor, Manifest
from registry.reference import Reference

DEFAULT_PUSH_CONCURRENCY = 5
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
READ_SIZE = 1024 * 1024

# Opens ``length`` bytes at ``start`` of a blob as an async iterator (called again on a retry).
RangeOpener = Callable[[int, int], AsyncIterator[bytes]]


@dataclass(frozen=True)
class PushResult:
    """What a push sent."""

    reference: Reference
    digest: Digest
    size: int
    uploaded: int
    mounted: int
    existing: int


def file_opener(path: Path) -> RangeOpener:
    """A :data:`RangeOpener` over a local file (reads in a thread)."""

    async def gen(start: int, length: int) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            remaining = length
            while remaining > 0:
                chunk = await asyncio.to_thread(f.read, min(READ_SIZE, remaining))
                if not chunk:
                    raise ClientError(f"{path} shrank while it was being uploaded")
                remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(f.close)

    return gen


def _counted(source: AsyncIterator[bytes], task: Task, hasher: Any | None) -> Callable[[], AsyncIterator[bytes]]:
    async def gen() -> AsyncIterator[bytes]:
        async for chunk in source:
            if hasher is not None:
                hasher.update(chunk)
            task.advance(len(chunk))
            yield chunk

    return gen


class BlobUploader:
    """Makes sure a repository has a blob: skip, mount, or upload (monolithic or chunked)."""

    def __init__(self, client: RegistryClient, reporter: Reporter, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.client = client
        self.reporter = reporter
        self.chunk_size = max(1, chunk_size)

    async def ensure(self, host: str, repo: str, desc: Descriptor, opener: RangeOpener, mount_from: list[str]) -> str:
        """Returns ``exists``, ``mounted`` or ``pushed``."""
        label = desc.digest.hex[:12]
        push_scope = [repository_scope(repo, "pull", "push")]
        size = await self.client.blob_size(host, repo, desc.digest, scopes=push_scope)
        if size is not None:
            self.reporter.note(label, "layer already exists")
            return "exists"
        location: str | None = None
        for source_repo in mount_from:
            if source_repo == repo:
                continue
            try:
                location = await self.client.start_upload(host, repo, mount=desc.digest, from_repo=source_repo)
            except (NotFound, RegistryResponseError):
                continue
            if location is None:
                self.reporter.note(label, f"mounted from {source_repo}")
                return "mounted"
            break
        attempts = 3
        for attempt in range(attempts):
            if location is None:
                location = await self.client.start_upload(host, repo)
            try:
                await self._upload(host, repo, desc, location, opener, label)
                return "pushed"
            except NetworkError:
                await self.client.cancel_upload(host, repo, location)
                location = None
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _upload(self, host: str, repo: str, desc: Descriptor, location: str, ranges: RangeOpener, label: str) -> None:
        task = self.reporter.task(label, desc.size, "pushing")
        hasher = desc.digest.hasher()
        try:
            if desc.size <= self.chunk_size:
                body = _counted(ranges(0, desc.size), task, hasher)
                await self.client.finish_upload(host, repo, location, desc.digest, length=desc.size, body=body)
            else:
                start = 0
                while start < desc.size:
                    length = min(self.chunk_size, desc.size - start)
                    body = _counted(ranges(start, length), task, hasher)
                    location = await self.client.upload_chunk(host, repo, location, start, length, body)
                    start += length
                if hasher.hexdigest() != desc.digest.hex:
                    await self.client.cancel_upload(host, repo, location)
                    raise DigestMismatch(f"digest mismatch: blob {desc.digest} does not hash to its digest; upload cancelled")
                await self.client.finish_upload(host, repo, location, desc.digest)
        except RegistryResponseError as exc:
            if exc.code in ("DIGEST_INVALID", "SIZE_INVALID") or hasher.hexdigest() != desc.digest.hex:
                raise DigestMismatch(f"digest mismatch: {host} rejected blob {desc.digest} ({exc})") from None
            raise
        task.finish("pushed")


def plan(store: Store, image: Image) -> tuple[list[tuple[Descriptor, bytes]], dict[Digest, Descriptor]]:
    """Manifests to push (children first, root last) and the blobs they need, from the store."""
    manifests: list[tuple[Descriptor, bytes]] = []
    blobs: dict[Digest, Descriptor] = {}
    root = image.descriptor
    root_data = store.read_blob(root.digest)
    top: Manifest = store.manifest(root.digest, root.media_type)
    images: list[Manifest] = []
    if top.is_index:
        for child in top.manifests:
            if not store.has_blob(child.digest):
                raise NotFound(f"{image.name or root.digest} is a multi-platform index but its {child.platform or child.digest} "
                               f"manifest is not in the local store; pull it with --all-platforms")
            cm = store.manifest(child.digest, child.media_type)
            if cm.is_index:
                raise ClientError("nested indexes are not supported")
            manifests.append((child, store.read_blob(child.digest)))
            images.append(cm)
    else:
        images.append(top)
    for m in images:
        for desc in m.blobs:
            if not store.has_blob(desc.digest):
                raise NotFound(f"blob {desc.digest} of {image.name or root.digest} is missing from the local store; pull it again")
            blobs.setdefault(desc.digest, desc)
    manifests.append((root, root_data))
    return manifests, blobs


async def push(client: RegistryClient, store: Store, image: Image, dest: Reference, *,
               concurrency: int = DEFAULT_PUSH_CONCURRENCY, chunk_size: int = DEFAULT_CHUNK_SIZE,
               reporter: Reporter | None = None) -> PushResult:
    """Push a stored image to ``dest`` (tag, or digest when ``dest`` has one)."""
    reporter = reporter or QuietReporter()
    host, repo = dest.api_host, dest.repository
    manifests, blobs = await asyncio.to_thread(plan, store, image)
    root_desc, root_data = manifests[-1]
    if dest.digest is not None and dest.digest != root_desc.digest:
        raise ClientError(f"{dest} names digest {dest.digest}, but the local image has digest {root_desc.digest}; push by tag")
    sources = await asyncio.to_thread(store.sources)
    uploader = BlobUploader(client, reporter, chunk_size)
    gate = asyncio.Semaphore(max(1, concurrency))
    counts = {"exists": 0, "mounted": 0, "pushed": 0}

    async def one(desc: Descriptor) -> None:
        async with gate:
            candidates = []
            for where in reversed(sources.get(str(desc.digest), [])):
                src_host, _, src_repo = where.partition("/")
                if src_host == host and src_repo != repo:
                    candidates.append(src_repo)
            status = await uploader.ensure(host, repo, desc, file_opener(store.blob_path(desc.digest)), candidates[:2])
            counts[status] += 1

    await gather_or_cancel(one(d) for d in blobs.values())
    for desc, data in manifests[:-1]:
        await client.put_manifest(host, repo, str(desc.digest), data, desc.media_type)
    target = str(dest.digest) if dest.digest is not None else (dest.tag or "latest")
    digest = await client.put_manifest(host, repo, target, root_data, root_desc.media_type)
    await asyncio.to_thread(store.record_sources, list(blobs) + [d.digest for d, _ in manifests], host, repo)
    return PushResult(dest, digest, len(root_data), counts["pushed"], counts["mounted"], counts["exists"])
