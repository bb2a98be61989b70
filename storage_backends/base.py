"""The storage driver contract: a small, path-keyed, async interface.

Backends implement the ``_``-prefixed primitives of :class:`StorageDriver`;
the public methods validate every path first (absolute, ``/``-separated,
components of ``[A-Za-z0-9._-]`` with no ``.``/``..``), so a backend never
sees a path it must distrust. Backends raise only the typed errors below
(translating provider errors), and import nothing from ``registry`` or
``auth``.

Guarantees every backend must give (checked by
``tests/storage/contract.py``, run unchanged over each backend):

* ``put_content`` is atomic: readers see the old or the new bytes, never a mix.
* A :class:`FileWriter`'s bytes become visible at ``path`` only after
  ``commit()``; ``cancel()`` discards them. ``writer(path, append=True)``
  continues a writer that was committed earlier (possibly by another process).
* ``move`` replaces the destination atomically (or as near as the provider
  allows: S3 copies then deletes the source).
* ``list`` returns the direct children (full paths) of a directory;
  ``walk`` yields every file below a directory, depth first.
* ``delete`` removes a file or a whole directory tree, including the uncommitted
  bytes of any writer below it (an S3 backend aborts its multipart uploads).
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import AsyncIterator

READ_CHUNK = 1 << 20  # bytes per chunk yielded by readers

_COMPONENT_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class StorageError(Exception):
    """Base of the driver's typed errors."""

    def __init__(self, message: str, path: str | None = None, driver: str | None = None) -> None:
        self.path = path
        self.driver = driver
        super().__init__(message)


class PathNotFound(StorageError):
    """Nothing at that path."""


class InvalidPath(StorageError):
    """The path is malformed or tries to leave the root."""


class InvalidOffset(StorageError):
    """A read or append at an offset the object does not have."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached or failed; the request may be retried."""


def validate_path(path: str) -> str:
    """Return ``path`` if it is a clean absolute storage path; raise :class:`InvalidPath`."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidPath(f"path must be absolute: {path!r}", path)
    if path == "/":
        return path
    parts = path[1:].split("/")
    for part in parts:
        if part in ("", ".", "..") or not _COMPONENT_RE.match(part):
            raise InvalidPath(f"invalid path {path!r}", path)
    return path


@dataclass(frozen=True)
class FileInfo:
    """What ``stat`` and ``walk`` report."""

    path: str
    size: int
    modtime: float  # seconds since the epoch
    is_dir: bool = False


class FileWriter(ABC):
    """An append-only writer whose bytes become visible only on :meth:`commit`."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Bytes written so far, including those of earlier committed sessions."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Append ``data``."""

    @abstractmethod
    async def commit(self) -> None:
        """Make everything written visible at the path; the writer is then closed."""

    @abstractmethod
    async def cancel(self) -> None:
        """Discard everything; the path is left as it was before the writer was opened new."""

    @abstractmethod
    async def close(self) -> None:
        """Persist what was written so far so a later ``writer(path, append=True)`` can continue.

        Unlike :meth:`commit` this does not have to make the bytes readable at the path.
        """


class StorageDriver(ABC):
    """Public, validating front of every backend."""

    name: str = "base"
    #: Smallest chunk the backend handles efficiently (advertised as OCI-Chunk-Min-Length).
    min_chunk_size: int = 1
    #: Whether ``walk`` of a large tree costs less than listing it directory by directory
    #: (true for object stores, where a walk is a few flat listings).
    walk_is_cheap: bool = False

    # ---- public API (validates, then calls the primitive) ----
    async def get_content(self, path: str) -> bytes:
        return await self._get_content(validate_path(path))

    async def put_content(self, path: str, data: bytes) -> None:
        await self._put_content(validate_path(path), data)

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Yield the object's bytes from ``offset`` (at most ``length`` bytes) in chunks."""
        if offset < 0 or (length is not None and length < 0):
            raise InvalidOffset(f"invalid offset {offset}", path)
        return self._reader(validate_path(path), offset, length)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        return await self._writer(validate_path(path), append)

    async def stat(self, path: str) -> FileInfo:
        return await self._stat(validate_path(path))

    async def list(self, path: str) -> "builtins.list[str]":
        return await self._list(validate_path(path))

    async def move(self, source: str, dest: str) -> None:
        await self._move(validate_path(source), validate_path(dest))

    async def delete(self, path: str) -> None:
        await self._delete(validate_path(path))

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        return self._walk(validate_path(path))

    async def redirect_url(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        """A URL the client may fetch the object from directly, or None."""
        return await self._redirect_url(validate_path(path), method, expires_in)

    def local_path(self, path: str) -> str | None:
        """A local filesystem path holding the object (for sendfile), or None."""
        return self._local_path(validate_path(path))

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except PathNotFound:
            return False
        return True

    async def find_dirs(self, path: str, markers: tuple[str, ...], skip_prefix: str = "_") -> "builtins.list[str]":
        """Directories below ``path`` that hold a child named in ``markers``, as paths relative to
        ``path``, sorted; children whose name starts with ``skip_prefix`` are not descended into.

        (The catalog: repositories are the directories holding ``_manifests`` or ``_layers``.)
        """
        validate_path(path)
        if self.walk_is_cheap:
            return await self._find_dirs_by_walk(path, markers, skip_prefix)
        return await self._find_dirs_by_listing(path, markers, skip_prefix)

    async def _find_dirs_by_walk(self, path: str, markers: tuple[str, ...], skip_prefix: str) -> "builtins.list[str]":
        found: set[str] = set()
        prefix = "/" if path == "/" else path + "/"
        try:
            async for info in self.walk(path):
                parts = info.path[len(prefix):].split("/")
                for i, part in enumerate(parts[:-1]):
                    if part in markers:
                        found.add("/".join(parts[:i]))
                        break
                    if part.startswith(skip_prefix):
                        break
        except PathNotFound:
            return []
        return sorted(found)

    async def _find_dirs_by_listing(self, path: str, markers: tuple[str, ...], skip_prefix: str) -> "builtins.list[str]":
        import asyncio

        found: list[str] = []
        sem = asyncio.Semaphore(16)

        async def visit(current: str, rel: str) -> None:
            async with sem:
                try:
                    children = await self.list(current)
                except PathNotFound:
                    return
            subdirs = []
            for child in children:
                base = child.rsplit("/", 1)[-1]
                if base in markers:
                    found.append(rel)
                elif not base.startswith(skip_prefix):
                    subdirs.append((child, f"{rel}/{base}" if rel else base))
            await asyncio.gather(*(visit(p, r) for p, r in subdirs))

        await visit(path, "")
        return sorted(set(found))

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release clients and thread pools."""

    async def health(self) -> None:
        """Raise :class:`StorageUnavailable` if the backend cannot serve now."""
        try:
            await self.stat("/")
        except PathNotFound:
            pass

    # ---- primitives a backend implements ----
    @abstractmethod
    async def _get_content(self, path: str) -> bytes: ...

    @abstractmethod
    async def _put_content(self, path: str, data: bytes) -> None: ...

    @abstractmethod
    def _reader(self, path: str, offset: int, length: int | None) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def _writer(self, path: str, append: bool) -> FileWriter: ...

    @abstractmethod
    async def _stat(self, path: str) -> FileInfo: ...

    @abstractmethod
    async def _list(self, path: str) -> "builtins.list[str]": ...

    @abstractmethod
    async def _move(self, source: str, dest: str) -> None: ...

    @abstractmethod
    async def _delete(self, path: str) -> None: ...

    @abstractmethod
    def _walk(self, path: str) -> AsyncIterator[FileInfo]: ...

    async def _redirect_url(self, path: str, method: str, expires_in: int) -> str | None:
        return None

    def _local_path(self, path: str) -> str | None:
        return None
