"""Manifests and tags: validation, storage order (blob, revision link, tag links), deletes.

A manifest is stored as a blob, then its revision link, then its tag links: a reader that
finds a tag always finds the manifest and every blob it names.
"""

from __future__ import annotations

import asyncio

from storage_backends.base import PathNotFound

from registry import layout
from registry.digest import Digest, InvalidDigest
from registry.errors import ErrorCode, RegistryError
from registry.manifest import Manifest, ManifestError, parse_manifest
from registry.reference import is_valid_tag
from registry.services.common import (
    PutManifestResult,
    ServiceBase,
    StoredManifest,
    check_tag,
    parse_digest,
    stored_media_type,
)


class Manifests(ServiceBase):
    """Manifest and tag operations."""

    async def resolve_tag(self, name: str, tag: str) -> Digest:
        try:
            raw = await self.driver.get_content(layout.tag_current_link(name, tag))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag}) from None
        return Digest.parse(raw.decode().strip())

    async def get_manifest(self, name: str, reference: str) -> StoredManifest:
        """A manifest by tag or digest, with the media type clients expect."""
        if ":" in reference:
            digest = parse_digest(reference)
            if not await self.driver.exists(layout.revision_link(name, digest)):
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": reference})
        else:
            if not is_valid_tag(reference):
                # No such tag can exist; the conformance suite expects 404 here, not 400.
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": reference[:200]})
            digest = await self.resolve_tag(name, reference)
        cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        try:
            data = await self.driver.get_content(layout.blob_data(digest))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)}) from None
        stored = StoredManifest(digest, stored_media_type(data), data)
        self._manifests.put(digest, stored)
        return stored

    async def put_manifest(
        self,
        name: str,
        reference: str,
        data: bytes,
        content_type: str | None,
        extra_tags: tuple[str, ...] = (),
    ) -> PutManifestResult:
        """Validate and store a manifest; tag it by ``reference`` (if a tag) and ``extra_tags``."""
        if len(data) > self.max_manifest_size:
            raise RegistryError(ErrorCode.SIZE_TOO_LARGE, "manifest too large",
                                {"limit": self.max_manifest_size}, status=413)
        tags: list[str] = []
        if ":" in reference:
            expected: Digest | None = parse_digest(reference)
        else:
            expected = None
            tags.append(check_tag(reference))
        for tag in extra_tags:
            check_tag(tag)
            if tag not in tags:
                tags.append(tag)
        try:
            manifest = parse_manifest(data, content_type)
        except ManifestError as exc:
            raise RegistryError(ErrorCode.MANIFEST_INVALID, str(exc)) from None
        algorithm = expected.algorithm if expected else "sha256"
        digest = Digest.from_bytes(data, algorithm)
        if expected is not None and digest != expected:
            raise RegistryError(ErrorCode.DIGEST_INVALID, "manifest digest does not match the reference",
                                {"expected": str(expected), "computed": str(digest)})
        await self._check_references(name, manifest)
        await self.driver.put_content(layout.blob_data(digest), data)  # small; rewriting is cheap
        await self.driver.put_content(layout.revision_link(name, digest), str(digest).encode())
        if manifest.subject is not None:
            await self.driver.put_content(
                layout.referrer_link(name, manifest.subject.digest, digest), str(digest).encode())
        for tag in tags:
            await self.tag_manifest(name, tag, digest)
        return PutManifestResult(digest, manifest, tuple(tags))

    async def _check_references(self, name: str, manifest: Manifest) -> None:
        async def check_blob(desc_digest: Digest) -> Digest | None:
            try:
                await self.blob_info(name, desc_digest)
            except RegistryError:
                return desc_digest
            return None

        async def check_child(desc_digest: Digest) -> Digest | None:
            if await self.driver.exists(layout.revision_link(name, desc_digest)):
                return None
            return desc_digest

        if manifest.is_index:
            missing = [d for d in await asyncio.gather(*(check_child(c.digest) for c in manifest.manifests)) if d]
            if missing:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, "index references unknown manifests",
                                    {"digests": [str(d) for d in missing]}, status=400)
            return
        missing = [d for d in await asyncio.gather(*(check_blob(b.digest) for b in manifest.blobs)) if d]
        if missing:
            raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail={"digests": [str(d) for d in missing]})

    async def tag_manifest(self, name: str, tag: str, digest: Digest) -> None:
        link = str(digest).encode()
        await asyncio.gather(self.driver.put_content(layout.tag_index_link(name, tag, digest), link),
                             self.driver.put_content(layout.tag_current_link(name, tag), link))

    async def tagged_digest(self, name: str, tag: str) -> Digest | None:
        """The digest ``tag`` points at, or None when the tag does not exist."""
        try:
            return await self.resolve_tag(name, tag)
        except RegistryError:
            return None

    async def delete_manifest(self, name: str, digest: Digest) -> list[str]:
        """Delete a manifest revision and every tag of ``name`` pointing at it; returns the tags."""
        self._require_delete()
        revision = layout.revision_link(name, digest)
        if not await self.driver.exists(revision):
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)})
        removed: list[str] = []
        for tag in await self.tags(name):
            try:
                if await self.resolve_tag(name, tag) == digest:
                    await self.driver.delete(layout.tag_dir(name, tag))
                    removed.append(tag)
            except (RegistryError, PathNotFound, InvalidDigest):
                continue
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
            pass
        return removed

    async def delete_tag(self, name: str, tag: str) -> Digest:
        self._require_delete()
        digest = await self.resolve_tag(name, tag)
        try:
            await self.driver.delete(layout.tag_dir(name, tag))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag}) from None
        return digest


