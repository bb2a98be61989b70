"""Storage backends behind one small contract (see :mod:`storage_backends.base`).

:func:`create_driver` builds a backend by its config name (``filesystem``,
``inmemory``, ``s3``) from that section's parameters.
"""

from __future__ import annotations

from typing import Any, Callable

from storage_backends.base import (
    FileInfo,
    FileWriter,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageUnavailable,
    validate_path,
)

__all__ = [
    "FileInfo",
    "FileWriter",
    "InvalidOffset",
    "InvalidPath",
    "PathNotFound",
    "StorageDriver",
    "StorageError",
    "StorageUnavailable",
    "create_driver",
    "validate_path",
    "BACKENDS",
]


def _filesystem(params: dict[str, Any]) -> StorageDriver:
    from storage_backends.filesystem import FilesystemDriver

    return FilesystemDriver(**params)


def _inmemory(params: dict[str, Any]) -> StorageDriver:
    from storage_backends.inmemory import InMemoryDriver

    return InMemoryDriver(**params)


def _s3(params: dict[str, Any]) -> StorageDriver:
    from storage_backends.s3 import S3Driver

    return S3Driver(**params)


BACKENDS: dict[str, Callable[[dict[str, Any]], StorageDriver]] = {
    "filesystem": _filesystem,
    "inmemory": _inmemory,
    "s3": _s3,
}


def create_driver(name: str, params: dict[str, Any] | None = None) -> StorageDriver:
    """Build the backend registered under ``name`` with its config parameters."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown storage driver {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return factory(dict(params or {}))
