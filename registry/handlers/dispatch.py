"""The ``/v2/`` dispatcher: one aiohttp route, the pure URL grammar, a table of handlers."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from registry.appkeys import CONFIG, REQUEST_REPOSITORY
from registry.errors import ErrorCode, RegistryError
from registry.handlers import blobs, listing, manifests, uploads
from registry.routes import Kind, Route, match
from registry.services import check_name

RouteHandler = Callable[[web.Request, Route], Awaitable[web.StreamResponse]]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _base(request: web.Request, route: Route) -> web.StreamResponse:
    return web.json_response({})


TABLE: dict[Kind, dict[str, RouteHandler]] = {
    Kind.BASE: {"GET": _base, "HEAD": _base},
    Kind.CATALOG: {"GET": listing.catalog},
    Kind.TAGS: {"GET": listing.list_tags},
    Kind.MANIFEST: {"GET": manifests.get_manifest, "HEAD": manifests.get_manifest,
                    "PUT": manifests.put_manifest, "DELETE": manifests.delete_manifest},
    Kind.BLOB: {"GET": blobs.get_blob, "HEAD": blobs.get_blob, "DELETE": blobs.delete_blob},
    Kind.UPLOAD_START: {"POST": uploads.start_upload},
    Kind.UPLOAD: {"GET": uploads.upload_status, "PATCH": uploads.patch_upload,
                  "PUT": uploads.put_upload, "DELETE": uploads.delete_upload},
    Kind.REFERRERS: {"GET": listing.referrers},
}


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route a ``/v2`` request to its handler, validating the repository name first."""
    route = match(request.path)
    if route is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "no such API endpoint", {"path": request.path[:300]})
    methods = TABLE[route.kind]
    handler = methods.get(request.method)
    if handler is None:
        raise RegistryError(ErrorCode.METHOD_NOT_ALLOWED, f"{request.method} is not allowed here",
                            headers={"Allow": ", ".join(sorted(methods))})
    if route.name:
        check_name(route.name)
        request[REQUEST_REPOSITORY] = route.name
    if request.method in WRITE_METHODS and request.app[CONFIG].storage.maintenance.readonly.enabled:
        raise RegistryError(ErrorCode.READ_ONLY, "the registry is in read-only mode")
    return await handler(request, route)
