"""Fault injection by wrapping a driver: a hook runs before every forwarded operation.

The hook receives the operation name and its path arguments and may wait (to
interleave with another task deterministically) or raise (to fail the call).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from storage_backends.base import FileInfo, FileWriter, StorageDriver

Hook = Callable[[str, tuple[str, ...]], Awaitable[None]]


async def _no_hook(op: str, paths: tuple[str, ...]) -> None:
    return None


class HookedDriver(StorageDriver):
    """Forwards everything to ``inner`` after ``await hook(operation, paths)``."""

    def __init__(self, inner: StorageDriver, hook: Hook = _no_hook) -> None:
        self.inner = inner
        self.hook = hook
        self.name = inner.name
        self.min_chunk_size = inner.min_chunk_size

    async def get_content(self, path: str) -> bytes:
        await self.hook("get_content", (path,))
        return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes) -> None:
        await self.hook("put_content", (path,))
        await self.inner.put_content(path, data)

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self._read(path, offset, length)

    async def _read(self, path: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        await self.hook("reader", (path,))
        async for chunk in self.inner.reader(path, offset, length):
            yield chunk

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        await self.hook("writer", (path,))
        return await self.inner.writer(path, append)

    async def stat(self, path: str) -> FileInfo:
        await self.hook("stat", (path,))
        return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        await self.hook("list", (path,))
        return await self.inner.list(path)

    async def move(self, source: str, dest: str) -> None:
        await self.hook("move", (source, dest))
        await self.inner.move(source, dest)

    async def delete(self, path: str) -> None:
        await self.hook("delete", (path,))
        await self.inner.delete(path)

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        return self._walk_hooked(path)

    async def _walk_hooked(self, path: str) -> AsyncIterator[FileInfo]:
        await self.hook("walk", (path,))
        async for info in self.inner.walk(path):
            yield info

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    async def redirect_url(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        return await self.inner.redirect_url(path, method, expires_in)

    async def health(self) -> None:
        await self.hook("health", ())
        await self.inner.health()

    async def close(self) -> None:
        return None  # the inner driver belongs to the test's storage fixture

    async def _get_content(self, path: str) -> bytes:
        raise NotImplementedError

    async def _put_content(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def _reader(self, path: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def _writer(self, path: str, append: bool) -> FileWriter:
        raise NotImplementedError

    async def _stat(self, path: str) -> FileInfo:
        raise NotImplementedError

    async def _list(self, path: str) -> list[str]:
        raise NotImplementedError

    async def _move(self, source: str, dest: str) -> None:
        raise NotImplementedError

    async def _delete(self, path: str) -> None:
        raise NotImplementedError

    def _walk(self, path: str) -> AsyncIterator[FileInfo]:
        raise NotImplementedError
