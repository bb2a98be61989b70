"""``berth pull``: registry → local store, verified while streaming, resumable, all-or-nothing.

Guarantees: every blob is hashed as it streams and compared with its digest
and size before it may enter the store; an interrupted download is kept as
``.berth/tmp/<alg>-<hex>.partial`` and resumed with ``Range`` (within the run
after a network error, and by the next ``berth pull``); nothing is committed to
``blobs/`` or ``index.json`` unless every blob of the image verified. Layers
download concurrently (default 3).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from registry.client.errors import DigestMismatch, NetworkError, RegistryResponseError
from registry.client.platforms import Platform, default_platform, select
from registry.client.progress import QuietReporter, Reporter
from registry.client.store import Store, local_name
from registry.client.transport import RegistryClient, gather_or_cancel
from registry.digest import Digest
from registry.manifest import Descriptor, Manifest, ManifestError, parse_manifest
from registry.reference import Reference

DEFAULT_PULL_CONCURRENCY = 3
MAX_RESUMES = 5
WRITE_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class PullResult:
    """What a pull stored."""

    name: str
    descriptor: Descriptor
    downloaded: int
    existing: int
    changed: bool


def parse_or_fail(data: bytes, media_type: str | None, what: str) -> Manifest:
    """Parse a fetched manifest, reporting a registry error for a malformed one."""
    try:
        return parse_manifest(data, media_type)
    except ManifestError as exc:
        raise RegistryResponseError(f"manifest of {what} is invalid: {exc}") from None


def _hash_file(path: Path, hasher: Any) -> int:
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(WRITE_BUFFER):
            hasher.update(chunk)
            size += len(chunk)
    return size


def _write_and_hash(f: Any, hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)
        f.write(chunk)


class BlobFetcher:
    """Downloads blobs into verified staging files of a store (shared by pull and copy-to-store)."""

    def __init__(self, client: RegistryClient, store: Store, reporter: Reporter) -> None:
        self.client = client
        self.store = store
        self.reporter = reporter

    async def fetch(self, host: str, repo: str, desc: Descriptor) -> Path | None:
        """A verified staging file for ``desc`` (None when the store already has it)."""
        digest = desc.digest
        label = digest.hex[:12]
        if await asyncio.to_thread(self.store.has_blob, digest):
            self.reporter.note(label, "already exists")
            return None
        lock = self.store.blob_lock(digest)
        await asyncio.to_thread(lock.acquire)
        try:
            if await asyncio.to_thread(self.store.has_blob, digest):
                self.reporter.note(label, "already exists")
                return None
            partial = self.store.tmp / f"{digest.algorithm}-{digest.hex}.partial"
            hasher = digest.hasher()
            offset = 0
            if await asyncio.to_thread(partial.exists):
                offset = await asyncio.to_thread(_hash_file, partial, hasher)
                if offset > desc.size:
                    await asyncio.to_thread(partial.unlink)
                    hasher, offset = digest.hasher(), 0
            task = self.reporter.task(label, desc.size, "downloading")
            task.reset(offset)
            resumes = 0
            if desc.size == 0:
                await asyncio.to_thread(partial.write_bytes, b"")
            while offset < desc.size:
                try:
                    offset, hasher = await self._stream(host, repo, desc, partial, offset, hasher, task)
                except NetworkError:
                    resumes += 1
                    if resumes > MAX_RESUMES:
                        raise
                    await asyncio.sleep(min(0.2 * resumes, 2.0))
                    offset = await asyncio.to_thread(lambda: partial.stat().st_size if partial.exists() else 0)
                    hasher = digest.hasher()
                    if offset:
                        await asyncio.to_thread(_hash_file, partial, hasher)
                    task.reset(offset)
            if offset != desc.size or hasher.hexdigest() != digest.hex:
                await asyncio.to_thread(partial.unlink, True)
                raise DigestMismatch(f"digest mismatch: blob {digest} from {host}/{repo} "
                                     f"({offset} bytes) does not match its descriptor; nothing was stored")
            verified = self.store.tmp / f"{digest.algorithm}-{digest.hex}.{os.getpid()}-{id(task)}.verified"
            await asyncio.to_thread(os.replace, partial, verified)
            task.finish("downloaded")
            return verified
        finally:
            lock.release()

    async def _stream(self, host: str, repo: str, desc: Descriptor, partial: Path, offset: int, hasher: Any,
                      task: Any) -> tuple[int, Any]:
        async with self.client.open_blob(host, repo, desc.digest, offset) as resp:
            mode = "ab"
            if offset and resp.status == 200:  # the registry ignored Range: start over
                hasher, offset, mode = desc.digest.hasher(), 0, "wb"
                task.reset(0)
            elif not offset:
                mode = "wb"
            f = await asyncio.to_thread(open, partial, mode)
            try:
                pending: list[bytes] = []
                pending_size = 0
                try:
                    async for chunk in resp.content.iter_chunked(256 * 1024):
                        offset += len(chunk)
                        if offset > desc.size:
                            raise DigestMismatch(f"digest mismatch: blob {desc.digest} from {host}/{repo} is larger "
                                                 f"than its descriptor says ({desc.size} bytes); nothing was stored")
                        pending.append(chunk)
                        pending_size += len(chunk)
                        task.advance(len(chunk))
                        if pending_size >= WRITE_BUFFER:
                            await asyncio.to_thread(_write_and_hash, f, hasher, pending)
                            pending, pending_size = [], 0
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    await asyncio.to_thread(_write_and_hash, f, hasher, pending)
                    raise self.client.network_error(host, exc) from None
                await asyncio.to_thread(_write_and_hash, f, hasher, pending)
            finally:
                await asyncio.to_thread(f.close)
            if offset < desc.size:
                raise NetworkError(f"the transfer of {desc.digest} from {host} ended early")
        return offset, hasher


def _undo_verified(store: Store, staged: dict[Digest, Path]) -> None:
    """Turn verified-but-uncommitted files back into partials so a rerun resumes instantly."""
    for digest, path in staged.items():
        partial = store.tmp / f"{digest.algorithm}-{digest.hex}.partial"
        try:
            if partial.exists():
                path.unlink()
            else:
                os.replace(path, partial)
        except FileNotFoundError:
            pass


async def fetch_manifest(client: RegistryClient, ref: Reference) -> tuple[bytes, Manifest, Descriptor]:
    """A manifest's bytes, parsed form and descriptor."""
    result = await client.get_manifest(ref)
    manifest = parse_or_fail(result.data, result.media_type, str(ref))
    return result.data, manifest, Descriptor(manifest.media_type, result.digest, len(result.data))


async def pull(client: RegistryClient, store: Store, ref: Reference, *, platform: Platform | None = None,
               all_platforms: bool = False, concurrency: int = DEFAULT_PULL_CONCURRENCY,
               reporter: Reporter | None = None) -> PullResult:
    """Pull ``ref`` into ``store``; an index resolves to ``platform`` unless ``all_platforms``."""
    reporter = reporter or QuietReporter()
    wanted = platform or default_platform()
    await asyncio.to_thread(store.init)
    adding = store.adding_lock()
    await asyncio.to_thread(adding.acquire)
    try:
        host, repo = ref.api_host, ref.repository
        data, top, top_desc = await fetch_manifest(client, ref)
        manifests: dict[Digest, bytes] = {top_desc.digest: data}
        images: list[Manifest] = []
        root = top_desc
        if top.is_index:
            if all_platforms:
                for child in top.manifests:
                    child_ref = Reference(ref.registry, ref.repository, None, child.digest)
                    cdata, cman, _ = await fetch_manifest(client, child_ref)
                    manifests[child.digest] = cdata
                    if not cman.is_index:
                        images.append(cman)
            else:
                child = select(top.manifests, wanted, str(ref))
                cdata, cman, cdesc = await fetch_manifest(client, Reference(ref.registry, ref.repository, None, child.digest))
                if cman.is_index:
                    raise RegistryResponseError(f"{ref}: nested indexes are not supported without --all-platforms")
                manifests = {child.digest: cdata}
                images.append(cman)
                root = Descriptor(cdesc.media_type, cdesc.digest, cdesc.size, platform=child.platform)
        else:
            if platform is not None:  # asked for explicitly: a single image of another platform is an error
                from registry.client.remote import check_platform

                await check_platform(client, ref, top, platform)
            images.append(top)
        blobs: dict[Digest, Descriptor] = {}
        for image in images:
            for desc in image.blobs:
                blobs.setdefault(desc.digest, desc)
        fetcher = BlobFetcher(client, store, reporter)
        gate = asyncio.Semaphore(max(1, concurrency))
        staged: dict[Digest, Path] = {}

        async def one(desc: Descriptor) -> None:
            async with gate:
                path = await fetcher.fetch(host, repo, desc)
                if path is not None:
                    staged[desc.digest] = path

        try:
            await gather_or_cancel(one(d) for d in blobs.values())
        except BaseException:
            await asyncio.to_thread(_undo_verified, store, staged)
            raise

        def commit() -> None:
            for digest, path in staged.items():
                store.commit_file(path, digest)
            for digest, mdata in manifests.items():
                store.put_blob(mdata, digest)
            store.add_image(local_name(ref), root)
            store.record_sources(list(blobs) + list(manifests), ref.api_host, ref.repository)

        before = await asyncio.to_thread(store.find_name, local_name(ref))
        await asyncio.to_thread(commit)
        changed = before is None or before.digest != root.digest
        return PullResult(local_name(ref), root, len(staged), len(blobs) - len(staged), changed)
    finally:
        adding.release()


def config_of(store: Store, manifest: Manifest) -> dict[str, Any]:
    """The parsed image config of a stored manifest ({} when absent or not JSON)."""
    if manifest.config is None or not store.has_blob(manifest.config.digest):
        return {}
    try:
        doc = json.loads(store.read_blob(manifest.config.digest))
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
