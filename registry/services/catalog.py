"""Repositories and their tag lists."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from storage_backends.base import PathNotFound

from registry import layout
from registry.errors import ErrorCode, RegistryError
from registry.reference import is_valid_name, is_valid_tag
from registry.services.common import ServiceBase


REPOSITORY_SNAPSHOT_TTL = 10.0  # seconds a repository list snapshot serves automatic mounts


class RepositorySnapshot:
    """The sorted repository list, listed at most once per ``ttl`` seconds and by one task at a time.

    For lookups that may be a little stale (a repository created since is simply not a
    candidate yet), never for the catalog API.
    """

    def __init__(self, ttl: float = REPOSITORY_SNAPSHOT_TTL) -> None:
        self.ttl = ttl
        self._names: list[str] = []
        self._taken = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, list_names: Callable[[], Awaitable[list[str]]]) -> list[str]:
        """The snapshot, refreshed with ``list_names`` when older than the TTL."""
        if time.monotonic() - self._taken < self.ttl:
            return self._names
        async with self._lock:
            if time.monotonic() - self._taken >= self.ttl:
                self._names = await list_names()
                self._taken = time.monotonic()
        return self._names


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

    async def repository_snapshot(self) -> list[str]:
        """:meth:`repositories`, at most :data:`REPOSITORY_SNAPSHOT_TTL` seconds old (see :class:`RepositorySnapshot`)."""
        snapshot = getattr(self, "_repository_snapshot", None)
        if snapshot is None:
            snapshot = self._repository_snapshot = RepositorySnapshot()
        return await snapshot.get(self.repositories)


