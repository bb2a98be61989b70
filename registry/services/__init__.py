"""Registry services: the domain logic of blobs, uploads, manifests, tags, referrers and the catalog.

This layer sits between the HTTP handlers and the storage driver, one module per concern:

* :mod:`.blobs` and :mod:`.uploads`: blob bytes, storage only.
* :mod:`.manifests` (manifests and tags), :mod:`.catalog` (repositories, tag lists) and
  :mod:`.referrers`: the metadata.
* :mod:`.tagfacts`: tag facts and the manifest graph retention decides on (the index's seam).
* :mod:`.common`: argument checks, result types and the state every module shares.

Services raise :class:`~registry.errors.RegistryError` for anything the client did wrong;
storage errors other than "not found" propagate as typed driver errors. Paths come only from
:mod:`registry.layout`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from storage_backends.base import StorageDriver

from registry.services.blobs import Blobs
from registry.services.catalog import Catalog
from registry.services.common import (
    BlobInfo,
    PutManifestResult,
    StoredManifest,
    _ByteBoundedCache,
    check_name,
    check_tag,
    parse_digest,
    stored_media_type,
)
from registry.services.manifests import Manifests
from registry.services.referrers import Referrers
from registry.services.state import UploadState
from registry.services.tagfacts import ManifestNode, TagFact, TagFacts
from registry.services.uploads import WRITE_BUFFER, Uploads, _RunningHash

__all__ = ["BlobInfo", "ManifestNode", "PutManifestResult", "TagFact", "Registry", "StoredManifest", "UploadState", "WRITE_BUFFER",
           "check_name", "check_tag", "parse_digest", "stored_media_type"]

MANIFEST_CACHE_BYTES = 32 << 20  # manifest bytes kept in memory, by digest


class Registry(Blobs, Uploads, Manifests, Catalog, Referrers, TagFacts):
    """All registry operations over one storage driver."""

    def __init__(
        self,
        driver: StorageDriver,
        *,
        delete_enabled: bool = False,
        max_manifest_size: int = 4 << 20,
        executor: Any = None,
    ) -> None:
        self.driver = driver
        self.delete_enabled = delete_enabled
        self.max_manifest_size = max_manifest_size
        self._executor = executor
        self._hashes: OrderedDict[str, _RunningHash] = OrderedDict()
        # Manifest bytes by digest: content-addressed, so never stale. Links (tags, revisions)
        # are always read from storage, so replicas and deletes stay visible at once.
        self._manifests = _ByteBoundedCache(MANIFEST_CACHE_BYTES)
        self._upload_locks: dict[str, asyncio.Lock] = {}

