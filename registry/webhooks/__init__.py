"""Push webhooks: a durable outbox, per-endpoint delivery workers, signing, envelope formats.

:func:`setup` wires the package into the app: when endpoints are configured it
installs a :class:`WebhookSink` as ``app[EVENTS]`` (handlers publish to it
before answering), opens its outbox and starts its workers in ``cleanup_ctx``,
and closes them (flushing within ``notifications.draintimeout``) on shutdown.
``GET /admin/webhooks`` reports per-endpoint delivery status.

Receivers can check deliveries with :func:`verify` (see docs/webhooks.md).
"""

from __future__ import annotations

import socket
import uuid
from typing import TYPE_CHECKING, AsyncIterator

from aiohttp import web

from registry.appkeys import EVENTS
from registry.events import NullSink
from registry.webhooks.admin import ADMIN_PATH, WEBHOOKS, offline_status, outbox_directory, replay, status_handler
from registry.webhooks.delivery import EndpointStatus
from registry.webhooks.envelope import Source
from registry.webhooks.outbox import Outbox, OutboxError
from registry.webhooks.signing import SIGNATURE_HEADER, SignatureError, sign, verify
from registry.webhooks.sink import WebhookSink

if TYPE_CHECKING:
    from registry.config import Config

__all__ = [
    "ADMIN_PATH",
    "SIGNATURE_HEADER",
    "WEBHOOKS",
    "EndpointStatus",
    "Outbox",
    "OutboxError",
    "SignatureError",
    "Source",
    "WebhookSink",
    "offline_status",
    "outbox_directory",
    "replay",
    "setup",
    "sign",
    "source_for",
    "verify",
]


def source_for(config: "Config") -> Source:
    """This process's ``source``: ``<hostname>:<port>`` and a fresh instance id (as Distribution)."""
    port = config.http.addr.rpartition(":")[2]
    return Source(addr=f"{socket.gethostname()}:{port}", instance_id=str(uuid.uuid4()))


def setup(app: web.Application, config: "Config") -> None:
    """Install the webhook sink and ``GET /admin/webhooks`` on ``app``."""
    app.router.add_get(ADMIN_PATH, status_handler)
    if not config.notifications.active_endpoints:
        if EVENTS not in app:
            app[EVENTS] = NullSink()
        return
    sink = WebhookSink(config.notifications, outbox_directory(config), source_for(config))
    app[EVENTS] = sink
    app[WEBHOOKS] = sink

    async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
        await sink.open()
        try:
            yield
        finally:
            await sink.close()

    app.cleanup_ctx.append(webhooks_ctx)
