"""Blobs in a repository: existence, links, mounts and unlinking (storage only).

Automatic mount (``POST ?mount=<digest>`` without ``from``) links a blob that is already
stored. Without a pull restriction any stored blob mounts (one ``stat``). With one (an access
policy), the blob mounts only from a repository the caller may pull that links it, found by
:meth:`Blobs.mount_candidates` in bounded work: at most :data:`AUTOMOUNT_CANDIDATES` link checks
over at most :data:`AUTOMOUNT_EXAMINED` repository names per request, never a storage walk
(the repository list is a snapshot refreshed at most every few seconds).
"""

from __future__ import annotations

import asyncio
import bisect
from typing import TYPE_CHECKING, AsyncIterator, Callable

from storage_backends.base import PathNotFound

from registry import layout
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.services.common import BlobInfo, ServiceBase

AUTOMOUNT_CANDIDATES = 32  # repositories checked for a link per automatic mount under a pull restriction
AUTOMOUNT_EXAMINED = 1024  # repository names weighed against the restriction per automatic mount
AUTOMOUNT_CONCURRENCY = 8  # link checks in flight at once

MayPull = Callable[[str], bool]


class Blobs(ServiceBase):
    """Blob lookups and links."""

    if TYPE_CHECKING:
        async def repository_snapshot(self) -> list[str]:
            """Provided by :class:`registry.services.catalog.Catalog`."""

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

    async def mount_candidates(self, digest: Digest, target: str) -> AsyncIterator[str]:
        """Repositories that may link ``digest``, likeliest first: ``target`` itself, then its
        neighbours in the sorted repository list (same namespace first), outward.

        A bounded guess from storage, not an answer: callers check each candidate's link and
        stop after :data:`AUTOMOUNT_EXAMINED` names. This is the seam for the metadata index:
        when it can answer "repositories linking a digest", yield its answer here instead.
        """
        yield target
        names = await self.repository_snapshot()
        right = bisect.bisect_left(names, target)
        left = right - 1
        while left >= 0 or right < len(names):
            if right < len(names):
                if names[right] != target:
                    yield names[right]
                right += 1
            if left >= 0:
                yield names[left]
                left -= 1

    async def find_mount_source(self, digest: Digest, target: str, may_pull: MayPull) -> str | None:
        """A repository ``may_pull`` allows that links ``digest``, or None (bounded work, see the module)."""
        batch: list[str] = []
        checked = examined = 0
        async for name in self.mount_candidates(digest, target):
            examined += 1
            if examined > AUTOMOUNT_EXAMINED or checked >= AUTOMOUNT_CANDIDATES:
                break
            if not may_pull(name):
                continue
            batch.append(name)
            checked += 1
            if len(batch) == AUTOMOUNT_CONCURRENCY:
                found = await self._first_linking(batch, digest)
                if found is not None:
                    return found
                batch = []
        return await self._first_linking(batch, digest) if batch else None

    async def _first_linking(self, names: list[str], digest: Digest) -> str | None:
        linked = await asyncio.gather(*(self.driver.exists(layout.layer_link(n, digest)) for n in names))
        return next((n for n, ok in zip(names, linked) if ok), None)

    async def auto_mount(self, name: str, digest: Digest, may_pull: MayPull | None) -> tuple[BlobInfo, str] | None:
        """Mount ``digest`` into ``name`` without a ``from``: (blob, source repository or "") or None.

        ``may_pull`` None means the caller may pull everything: any stored blob mounts. Otherwise
        only a blob linked from a repository ``may_pull`` allows does, so a digest alone never
        reveals a blob the caller could not fetch.
        """
        info = await self.blob_exists_anywhere(digest)
        if info is None:
            return None
        source = ""
        if may_pull is not None:
            found = await self.find_mount_source(digest, name, may_pull)
            if found is None:
                return None
            source = found if found != name else ""
        await self.link_blob(name, digest)
        return info, source

