"""The app factory: config in, a fully wired ``web.Application`` out.

Every shared resource (storage driver, registry services, upload-state
signer, background maintenance) is opened and closed in ``cleanup_ctx`` and
stored under a typed key from :mod:`registry.appkeys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from typing import AsyncIterator, Callable

from aiohttp import web

from registry import layout
from registry.appkeys import CONFIG, EVENTS, REGISTRY, STORAGE, UPLOAD_STATE
from registry.config import Config
from registry.events import NullSink
from registry.handlers.dispatch import dispatch
from registry.middlewares import add_common_headers, error_middleware
from registry.services import Registry, UploadState
from storage_backends import PathNotFound, StorageDriver, create_driver

log = logging.getLogger("berth.app")

SECRET_PATH = layout.HTTP_SECRET


def open_driver(config: Config) -> StorageDriver:
    """The storage driver the config names."""
    params = config.storage.driver_params()
    if config.storage.driver == "filesystem":
        params["rootdirectory"] = os.path.abspath(params["rootdirectory"])
    return create_driver(config.storage.driver, params)


async def _upload_secret(config: Config, driver: StorageDriver) -> bytes:
    """``http.secret``, or one generated once and kept in storage so restarts and replicas agree."""
    if config.http.secret:
        return config.http.secret.encode()
    try:
        return await driver.get_content(SECRET_PATH)
    except PathNotFound:
        pass
    log.warning("http.secret is not set; using a secret generated in storage. Set http.secret "
                "when several replicas share the storage.")
    await driver.put_content(SECRET_PATH, secrets.token_hex(32).encode())
    return await driver.get_content(SECRET_PATH)


async def _purge_loop(app: web.Application) -> None:
    purging = app[CONFIG].storage.maintenance.uploadpurging
    registry = app[REGISTRY]
    while True:
        try:
            purged = await registry.purge_uploads(purging.age, dry_run=purging.dryrun)
            if purged:
                log.info("purged %d stale uploads", len(purged))
        except Exception:
            log.exception("upload purging failed")
        await asyncio.sleep(max(purging.interval, 1.0))


def _storage_ctx(config: Config, driver: StorageDriver | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = driver or open_driver(config)
        if config.http.debug.prometheus.enabled:
            from storage_backends.instrumented import InstrumentedDriver

            store = InstrumentedDriver(store)
        app[STORAGE] = store
        app[REGISTRY] = Registry(store, delete_enabled=config.storage.delete.enabled,
                                 max_manifest_size=config.http.maxmanifestsize)
        app[UPLOAD_STATE] = UploadState(await _upload_secret(config, store))
        task = None
        purging = config.storage.maintenance.uploadpurging
        if purging.enabled and not config.storage.maintenance.readonly.enabled:
            task = asyncio.create_task(_purge_loop(app))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if driver is None:
            await store.close()

    return ctx


def create_app(config: Config, *, driver: StorageDriver | None = None) -> web.Application:
    """Build the registry application. ``driver`` overrides the configured storage (tests)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.http.maxmanifestsize + 1)
    app[CONFIG] = config
    app[EVENTS] = NullSink()
    app.on_response_prepare.append(add_common_headers)
    app.cleanup_ctx.append(_storage_ctx(config, driver))
    app.router.add_route("*", "/v2", dispatch)
    app.router.add_route("*", "/v2/{tail:.*}", dispatch)
    for setup in _subsystems():
        setup(app, config)
    return app


def _subsystems() -> list[Callable[[web.Application, Config], None]]:
    """Each subsystem's ``setup(app, config)``: adds its routes, middlewares and resources."""
    import auth
    from registry import governance, maintenance, observability, webhooks

    return [auth.setup, webhooks.setup, governance.setup, observability.setup, maintenance.setup]
