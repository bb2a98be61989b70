"""What retention needs to know about a repository: tag facts and the manifest graph (read-only), and
the one write it adds, removing an untagged manifest revision.

This is the seam the metadata index will back later with the same signatures: today the facts
come from storage. A tag's ``pushed_at`` is the modification time of its ``current/link`` (a
push or a move rewrites it); ``pulled_at`` is None, because storage records no pulls (so a
``pulledwithin`` retention rule keeps nothing until the index records pulls).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry import layout
from registry.digest import Digest, InvalidDigest
from registry.manifest import ManifestError, parse_manifest
from registry.services.common import ServiceBase
from storage_backends.base import PathNotFound


@dataclass(frozen=True)
class TagFact:
    """One tag: what it points at, when it was pushed (or last moved), when last pulled (None: unknown)."""

    tag: str
    digest: Digest
    pushed_at: float
    pulled_at: float | None = None


@dataclass(frozen=True)
class ManifestNode:
    """One manifest revision of a repository and what it refers to."""

    digest: Digest
    pushed_at: float  # the revision link's modification time (rewritten by every push of it)
    children: tuple[Digest, ...] = ()  # an index's manifests
    subject: Digest | None = None


class TagFacts(ServiceBase):
    """Read-only facts about tags and manifests, and untagged-manifest removal."""

    async def tag_fact(self, name: str, tag: str) -> TagFact | None:
        """The tag's digest and push time; None when the tag does not exist (or is unreadable)."""
        path = layout.tag_current_link(name, tag)
        try:
            info = await self.driver.stat(path)
            digest = Digest.parse((await self.driver.get_content(path)).decode().strip())
        except (PathNotFound, InvalidDigest, UnicodeDecodeError):
            return None
        return TagFact(tag, digest, info.modtime)

    async def tag_facts(self, name: str) -> list[TagFact]:
        """Every tag of ``name`` with its digest and push time (tags that vanish meanwhile are left out)."""
        from registry.maintenance.scan import bounded
        from registry.reference import is_valid_tag

        try:
            paths = await self.driver.list(layout.tags_dir(name))
        except PathNotFound:
            return []
        tags = [p.rsplit("/", 1)[-1] for p in paths]
        facts = await bounded([t for t in tags if is_valid_tag(t)], lambda t: self.tag_fact(name, t))
        return sorted((f for f in facts if f is not None), key=lambda f: f.tag)

    async def manifest_graph(self, name: str) -> dict[Digest, ManifestNode]:
        """Every manifest revision of ``name`` with its children, subject and push time."""
        from registry.maintenance.scan import UnreadableManifest, bounded, manifest_refs

        directory = layout.revisions_dir(name)
        prefix = directory + "/"
        links: list[tuple[Digest, float]] = []
        try:
            async for info in self.driver.walk(directory):
                rel = info.path[len(prefix):].split("/")
                if len(rel) == 3 and rel[2] == "link":
                    try:
                        links.append((Digest.parse(f"{rel[0]}:{rel[1]}"), info.modtime))
                    except InvalidDigest:
                        continue
        except PathNotFound:
            return {}

        async def node(item: tuple[Digest, float]) -> ManifestNode:
            digest, modtime = item
            try:
                refs = manifest_refs(await self.driver.get_content(layout.blob_data(digest)))
            except (PathNotFound, UnreadableManifest):
                return ManifestNode(digest, modtime)
            return ManifestNode(digest, modtime, refs.children, refs.subject)

        return {n.digest: n for n in await bounded(links, node)}

    async def revision_pushed_at(self, name: str, digest: Digest) -> float | None:
        """The modification time of the manifest's revision link; None if it is gone."""
        try:
            return (await self.driver.stat(layout.revision_link(name, digest))).modtime
        except PathNotFound:
            return None

    async def delete_untagged_manifest(self, name: str, digest: Digest) -> bool:
        """Remove a manifest revision (and its referrer link) that the caller found untagged.

        Unlike :meth:`delete_manifest` it does not scan the tags (retention has just read
        them); returns False if the revision was already gone. Needs deletes enabled.
        """
        self._require_delete()
        revision = layout.revision_link(name, digest)
        try:
            manifest = parse_manifest(await self.driver.get_content(layout.blob_data(digest)))
            if manifest.subject is not None:
                link = layout.referrer_link(name, manifest.subject.digest, digest)
                await self.driver.delete(link.rsplit("/", 1)[0])
        except (PathNotFound, ManifestError):
            pass
        try:
            await self.driver.delete(revision.rsplit("/", 1)[0])
        except PathNotFound:
            return False
        return True
