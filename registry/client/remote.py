"""Verbs that work on registries only: ``inspect``, ``tags``, ``delete`` and ``copy``.

``copy`` streams each blob from the source registry into the target (never
through the local store or memory), mounts instead when both references are on
the same registry, verifies every digest on the way, and pushes manifests
byte-for-byte (children before their index) so digests are kept.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp

from registry import mediatypes as mt
from registry.client.errors import DigestMismatch, NetworkError, NoSuchPlatform, RegistryResponseError
from registry.client.platforms import Platform, default_platform, is_attestation, select
from registry.client.progress import QuietReporter, Reporter
from registry.client.pull import fetch_manifest
from registry.client.push import DEFAULT_CHUNK_SIZE, DEFAULT_PUSH_CONCURRENCY, BlobUploader
from registry.client.transport import RegistryClient, gather_or_cancel
from registry.digest import Digest
from registry.manifest import Descriptor, Manifest
from registry.reference import Reference

MAX_CONFIG_SIZE = 16 * 1024 * 1024


async def fetch_config(client: RegistryClient, ref: Reference, desc: Descriptor) -> dict[str, Any]:
    """Download and verify a (small) image config blob."""
    if desc.size > MAX_CONFIG_SIZE:
        return {}
    async with client.open_blob(ref.api_host, ref.repository, desc.digest) as resp:
        try:
            data = await resp.content.read(MAX_CONFIG_SIZE + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise client.network_error(ref.api_host, exc) from None
    if _hash(desc.digest, data) != desc.digest.hex:
        raise DigestMismatch(f"digest mismatch: config {desc.digest} of {ref} does not match its content")
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _hash(digest: Digest, data: bytes) -> str:
    h = digest.hasher()
    h.update(data)
    return str(h.hexdigest())


def _image_summary(manifest: Manifest) -> dict[str, Any]:
    layers = [{"Digest": str(d.digest), "Size": d.size, "MediaType": d.media_type} for d in manifest.layers]
    return {
        "Config": {"Digest": str(manifest.config.digest), "Size": manifest.config.size,
                   "MediaType": manifest.config.media_type} if manifest.config else None,
        "Layers": layers,
        "Size": sum(d.size for d in manifest.layers) + (manifest.config.size if manifest.config else 0),
    }


async def check_platform(client: RegistryClient, ref: Reference, manifest: Manifest, wanted: Platform) -> None:
    """Raise :class:`NoSuchPlatform` when a single-platform image was asked for another platform."""
    if manifest.is_index or manifest.config is None or manifest.config.media_type not in (mt.DOCKER_CONFIG,
                                                                                          mt.OCI_CONFIG):
        return
    cfg = await fetch_config(client, ref, manifest.config)
    if not cfg.get("os") or not cfg.get("architecture"):
        return
    actual = Platform.from_json(cfg)
    if not wanted.matches(actual):
        raise NoSuchPlatform(f"no such platform: {ref} is a single image for {actual}, not {wanted}; "
                             f"drop --platform or pass --platform {actual}")


async def inspect(client: RegistryClient, ref: Reference, *, platform: Platform | None = None) -> dict[str, Any]:
    """A JSON-able description of a remote image: digest, media type, platforms, sizes, config."""
    data, top, desc = await fetch_manifest(client, ref)
    out: dict[str, Any] = {"Name": str(ref), "Digest": str(desc.digest), "MediaType": top.media_type,
                           "ManifestSize": desc.size}
    if top.is_index:
        entries = []
        for child in top.manifests:
            entry: dict[str, Any] = {"Digest": str(child.digest), "MediaType": child.media_type, "ManifestSize": child.size,
                                     "Platform": str(Platform.from_json(child.platform)) if child.platform else None}
            if is_attestation(child):
                entry["Attestation"] = True
            entries.append(entry)

        async def fill(entry: dict[str, Any]) -> None:
            _, cm, _ = await fetch_manifest(client, Reference(ref.registry, ref.repository, None, Digest.parse(entry["Digest"])))
            if not cm.is_index:
                entry["Size"] = _image_summary(cm)["Size"]
                entry["Layers"] = len(cm.layers)

        await asyncio.gather(*(fill(e) for e in entries))
        out["Platforms"] = [e["Platform"] for e in entries if e["Platform"] and not e.get("Attestation")]
        out["Manifests"] = entries
        if platform is None:
            return out
        chosen = select(top.manifests, platform, str(ref))
        _, top, desc = await fetch_manifest(client, Reference(ref.registry, ref.repository, None, chosen.digest))
        out["Selected"] = str(desc.digest)
    elif platform is not None:
        await check_platform(client, ref, top, platform)
    out.update(_image_summary(top))
    if top.config is not None and top.config.media_type in (mt.DOCKER_CONFIG, mt.OCI_CONFIG):
        cfg = await fetch_config(client, ref, top.config)
        inner = cfg.get("config") or {}
        plat = Platform.from_json(cfg) if cfg.get("os") else None
        out["Platforms"] = [str(plat)] if plat else out.get("Platforms", [])
        out["Created"] = cfg.get("created")
        out["Architecture"] = cfg.get("architecture")
        out["Os"] = cfg.get("os")
        if cfg.get("variant"):
            out["Variant"] = cfg.get("variant")
        out["Labels"] = inner.get("Labels") if isinstance(inner, dict) else None
        out["Env"] = inner.get("Env") if isinstance(inner, dict) else None
        out["Entrypoint"] = inner.get("Entrypoint") if isinstance(inner, dict) else None
        out["Cmd"] = inner.get("Cmd") if isinstance(inner, dict) else None
    elif top.artifact_type or top.config is not None:
        out["ArtifactType"] = top.effective_artifact_type
    return out


async def tags(client: RegistryClient, host: str, repo: str) -> list[str]:
    """The tags of a repository."""
    return await client.list_tags(host, repo)


async def delete(client: RegistryClient, ref: Reference) -> Digest | str:
    """Delete a manifest by digest, or a tag (by the spec's tag DELETE, else by resolving it to its digest)."""
    host, repo = ref.api_host, ref.repository
    if ref.digest is not None:
        await client.delete_manifest(host, repo, str(ref.digest))
        return ref.digest
    tag = ref.tag or "latest"
    status = await client.delete_manifest(host, repo, tag)
    if status in (200, 202):
        return tag
    found = await client.head_manifest(ref)
    if found is None:
        raise RegistryResponseError(f"manifest unknown: {ref} not found in {ref.registry}", 404, "MANIFEST_UNKNOWN")
    digest = found[0]
    status = await client.delete_manifest(host, repo, str(digest))
    if status not in (200, 202):
        raise RegistryResponseError(f"{ref.registry} does not allow deletes (HTTP {status}); "
                                    f"enable storage.delete on the registry", status, "UNSUPPORTED")
    return digest


class _StreamedBlob:
    """A :data:`~registry.client.push.RangeOpener` over a source registry's blob, read once, in order.

    A retry that asks for an earlier offset reopens the blob with a ``Range`` request.
    """

    def __init__(self, client: RegistryClient, ref: Reference, desc: Descriptor) -> None:
        self._client = client
        self._ref = ref
        self._desc = desc
        self._cm: Any = None
        self._resp: aiohttp.ClientResponse | None = None
        self._pos = 0

    async def _reopen(self, offset: int) -> None:
        await self.close()
        self._cm = self._client.open_blob(self._ref.api_host, self._ref.repository, self._desc.digest, offset)
        self._resp = await self._cm.__aenter__()
        self._pos = offset
        if offset and self._resp is not None and self._resp.status == 200:
            raise NetworkError(f"{self._ref.registry} ignored a Range request; cannot resume {self._desc.digest}")

    def __call__(self, start: int, length: int) -> AsyncIterator[bytes]:
        return self._gen(start, length)

    async def _gen(self, start: int, length: int) -> AsyncIterator[bytes]:
        if self._resp is None or start != self._pos:
            await self._reopen(start)
        assert self._resp is not None
        remaining = length
        while remaining > 0:
            try:
                chunk = await self._resp.content.read(min(1024 * 1024, remaining))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self._resp = None
                raise self._client.network_error(self._ref.api_host, exc) from None
            if not chunk:
                self._resp = None
                raise NetworkError(f"the transfer of {self._desc.digest} from {self._ref.registry} ended early")
            remaining -= len(chunk)
            self._pos += len(chunk)
            yield chunk

    async def close(self) -> None:
        """Release the source response."""
        if self._cm is not None:
            cm, self._cm, self._resp = self._cm, None, None
            await cm.__aexit__(None, None, None)


@dataclass(frozen=True)
class CopyResult:
    """What a copy sent."""

    digest: Digest
    media_type: str
    copied: int
    mounted: int
    existing: int


async def copy(client: RegistryClient, src: Reference, dst: Reference, *, all_platforms: bool = False,
               platform: Platform | None = None, concurrency: int = DEFAULT_PUSH_CONCURRENCY,
               chunk_size: int = DEFAULT_CHUNK_SIZE, reporter: Reporter | None = None) -> CopyResult:
    """Copy an image (or, with ``all_platforms``, a whole index) from one registry reference to another."""
    reporter = reporter or QuietReporter()
    data, top, top_desc = await fetch_manifest(client, src)
    manifests: list[tuple[Descriptor, bytes]] = []
    images: list[Manifest] = []
    if top.is_index and all_platforms:
        for child in top.manifests:
            cdata, cm, cdesc = await fetch_manifest(client, Reference(src.registry, src.repository, None, child.digest))
            if cm.is_index:
                raise RegistryResponseError(f"{src}: nested indexes are not supported")
            manifests.append((cdesc, cdata))
            images.append(cm)
        manifests.append((top_desc, data))
    elif top.is_index:
        child = select(top.manifests, platform or default_platform(), str(src))
        cdata, cm, cdesc = await fetch_manifest(client, Reference(src.registry, src.repository, None, child.digest))
        manifests.append((cdesc, cdata))
        images.append(cm)
    else:
        if platform is not None:
            await check_platform(client, src, top, platform)
        manifests.append((top_desc, data))
        images.append(top)
    blobs: dict[Digest, Descriptor] = {}
    for m in images:
        for desc in m.blobs:
            blobs.setdefault(desc.digest, desc)
    same_registry = src.api_host == dst.api_host
    uploader = BlobUploader(client, reporter, chunk_size)
    gate = asyncio.Semaphore(max(1, concurrency))
    counts = {"exists": 0, "mounted": 0, "pushed": 0}

    async def one(desc: Descriptor) -> None:
        async with gate:
            stream = _StreamedBlob(client, src, desc)
            try:
                mount = [src.repository] if same_registry and src.repository != dst.repository else []
                status = await uploader.ensure(dst.api_host, dst.repository, desc, stream, mount)
            finally:
                await stream.close()
            counts[status] += 1

    await gather_or_cancel(one(d) for d in blobs.values())
    for desc, mdata in manifests[:-1]:
        await client.put_manifest(dst.api_host, dst.repository, str(desc.digest), mdata, desc.media_type)
    root, root_data = manifests[-1]
    if dst.digest is not None and dst.digest != root.digest:
        raise RegistryResponseError(f"{dst} names digest {dst.digest} but the copied manifest is {root.digest}")
    target = str(dst.digest) if dst.digest is not None else (dst.tag or "latest")
    await client.put_manifest(dst.api_host, dst.repository, target, root_data, root.media_type)
    return CopyResult(root.digest, root.media_type, counts["pushed"], counts["mounted"], counts["exists"])
