"""The referrers of a subject digest (manifests whose ``subject`` names it)."""

from __future__ import annotations

from typing import Any

from storage_backends.base import PathNotFound

from registry import layout
from registry.digest import Digest, InvalidDigest
from registry.manifest import ManifestError, parse_manifest
from registry.services.common import ServiceBase


class Referrers(ServiceBase):
    """Referrer lookups."""

    async def referrers(self, name: str, subject: Digest, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of manifests in ``name`` whose ``subject`` is ``subject``."""
        try:
            paths = await self.driver.list(layout.referrers_dir(name, subject))
        except PathNotFound:
            return []
        out: list[dict[str, Any]] = []
        for alg_dir in paths:
            try:
                entries = await self.driver.list(alg_dir)
            except PathNotFound:
                continue
            for entry in entries:
                try:
                    digest = layout.digest_from_link_path(entry)
                    data = await self.driver.get_content(layout.blob_data(digest))
                    manifest = parse_manifest(data)
                except (InvalidDigest, PathNotFound, ManifestError):
                    continue
                if not await self.driver.exists(layout.revision_link(name, digest)):
                    continue
                desc: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(digest), "size": len(data)}
                kind = manifest.effective_artifact_type
                if kind:
                    desc["artifactType"] = kind
                if manifest.annotations:
                    desc["annotations"] = manifest.annotations
                if artifact_type is None or kind == artifact_type:
                    out.append(desc)
        out.sort(key=lambda d: d["digest"])
        return out



