"""Helpers shared by the handlers: typed access to app state, body streaming, events, pagination."""

from __future__ import annotations

import re
from typing import Any, AsyncIterator
from urllib.parse import quote, urlencode

from aiohttp import web

from registry.appkeys import CONFIG, EVENTS, REGISTRY, REQUEST_ID, REQUEST_USER
from registry.config import Config
from registry.errors import ErrorCode, RegistryError
from registry.events import Event, RequestInfo
from registry.services import Registry

_HOST_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def config_of(request: web.Request) -> Config:
    return request.app[CONFIG]


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives (Content-Length or chunked transfer encoding)."""
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return
        yield chunk


def content_length(request: web.Request) -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit():
        raise RegistryError(ErrorCode.SIZE_INVALID, "invalid Content-Length")
    return int(value)


def request_info(request: web.Request) -> RequestInfo:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        host = str(peername[0])
        peer = f"[{host}]:{peername[1]}" if ":" in host else f"{host}:{peername[1]}"  # as Distribution
    else:
        peer = request.remote or ""
    return RequestInfo(
        id=request.get(REQUEST_ID, ""),
        addr=peer,
        host=request.host,
        method=request.method,
        useragent=request.headers.get("User-Agent", ""),
    )


def url_for(request: web.Request, path: str) -> str:
    """An absolute URL for ``path`` (honouring ``http.host`` and ``http.relativeurls``)."""
    cfg = config_of(request)
    if cfg.http.relativeurls:
        return path
    if cfg.http.host:
        return cfg.http.host.rstrip("/") + path
    # Behind a load balancer, build URLs the client can reach (as Distribution does).
    scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or request.scheme
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    if scheme not in ("http", "https") or not _HOST_RE.match(host):
        scheme, host = request.scheme, request.host
    return f"{scheme}://{host}{path}"


async def emit(request: web.Request, action: str, repository: str, **target: Any) -> None:
    """Publish one event for a committed operation (durable before we answer)."""
    event = Event(action=action, repository=repository, request=request_info(request),
                  actor=request.get(REQUEST_USER) or "", url=target.pop("url", ""), **target)
    await request.app[EVENTS].publish([event])


def pagination(request: web.Request) -> tuple[int | None, str | None]:
    """``n`` and ``last`` query parameters, validated."""
    raw_n = request.query.get("n")
    n: int | None = None
    if raw_n is not None and raw_n != "":
        if not raw_n.isdigit():
            raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": raw_n[:20]})
        n = int(raw_n)
        if n > 100_000:
            raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": raw_n[:20]})
    return n, request.query.get("last")


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """Items after ``last`` (lexical), at most ``n``; and whether more follow."""
    if last:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    return items[:n], len(items) > n


def next_link(path: str, n: int, last: str, extra: dict[str, str] | None = None) -> str:
    query = {"n": str(n), "last": last, **(extra or {})}
    return f'<{quote(path)}?{urlencode(query)}>; rel="next"'
