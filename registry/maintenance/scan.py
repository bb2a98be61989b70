"""Reading what references what: repositories, their links, stored blobs, and manifest references.

Garbage collection and disk usage both start from the same read of storage.
This module owns that read; it never writes. Paths come from
:mod:`registry.layout`; the link file's *path* names the digest (as
Distribution reads it), its content is not trusted.

A manifest's references are read leniently: every ``digest`` in ``config``,
``layers``, ``manifests`` and ``subject`` (and a schema1 manifest's
``fsLayers[].blobSum``, which a ``registry:2`` data directory may still hold),
without the validation a push gets — garbage collection must see every blob a
stored manifest names, whatever the manifest's age or dialect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from registry import layout
from registry.digest import Digest, InvalidDigest
from registry.services import Registry
from storage_backends.base import FileInfo, PathNotFound, StorageDriver

T = TypeVar("T")
R = TypeVar("R")

CONCURRENCY = 16  # storage calls a scan keeps in flight


class UnreadableManifest(Exception):
    """A stored manifest that is not JSON: its references cannot be known."""


@dataclass(frozen=True)
class ManifestRefs:
    """What one stored manifest points at."""

    blobs: tuple[Digest, ...] = ()  # config and layers
    children: tuple[Digest, ...] = ()  # an index's manifests
    subject: Digest | None = None

    @property
    def all(self) -> tuple[Digest, ...]:
        """Every digest the manifest names (blobs, children, not the subject)."""
        return self.blobs + self.children


@dataclass
class RepositoryScan:
    """One repository's links, with the link files' modification times."""

    name: str
    revisions: dict[Digest, float] = field(default_factory=dict)  # manifest revisions
    tags: dict[str, Digest] = field(default_factory=dict)  # tag -> current digest
    layers: dict[Digest, float] = field(default_factory=dict)  # blobs linked into the repository


@dataclass(frozen=True)
class BlobScan:
    """One stored blob."""

    digest: Digest
    size: int
    modtime: float


def _digest(text: Any) -> Digest | None:
    if not isinstance(text, str):
        return None
    try:
        return Digest.parse(text)
    except InvalidDigest:
        return None


def manifest_refs(data: bytes) -> ManifestRefs:
    """The digests a stored manifest names; raises :class:`UnreadableManifest` if it is not a JSON object."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableManifest(str(exc)) from None
    if not isinstance(doc, dict):
        raise UnreadableManifest("not a JSON object")

    def digests_of(items: Any, key: str = "digest") -> list[Digest]:
        out = []
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and (d := _digest(item.get(key))) is not None:
                    out.append(d)
        return out

    blobs: list[Digest] = []
    config = doc.get("config")
    if isinstance(config, dict) and (d := _digest(config.get("digest"))) is not None:
        blobs.append(d)
    blobs += digests_of(doc.get("layers"))
    blobs += digests_of(doc.get("fsLayers"), "blobSum")
    subject = doc.get("subject")
    return ManifestRefs(
        blobs=tuple(dict.fromkeys(blobs)),
        children=tuple(dict.fromkeys(digests_of(doc.get("manifests")))),
        subject=_digest(subject.get("digest")) if isinstance(subject, dict) else None,
    )


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int = CONCURRENCY) -> list[R]:
    """``fn`` over ``items`` with at most ``limit`` calls in flight; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with sem:
            return await fn(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


async def _walk(driver: StorageDriver, path: str) -> AsyncIterator[FileInfo]:
    try:
        async for info in driver.walk(path):
            yield info
    except PathNotFound:
        return


async def _links(driver: StorageDriver, directory: str) -> dict[Digest, float]:
    """``<alg>/<hex>/link`` files directly below ``directory``: digest -> modtime."""
    out: dict[Digest, float] = {}
    prefix = directory.rstrip("/") + "/"
    async for info in _walk(driver, directory):
        rel = info.path[len(prefix):].split("/")
        if len(rel) != 3 or rel[2] != "link":
            continue
        d = _digest(f"{rel[0]}:{rel[1]}")
        if d is not None:
            out[d] = info.modtime
    return out


async def _tags(driver: StorageDriver, name: str) -> dict[str, Digest]:
    directory = layout.tags_dir(name)
    prefix = directory + "/"
    paths = [info.path async for info in _walk(driver, directory)
             if info.path.endswith("/current/link") and info.path[len(prefix):].count("/") == 2]

    async def read(path: str) -> tuple[str, Digest | None]:
        tag = path[len(prefix):].split("/")[0]
        try:
            return tag, _digest((await driver.get_content(path)).decode("utf-8", "replace").strip())
        except PathNotFound:
            return tag, None

    return {tag: d for tag, d in await bounded(paths, read) if d is not None}


async def scan_repository(driver: StorageDriver, name: str) -> RepositoryScan:
    """Revisions, current tags and layer links of ``name``."""
    revisions, tags, layers = await asyncio.gather(
        _links(driver, layout.revisions_dir(name)),
        _tags(driver, name),
        _links(driver, layout.layers_dir(name)),
    )
    return RepositoryScan(name, revisions, tags, layers)


async def scan_repositories(driver: StorageDriver) -> dict[str, RepositoryScan]:
    """Every repository (a directory holding ``_manifests`` or ``_layers``), by name."""
    names = await Registry(driver).repositories()
    scans = await bounded(names, lambda n: scan_repository(driver, n), limit=4)
    return {s.name: s for s in scans}


async def linked_digests(driver: StorageDriver, names: Iterable[str]) -> set[Digest]:
    """Every digest linked into ``_layers`` of the named repositories (and of any created since)."""
    names = set(names) | set(await Registry(driver).repositories())
    found = await bounded(sorted(names), lambda n: _links(driver, layout.layers_dir(n)), limit=4)
    return {d for links in found for d in links}


async def scan_blobs(driver: StorageDriver) -> dict[Digest, BlobScan]:
    """Every stored blob (``blobs/<alg>/<xx>/<hex>/data``): digest -> size and modtime."""
    out: dict[Digest, BlobScan] = {}
    async for info in _walk(driver, layout.BLOBS):
        parts = info.path.split("/")
        if len(parts) < 5 or parts[-1] != "data" or parts[-2][:2] != parts[-3]:
            continue
        d = _digest(f"{parts[-4]}:{parts[-2]}")
        if d is not None:
            out[d] = BlobScan(d, info.size, info.modtime)
    return out


class ManifestReader:
    """Reads manifests' references once per digest (manifests are content-addressed)."""

    def __init__(self, driver: StorageDriver, fallback: Callable[[Digest], str] | None = None) -> None:
        self.driver = driver
        self.fallback = fallback  # another place a manifest's bytes may be (GC's quarantine)
        self._cache: dict[Digest, ManifestRefs | None] = {}
        self.unreadable: dict[Digest, str] = {}

    async def refs(self, digest: Digest) -> ManifestRefs | None:
        """The manifest's references; None if its data is missing or unreadable (see ``unreadable``)."""
        if digest in self._cache:
            return self._cache[digest]
        try:
            data = await self._read(digest)
            refs: ManifestRefs | None = manifest_refs(data) if data is not None else None
        except UnreadableManifest as exc:
            self.unreadable[digest] = str(exc)
            refs = None
        self._cache[digest] = refs
        return refs

    async def _read(self, digest: Digest) -> bytes | None:
        paths = [layout.blob_data(digest)] + ([self.fallback(digest)] if self.fallback else [])
        for path in paths:
            try:
                return await self.driver.get_content(path)
            except PathNotFound:
                continue
        return None

    def forget(self, digest: Digest) -> None:
        """Drop a cached answer (the manifest may have been stored since)."""
        self._cache.pop(digest, None)

    async def prefetch(self, digests: Iterable[Digest]) -> None:
        """Read many manifests concurrently (bounded)."""
        todo = [d for d in dict.fromkeys(digests) if d not in self._cache]
        await bounded(todo, self.refs)

    async def closure(self, roots: Iterable[Digest]) -> set[Digest]:
        """``roots`` and every manifest reachable through index children."""
        seen: set[Digest] = set()
        frontier = list(dict.fromkeys(roots))
        while frontier:
            frontier = [d for d in frontier if d not in seen]
            seen.update(frontier)
            await self.prefetch(frontier)
            nxt: list[Digest] = []
            for d in frontier:
                refs = self._cache.get(d)
                if refs is not None:
                    nxt += [c for c in refs.children if c not in seen]
            frontier = nxt
        return seen

    async def referenced(self, manifests: Iterable[Digest]) -> set[Digest]:
        """The manifests themselves and every blob and child they name."""
        out: set[Digest] = set()
        for d in await self.closure(manifests):
            out.add(d)
            refs = self._cache.get(d)
            if refs is not None:
                out.update(refs.all)
        return out

    def cached(self, digest: Digest) -> ManifestRefs | None:
        """The references of a manifest read before (None if not read, missing or unreadable)."""
        return self._cache.get(digest)
