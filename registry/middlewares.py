"""Request-wide behaviour: the one place errors become responses, request ids, API headers.

:func:`error_middleware` is the only renderer of errors. It turns
:class:`~registry.errors.RegistryError`, aiohttp's own HTTP errors (unknown
routes, bad methods, oversized bodies) and storage failures into the spec's
JSON error document, and any other exception into a logged 500 whose body
carries no traceback.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Awaitable, Callable

from aiohttp import web

from registry.appkeys import REQUEST_ID
from registry.errors import ErrorCode, RegistryError
from storage_backends.base import InvalidPath, StorageUnavailable

log = logging.getLogger("berth.http")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")

_HTTP_STATUS_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.SIZE_TOO_LARGE,
    416: ErrorCode.RANGE_INVALID,
}


def render(error: RegistryError) -> web.Response:
    """The spec's error document for ``error`` (HEAD requests get the headers only)."""
    resp = web.Response(status=error.status, body=error.body(), content_type="application/json")
    for key, value in error.headers.items():
        resp.headers[key] = value
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get("X-Request-Id", "")
    request[REQUEST_ID] = supplied if _REQUEST_ID_RE.match(supplied) else str(uuid.uuid4())
    try:
        resp = await handler(request)
    except RegistryError as exc:
        resp = render(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_STATUS_CODES.get(exc.status, ErrorCode.UNKNOWN)
        resp = render(RegistryError(code, exc.reason or code.message, status=exc.status))
    except StorageUnavailable as exc:
        log.warning("storage unavailable: %s", exc)
        resp = render(RegistryError(ErrorCode.UNAVAILABLE, "storage backend unavailable"))
    except InvalidPath:
        resp = render(RegistryError(ErrorCode.NAME_INVALID, "invalid path component"))
    except ConnectionResetError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        resp = render(RegistryError(ErrorCode.UNKNOWN, "internal error",
                                    {"request_id": request[REQUEST_ID]}))
    return resp


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: API version and request id on every response."""
    if request.path.startswith("/v2"):
        response.headers.setdefault(*API_VERSION_HEADER)
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers.setdefault("X-Request-Id", request_id)
