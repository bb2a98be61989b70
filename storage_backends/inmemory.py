"""The in-memory backend: for tests and development; nothing survives the process."""

from __future__ import annotations

import time
from typing import AsyncIterator

from storage_backends.base import (
    READ_CHUNK,
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
)


class _MemWriter(FileWriter):
    def __init__(self, driver: "InMemoryDriver", path: str, data: bytearray) -> None:
        self._driver = driver
        self._path = path
        self._buf = data
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._buf)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("writer is closed")
        self._buf += data

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._driver._partials[self._path] = self._buf

    async def commit(self) -> None:
        self._closed = True
        self._driver._partials.pop(self._path, None)
        self._driver._files[self._path] = (bytes(self._buf), time.time())

    async def cancel(self) -> None:
        self._closed = True
        self._driver._partials.pop(self._path, None)


class InMemoryDriver(StorageDriver):
    """A dict of path -> bytes; directories are implied by paths."""

    name = "inmemory"
    walk_is_cheap = True

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, float]] = {}
        self._partials: dict[str, bytearray] = {}

    def _children(self, path: str) -> list[str]:
        prefix = "/" if path == "/" else path + "/"
        return [p for p in self._files if p.startswith(prefix)]

    async def _get_content(self, path: str) -> bytes:
        try:
            return self._files[path][0]
        except KeyError:
            raise PathNotFound(f"path not found: {path}", path, self.name) from None

    async def _put_content(self, path: str, data: bytes) -> None:
        self._files[path] = (bytes(data), time.time())

    async def _reader(self, path: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        data = await self._get_content(path)
        if offset > len(data):
            raise InvalidOffset(f"offset {offset} beyond size {len(data)}", path, self.name)
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, READ_CHUNK):
            yield data[start:min(end, start + READ_CHUNK)]

    async def _writer(self, path: str, append: bool) -> FileWriter:
        if not append:
            self._partials.pop(path, None)
            return _MemWriter(self, path, bytearray())
        if path in self._partials:
            return _MemWriter(self, path, bytearray(self._partials[path]))
        if path in self._files:
            return _MemWriter(self, path, bytearray(self._files[path][0]))
        return _MemWriter(self, path, bytearray())

    async def _stat(self, path: str) -> FileInfo:
        if path in self._files:
            data, mtime = self._files[path]
            return FileInfo(path, len(data), mtime)
        children = self._children(path)
        if children or path == "/":
            return FileInfo(path, 0, max((self._files[c][1] for c in children), default=0.0), True)
        raise PathNotFound(f"path not found: {path}", path, self.name)

    async def _list(self, path: str) -> list[str]:
        if path in self._files:
            raise PathNotFound(f"not a directory: {path}", path, self.name)
        prefix = "/" if path == "/" else path + "/"
        names = {p[len(prefix):].split("/", 1)[0] for p in self._children(path)}
        if not names and path != "/":
            raise PathNotFound(f"path not found: {path}", path, self.name)
        return sorted(prefix + n for n in names)

    async def _move(self, source: str, dest: str) -> None:
        if source not in self._files:
            raise PathNotFound(f"path not found: {source}", source, self.name)
        self._files[dest] = self._files.pop(source)

    async def _delete(self, path: str) -> None:
        victims = self._children(path)
        if path in self._files:
            victims.append(path)
        if not victims:
            raise PathNotFound(f"path not found: {path}", path, self.name)
        for v in victims:
            del self._files[v]
        prefix = path + "/"
        for p in [p for p in self._partials if p == path or p.startswith(prefix)]:
            del self._partials[p]

    async def _walk(self, path: str) -> AsyncIterator[FileInfo]:
        children = sorted(self._children(path))
        if not children and path != "/":
            raise PathNotFound(f"path not found: {path}", path, self.name)
        for p in children:
            data, mtime = self._files[p]
            yield FileInfo(p, len(data), mtime)
