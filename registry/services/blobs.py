"""Blobs in a repository: existence, links, mounts and unlinking (storage only)."""

from __future__ import annotations

import asyncio

from storage_backends.base import PathNotFound

from registry import layout
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.services.common import BlobInfo, ServiceBase


class Blobs(ServiceBase):
    """Blob lookups and links."""

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


