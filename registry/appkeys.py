"""Typed application state: every shared object lives under one ``web.AppKey``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import web

from registry.events import EventSink
from storage_backends.base import StorageDriver

if TYPE_CHECKING:
    from registry.config import Config
    from registry.services import Registry

CONFIG: web.AppKey["Config"] = web.AppKey("berth.config")
STORAGE: web.AppKey[StorageDriver] = web.AppKey("berth.storage", StorageDriver)
REGISTRY: web.AppKey["Registry"] = web.AppKey("berth.registry")
EVENTS: web.AppKey[EventSink] = web.AppKey("berth.events")
# Set by the auth layer: may the caller of this request pull from the named repository?
# (Used to filter the catalog; absent means "yes".)
REPO_VISIBLE: web.AppKey[Callable[[web.Request, str], Awaitable[bool]]] = web.AppKey("berth.repo_visible")

# Request-scoped keys (plain strings: aiohttp has no typed request keys).
REQUEST_USER = "berth.user"  # str | None: the authenticated user name
REQUEST_ID = "berth.request_id"  # str
REQUEST_REPOSITORY = "berth.repository"  # str | None: for access logs
