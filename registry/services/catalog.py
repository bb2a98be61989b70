"""Repositories and their tag lists."""

from __future__ import annotations

from storage_backends.base import PathNotFound

from registry import layout
from registry.errors import ErrorCode, RegistryError
from registry.reference import is_valid_name, is_valid_tag
from registry.services.common import ServiceBase


class Catalog(ServiceBase):
    """Repository and tag listings."""

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


