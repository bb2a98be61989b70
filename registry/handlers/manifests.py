"""Manifest handlers: ``HEAD``/``GET``/``PUT``/``DELETE /v2/<name>/manifests/<reference>``."""

from __future__ import annotations

from aiohttp import web

from registry.appkeys import TAG_OVERWRITE_CHECK
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.handlers.common import config_of, emit, registry_of, url_for
from registry.manifest import ManifestError, parse_manifest
from registry.routes import Route
from registry.services import check_tag, parse_digest


async def get_manifest(request: web.Request, route: Route) -> web.StreamResponse:
    stored = await registry_of(request).get_manifest(route.name, route.reference)
    etag = f'"{stored.digest}"'
    headers = {
        "Docker-Content-Digest": str(stored.digest),
        "ETag": etag,
    }
    inm = request.headers.get("If-None-Match")
    if inm and etag in [t.strip() for t in inm.split(",")]:
        return web.Response(status=304, headers=headers)
    if config_of(request).notifications.events.pull or config_of(request).audit.pulls:
        tag = route.reference if ":" not in route.reference else ""
        await emit(request, "pull", route.name, media_type=stored.media_type, size=len(stored.data),
                   digest=str(stored.digest), tag=tag, references=_references(stored.data),
                   url=url_for(request, f"/v2/{route.name}/manifests/{stored.digest}"))
    return web.Response(body=stored.data, headers=headers, content_type=stored.media_type.split(";")[0])


def _references(data: bytes) -> tuple[dict[str, object], ...]:
    """Descriptors a stored manifest references (for events); none if it cannot be parsed."""
    try:
        manifest = parse_manifest(data)
    except ManifestError:
        return ()
    return tuple(d.to_json() for d in (manifest.blobs + manifest.manifests))


async def _read_limited(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RegistryError(ErrorCode.SIZE_TOO_LARGE, "manifest too large", {"limit": limit}, status=413)
    buf = bytearray()
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise RegistryError(ErrorCode.SIZE_TOO_LARGE, "manifest too large", {"limit": limit}, status=413)
    return bytes(buf)


async def put_manifest(request: web.Request, route: Route) -> web.StreamResponse:
    registry = registry_of(request)
    data = await _read_limited(request, registry.max_manifest_size)
    extra = tuple(request.query.getall("tag", []))
    tags = ([] if ":" in route.reference else [check_tag(route.reference)]) + [check_tag(t) for t in extra]
    check = request.app.get(TAG_OVERWRITE_CHECK)
    if check is not None:
        new_digest = Digest.from_bytes(data, parse_digest(route.reference).algorithm if ":" in route.reference else "sha256")
        for tag in tags:
            current = await registry.tagged_digest(route.name, tag)
            if current is not None and current != new_digest:
                await check(request, route.name, tag)
    result = await registry.put_manifest(route.name, route.reference, data,
                                         request.headers.get("Content-Type"), extra)
    location = url_for(request, f"/v2/{route.name}/manifests/{result.digest}")
    resp = web.Response(status=201, headers={
        "Location": location,
        "Docker-Content-Digest": str(result.digest),
        "Content-Length": "0",
    })
    if result.manifest.subject is not None:
        resp.headers["OCI-Subject"] = str(result.manifest.subject.digest)
    for tag in result.tags:
        resp.headers.add("OCI-Tag", tag)
    target = dict(media_type=result.manifest.media_type, size=len(data), digest=str(result.digest),
                  url=location, references=tuple(d.to_json() for d in
                                                 (result.manifest.blobs + result.manifest.manifests)))
    if result.tags:
        for tag in result.tags:
            await emit(request, "push", route.name, tag=tag, **target)
    else:
        await emit(request, "push", route.name, **target)
    return resp


async def delete_manifest(request: web.Request, route: Route) -> web.StreamResponse:
    registry = registry_of(request)
    if ":" in route.reference:
        digest = parse_digest(route.reference)
        tags = await registry.delete_manifest(route.name, digest)
        await emit(request, "delete", route.name, digest=str(digest))
        for tag in tags:  # Distribution also reports each tag that went with the manifest
            await emit(request, "delete", route.name, tag=tag)
    else:
        tag = check_tag(route.reference)
        digest = await registry.delete_tag(route.name, tag)
        await emit(request, "delete", route.name, tag=tag, digest=str(digest))
    return web.Response(status=202, headers={"Content-Length": "0"})
