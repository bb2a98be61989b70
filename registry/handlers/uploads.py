"""Upload handlers: ``POST``/``PATCH``/``PUT``/``GET``/``DELETE /v2/<name>/blobs/uploads/...``.

Covers monolithic (``POST ?digest=``), streamed and chunked (``PATCH``, with or
without ``Content-Range``), and cross-repository mount (``POST ?mount=&from=``,
or automatic without ``from``). Upload locations carry a signed ``_state`` so
any replica sharing the storage and the secret can continue an upload.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from registry.appkeys import PULL_FILTER, REGISTRY, REPO_VISIBLE, UPLOAD_STATE
from registry.errors import ErrorCode, RegistryError
from registry.handlers.common import body_chunks, content_length, emit, registry_of, url_for
from registry.routes import Route
from registry.services import BlobInfo, check_name, parse_digest

_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def _upload_location(request: web.Request, name: str, upload_id: str, offset: int, started: str) -> str:
    state = request.app[UPLOAD_STATE].sign(name, upload_id, offset, started)
    return url_for(request, f"/v2/{name}/blobs/uploads/{upload_id}?_state={quote(state)}")


def _progress(request: web.Request, status: int, name: str, upload_id: str, offset: int,
              started: str) -> web.Response:
    headers = {
        "Location": _upload_location(request, name, upload_id, offset, started),
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
        "Content-Length": "0",
    }
    if status == 202:
        headers["OCI-Chunk-Min-Length"] = str(max(1, request.app[REGISTRY].driver.min_chunk_size))
    return web.Response(status=status, headers=headers)


def _created(request: web.Request, name: str, info: BlobInfo) -> web.Response:
    return web.Response(status=201, headers={
        "Location": url_for(request, f"/v2/{name}/blobs/{info.digest}"),
        "Docker-Content-Digest": str(info.digest),
        "Content-Length": "0",
    })


def _content_range(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) from ``Content-Range``; (None, Content-Length) when absent."""
    header = request.headers.get("Content-Range")
    length = content_length(request)
    if header is None:
        return None, length
    m = _CONTENT_RANGE_RE.match(header.strip())
    if not m:
        raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "invalid Content-Range header")
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise RegistryError(ErrorCode.RANGE_INVALID, "invalid Content-Range", status=416)
    span = end - start + 1
    if length is not None and length != span:
        raise RegistryError(ErrorCode.SIZE_INVALID, "Content-Length does not match Content-Range",
                            {"content_length": length, "range": span})
    return start, span


async def _push_event(request: web.Request, name: str, info: BlobInfo) -> None:
    await emit(request, "push", name, media_type="application/octet-stream", size=info.size,
               digest=str(info.digest), url=url_for(request, f"/v2/{name}/blobs/{info.digest}"))


async def start_upload(request: web.Request, route: Route) -> web.StreamResponse:
    registry = registry_of(request)
    name = route.name
    mount = request.query.get("mount")
    if mount is not None:
        digest = parse_digest(mount)
        source = request.query.get("from")
        info: BlobInfo | None = None
        if source is not None:
            check_name(source)
            info = await registry.mount_blob(name, source, digest)
        elif PULL_FILTER in request.app:
            # Under access control a digest alone must not reveal a blob of a repository the
            # caller may not pull: mount only from one they may (else a normal upload).
            mounted = await registry.auto_mount(name, digest, await request.app[PULL_FILTER](request))
            if mounted is not None:
                info, source = mounted
        elif REPO_VISIBLE not in request.app:
            mounted = await registry.auto_mount(name, digest, None)
            if mounted is not None:
                info, source = mounted
        if info is not None:
            await emit(request, "mount", name, media_type="application/octet-stream", size=info.size,
                       digest=str(digest), from_repository=source or "",
                       url=url_for(request, f"/v2/{name}/blobs/{digest}"))
            return _created(request, name, info)
    digest_param = request.query.get("digest")
    if digest_param is not None:
        digest = parse_digest(digest_param)
        info = await registry.store_blob(name, digest, body_chunks(request), length=content_length(request))
        await _push_event(request, name, info)
        return _created(request, name, info)
    upload_id, started = await registry.start_upload(name)
    return _progress(request, 202, name, upload_id, 0, started)


def _check_state(request: web.Request, name: str, upload_id: str) -> int | None:
    """Verify the signed ``_state`` (if sent); the offset the client was last told, or None."""
    token = request.query.get("_state")
    if token is None:
        return None
    offset = request.app[UPLOAD_STATE].verify(token, name, upload_id).get("o")
    return offset if isinstance(offset, int) else None


async def upload_status(request: web.Request, route: Route) -> web.StreamResponse:
    registry = registry_of(request)
    _check_state(request, route.name, route.reference)
    offset, started = await registry.upload_status(route.name, route.reference)
    return _progress(request, 204, route.name, route.reference, offset, started)


async def patch_upload(request: web.Request, route: Route) -> web.StreamResponse:
    registry = registry_of(request)
    _check_state(request, route.name, route.reference)
    start, length = _content_range(request)
    offset, started = await registry.append_upload(route.name, route.reference, body_chunks(request),
                                                   start=start, length=length)
    return _progress(request, 202, route.name, route.reference, offset, started)


async def put_upload(request: web.Request, route: Route) -> web.StreamResponse:
    registry = registry_of(request)
    told = _check_state(request, route.name, route.reference)
    raw = request.query.get("digest")
    if raw is None:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "digest query parameter is required")
    digest = parse_digest(raw)
    start, length = _content_range(request)
    info = await registry.complete_upload(route.name, route.reference, digest, body_chunks(request),
                                          start=start, length=length, fresh=told == 0)
    await _push_event(request, route.name, info)
    return _created(request, route.name, info)


async def delete_upload(request: web.Request, route: Route) -> web.StreamResponse:
    _check_state(request, route.name, route.reference)
    await registry_of(request).cancel_upload(route.name, route.reference)
    return web.Response(status=204)
