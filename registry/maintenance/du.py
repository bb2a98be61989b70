"""Storage used per repository (``berth du`` and ``GET /admin/du``).

A repository *uses* every blob it links (``_layers``), every manifest revision
it holds, and every blob and child manifest those manifests name. Blobs are
shared between repositories, so each repository reports the bytes it uses
(``bytes``) and the bytes no other repository uses (``exclusiveBytes``: what
deleting the repository and collecting garbage would free). The totals count
each stored blob once; ``unreferencedBytes`` is what a garbage collection
without a grace period would free (blobs no manifest names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.digest import Digest
from registry.maintenance.scan import ManifestReader, scan_blobs, scan_repositories
from storage_backends.base import StorageDriver


@dataclass(frozen=True)
class RepositoryUsage:
    """One repository's share of storage."""

    name: str
    manifests: int
    tags: int
    blobs: int
    bytes: int
    exclusive_bytes: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "manifests": self.manifests, "tags": self.tags, "blobs": self.blobs,
                "bytes": self.bytes, "exclusiveBytes": self.exclusive_bytes}


@dataclass(frozen=True)
class Usage:
    """Storage used by every repository, and in total."""

    repositories: list[RepositoryUsage] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    unreferenced_blobs: int = 0
    unreferenced_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (what ``GET /admin/du`` answers)."""
        return {
            "repositories": [r.to_json() for r in self.repositories],
            "total": {"blobs": self.blobs, "bytes": self.bytes, "unreferencedBlobs": self.unreferenced_blobs,
                      "unreferencedBytes": self.unreferenced_bytes},
        }


async def disk_usage(driver: StorageDriver) -> Usage:
    """Measure storage per repository (reads links, blob sizes and every manifest; writes nothing)."""
    repos = await scan_repositories(driver)
    blobs = await scan_blobs(driver)
    reader = ManifestReader(driver)
    used: dict[str, set[Digest]] = {}
    referenced: set[Digest] = set()
    for name, repo in repos.items():
        by_manifests = await reader.referenced(repo.revisions)
        referenced |= by_manifests
        used[name] = (set(repo.layers) | by_manifests) & blobs.keys()
    owners: dict[Digest, int] = {}
    for digests in used.values():
        for d in digests:
            owners[d] = owners.get(d, 0) + 1
    rows = []
    for name, repo in sorted(repos.items()):
        digests = used[name]
        rows.append(RepositoryUsage(
            name=name,
            manifests=len(repo.revisions),
            tags=len(repo.tags),
            blobs=len(digests),
            bytes=sum(blobs[d].size for d in digests),
            exclusive_bytes=sum(blobs[d].size for d in digests if owners[d] == 1),
        ))
    unreferenced = [b for d, b in blobs.items() if d not in referenced]
    return Usage(
        repositories=rows,
        blobs=len(blobs),
        bytes=sum(b.size for b in blobs.values()),
        unreferenced_blobs=len(unreferenced),
        unreferenced_bytes=sum(b.size for b in unreferenced),
    )


def human(size: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
