"""Typed application state: every shared object lives under one ``web.AppKey``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import web

from registry.events import EventSink
from storage_backends.base import StorageDriver

if TYPE_CHECKING:
    from registry.config import Config
    from registry.services import Registry, UploadState

CONFIG: web.AppKey["Config"] = web.AppKey("berth.config")
STORAGE: web.AppKey[StorageDriver] = web.AppKey("berth.storage", StorageDriver)
REGISTRY: web.AppKey["Registry"] = web.AppKey("berth.registry")
UPLOAD_STATE: web.AppKey["UploadState"] = web.AppKey("berth.upload_state")
EVENTS: web.AppKey[EventSink] = web.AppKey("berth.events")
# Set by the auth layer: may the caller of this request pull from the named repository?
# (Used to filter the catalog; absent means "yes".)
REPO_VISIBLE: web.AppKey[Callable[[web.Request, str], Awaitable[bool]]] = web.AppKey("berth.repo_visible")

# Set by the auth layer: which repositories the caller of this request may pull, as a predicate,
# or None when they may pull every repository (no policy file). Automatic mounts ask it.
PULL_FILTER: web.AppKey[Callable[[web.Request], Awaitable[Callable[[str], bool] | None]]] = web.AppKey(
    "berth.pull_filter")

# Request-scoped state.
REQUEST_USER: web.RequestKey[str] = web.RequestKey("berth.user", str)  # the authenticated user name
REQUEST_ID: web.RequestKey[str] = web.RequestKey("berth.request_id", str)
REQUEST_REPOSITORY: web.RequestKey[str] = web.RequestKey("berth.repository", str)  # for access logs
# Set by the auth layer: called before a manifest PUT moves an existing tag to another digest;
# raises RegistryError(DENIED) when the caller may not overwrite tags in that repository.
TAG_OVERWRITE_CHECK: web.AppKey[Callable[[web.Request, str, str], Awaitable[None]]] = web.AppKey(
    "berth.tag_overwrite_check")
