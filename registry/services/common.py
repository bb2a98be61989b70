"""What every service module shares: argument checks, result types, the manifest cache."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage_backends.base import StorageDriver

from registry import mediatypes as mt
from registry.digest import Digest, InvalidDigest
from registry.errors import ErrorCode, RegistryError
from registry.manifest import Manifest, ManifestError, detect_media_type
from registry.reference import is_valid_name, is_valid_tag


def parse_digest(value: str, code: ErrorCode = ErrorCode.DIGEST_INVALID) -> Digest:
    """Parse a client-supplied digest or raise ``code`` (400)."""
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise RegistryError(code, str(exc), {"digest": value[:200]}) from None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, "invalid repository name", {"name": name[:300]})
    return name


def check_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, "invalid tag", {"tag": tag[:200]})
    return tag


class _ByteBoundedCache:
    """An LRU of stored manifests bounded by the total size of their bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._items: OrderedDict[Digest, "StoredManifest"] = OrderedDict()

    def get(self, key: Digest) -> "StoredManifest | None":
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Digest, item: "StoredManifest") -> None:
        if len(item.data) > self._limit // 16 or key in self._items:
            return
        self._items[key] = item
        self._size += len(item.data)
        while self._size > self._limit:
            _, old = self._items.popitem(last=False)
            self._size -= len(old.data)


@dataclass
class _RunningHash:
    offset: int
    hasher: Any
    algorithm: str


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    data: bytes


@dataclass(frozen=True)
class PutManifestResult:
    digest: Digest
    manifest: Manifest
    tags: tuple[str, ...]




class ServiceBase:
    """State every service module shares; :class:`registry.services.Registry` sets it."""

    driver: StorageDriver
    delete_enabled: bool
    max_manifest_size: int
    _executor: Any

    async def _hash(self, hasher: Any, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, hasher.update, data)

    def _require_delete(self) -> None:
        if not self.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry")


def stored_media_type(data: bytes) -> str:
    """The media type of stored manifest bytes (from their ``mediaType``, else their shape)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return mt.OCI_MANIFEST
    if not isinstance(doc, dict):
        return mt.OCI_MANIFEST
    if doc.get("schemaVersion") == 1:  # written by an old registry; served as it is
        return mt.DOCKER_MANIFEST_V1_SIGNED if "signatures" in doc else mt.DOCKER_MANIFEST_V1
    try:
        return detect_media_type(doc, None)
    except ManifestError:
        return mt.OCI_MANIFEST


def _parse_time(text: str) -> float:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python < 3.11 cannot parse nanoseconds; trim to microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        frac = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(frac):]
        text = f"{head}.{frac[:6]}{zone}"
    return datetime.fromisoformat(text).timestamp()
