"""Blob handlers: ``HEAD``/``GET``/``DELETE /v2/<name>/blobs/<digest>``.

Filesystem blobs are served by ``FileResponse`` (sendfile on the standard loop; uvloop copies), which also answers
``Range`` with 206/416); other backends answer 307 to a presigned URL unless
redirects are disabled, in which case the bytes are streamed from the driver.
"""

from __future__ import annotations

import re

from aiohttp import web

from registry import layout
from registry.errors import ErrorCode, RegistryError
from registry.handlers.common import config_of, emit, registry_of, url_for
from registry.routes import Route
from registry.services import BlobInfo, parse_digest

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _blob_headers(info: BlobInfo) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(info.digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{info.digest}"',
        "Cache-Control": "max-age=31536000",
    }


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single ``bytes=`` range; None if absent; 416 if unsatisfiable."""
    m = _RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise RegistryError(ErrorCode.RANGE_INVALID, "invalid Range header", status=416,
                            headers={"Content-Range": f"bytes */{size}"})
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        suffix = int(m.group(2))
        start, end = max(size - suffix, 0), size - 1
    end = min(end, size - 1)
    if start >= size or start > end:
        raise RegistryError(ErrorCode.RANGE_INVALID, "range not satisfiable", status=416,
                            headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def get_blob(request: web.Request, route: Route) -> web.StreamResponse:
    registry = registry_of(request)
    digest = parse_digest(route.reference)
    info = await registry.blob_info(route.name, digest)
    headers = _blob_headers(info)
    if config_of(request).notifications.events.pull or config_of(request).audit.pulls:
        await emit(request, "pull", route.name, media_type="application/octet-stream",
                   size=info.size, digest=str(digest), url=url_for(request, f"/v2/{route.name}/blobs/{digest}"))
    driver = registry.driver
    path = layout.blob_data(digest)
    local = driver.local_path(path)
    if local is not None:
        return web.FileResponse(local, chunk_size=1 << 20, headers=headers)
    if not config_of(request).storage.redirect.disable and request.method == "GET":
        url = await driver.redirect_url(path)
        if url:
            raise web.HTTPTemporaryRedirect(url, headers={"Docker-Content-Digest": str(digest)})
    start, end, status = 0, info.size - 1, 200
    if "Range" in request.headers:
        rng = parse_range(request.headers["Range"], info.size)
        if rng is not None:
            start, end = rng
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    length = max(end - start + 1, 0)
    stream = web.StreamResponse(status=status, headers=headers)
    stream.content_length = length
    await stream.prepare(request)
    if request.method == "GET" and length:
        async for chunk in driver.reader(path, start, length):
            await stream.write(chunk)
    await stream.write_eof()
    return stream


async def delete_blob(request: web.Request, route: Route) -> web.StreamResponse:
    digest = parse_digest(route.reference)
    await registry_of(request).delete_blob(route.name, digest)
    await emit(request, "delete", route.name, digest=str(digest))
    return web.Response(status=202, headers={"Content-Length": "0"})
