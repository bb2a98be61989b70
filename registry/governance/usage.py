"""Stored bytes per namespace: the seam quotas read (storage now; the metadata index later).

A namespace is a set of repository globs (a ``quotas`` entry). Its stored bytes are the sizes
of the *distinct* blobs linked in its repositories: every ``_layers`` link and every manifest
revision (manifests are blobs too), each digest counted once however many repositories of the
namespace link it. :func:`namespace_usage` computes that from storage through the Registry
services, read-only; it walks every matching repository, so the server calls it only for the
periodic recompute of :class:`registry.governance.quota.QuotaTracker`, never per push. The
metadata index can answer the same question from its tables with the same signature.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from auth.policy import compile_glob
from registry.digest import Digest
from registry.maintenance.scan import bounded, scan_repository
from registry.services import Registry

_glob = functools.lru_cache(maxsize=1024)(compile_glob)


@dataclass(frozen=True)
class NamespaceUsage:
    """The distinct blobs linked in a namespace's repositories: digest -> (size, linking repositories)."""

    blobs: dict[Digest, tuple[int, frozenset[str]]]

    @property
    def bytes(self) -> int:
        """Total stored bytes (each blob once)."""
        return sum(size for size, _ in self.blobs.values())


def matches(patterns: Sequence[str], repository: str) -> bool:
    """Whether ``repository`` is in the namespace of ``patterns`` (policy globs)."""
    return any(_glob(p).fullmatch(repository) for p in patterns)


async def repository_links(registry: Registry, name: str) -> set[Digest]:
    """Every digest linked in ``name``: its ``_layers`` links and manifest revisions."""
    scan = await scan_repository(registry.driver, name)
    return set(scan.layers) | set(scan.revisions)


async def namespace_usage(registry: Registry, patterns: Sequence[str],
                          repositories: Iterable[str] | None = None) -> NamespaceUsage:
    """The namespace's linked blobs with their sizes (blobs whose data is gone are left out)."""
    names = [n for n in (repositories if repositories is not None else await registry.repositories())
             if matches(patterns, n)]
    links = await bounded(names, lambda n: repository_links(registry, n), limit=4)
    owners: dict[Digest, set[str]] = {}
    for name, digests in zip(names, links):
        for digest in digests:
            owners.setdefault(digest, set()).add(name)
    infos = await bounded(list(owners), registry.blob_exists_anywhere)
    return NamespaceUsage({info.digest: (info.size, frozenset(owners[info.digest]))
                           for info in infos if info is not None})


async def usage_by_namespace(registry: Registry, namespaces: Sequence[Sequence[str]]) -> list[NamespaceUsage]:
    """:func:`namespace_usage` for several namespaces from one repository listing."""
    names = await registry.repositories()
    return list(await asyncio.gather(*(namespace_usage(registry, p, names) for p in namespaces)))
