"""Operating the webhooks: status and replay, from a running sink or straight from the outbox on disk.

``GET /admin/webhooks`` answers from the live sink. :func:`offline_status`
and :func:`replay` work on the outbox directory without owning it, so the
CLI can run next to a live server: replay only adds replay files and
rewrites dead-letter files under their lock, both safe across processes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from registry.webhooks.config import Endpoint, NotificationsConfig
from registry.webhooks.delivery import EndpointStatus
from registry.webhooks.filters import EndpointFilter
from registry.webhooks.outbox import Outbox, read_records
from registry.webhooks.sink import WebhookSink

if TYPE_CHECKING:
    from registry.config import Config

WEBHOOKS: web.AppKey[WebhookSink] = web.AppKey("berth.webhooks", WebhookSink)
ADMIN_PATH = "/admin/webhooks"
DEFAULT_OUTBOX = "outbox"
FILESYSTEM_OUTBOX = "_berth/outbox"


def outbox_directory(config: "Config") -> Path:
    """``notifications.outbox``; by default ``<filesystem rootdirectory>/_berth/outbox``, or
    ``./outbox`` (relative to the working directory) for other storage drivers."""
    if config.notifications.outbox:
        return Path(config.notifications.outbox).absolute()
    if config.storage.driver == "filesystem":
        root = config.storage.driver_params()["rootdirectory"]
        return (Path(root) / FILESYSTEM_OUTBOX).absolute()
    return Path(DEFAULT_OUTBOX).absolute()


async def status_handler(request: web.Request) -> web.Response:
    """``GET /admin/webhooks``: ``{"endpoints": [status, ...]}`` (admins only when auth is on)."""
    from registry.observability import require_admin

    await require_admin(request)
    sink = request.app.get(WEBHOOKS)
    if sink is not None:
        statuses = await sink.status()
    else:
        from registry.appkeys import CONFIG

        statuses = await asyncio.to_thread(offline_status, request.app[CONFIG])
    return web.json_response({"endpoints": [s.to_json() for s in statuses]})


def _pending(outbox: Outbox, endpoint: Endpoint, cursor: int | None, replay_done: int, replay_file: str) -> int:
    count = 0
    if cursor is not None and not endpoint.disabled:
        matches = EndpointFilter(endpoint).matches
        count = sum(1 for r in outbox.records(cursor) if matches(r.event))
    for path in outbox.replay_files(endpoint.name):
        records, _ = read_records(path)
        count += len(records) - (min(replay_done, len(records)) if path.name == replay_file else 0)
    return count


def offline_status(config: "Config") -> list[EndpointStatus]:
    """Blocking: every configured endpoint's status, read from the outbox directory."""
    directory = outbox_directory(config)
    outbox = Outbox(directory, owner=False)
    out: list[EndpointStatus] = []
    for ep in config.notifications.endpoints:
        state = outbox.load_state(ep.name)
        out.append(EndpointStatus(
            name=ep.name, url=ep.url, format=ep.format, disabled=ep.disabled,
            pending=_pending(outbox, ep, state.cursor, state.replay_done, state.replay_file),
            delivered=state.delivered, failed=state.failed, deadlettered=len(outbox.dead_letters(ep.name)),
            last_error=state.last_error, last_error_at=state.last_error_at,
            last_success_at=state.last_success_at, cursor=state.cursor))
    return out


def _selected(notifications: NotificationsConfig, names: list[str] | None) -> list[Endpoint]:
    known = {ep.name: ep for ep in notifications.endpoints}
    if not names:
        return notifications.active_endpoints
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(f"no endpoint named {missing[0]!r} in notifications.endpoints")
    return [known[n] for n in names]


def replay(config: "Config", *, endpoints: list[str] | None = None, dead_letter: bool = False,
           since: float | None = None, until: float | None = None) -> dict[str, int]:
    """Blocking: queue events for re-delivery; how many per endpoint.

    With ``dead_letter``, the endpoint's dead-lettered events (queued between
    ``since`` and ``until`` if given) move back to delivery. Otherwise every
    event the outbox still holds that was recorded between ``since`` and
    ``until`` (Unix times; ``until`` None means now) and that passes the
    endpoint's filters is sent again, in order, with its original id.
    """
    if not dead_letter and since is None:
        raise ValueError("replay needs dead_letter or a since time")
    low = float("-inf") if since is None else since
    high = float("inf") if until is None else until
    directory = outbox_directory(config)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no outbox at {directory}")
    outbox = Outbox(directory, owner=False)
    counts: dict[str, int] = {}
    for ep in _selected(config.notifications, endpoints):
        if dead_letter:
            counts[ep.name] = outbox.replay_dead_letters(ep.name, lambda e: low <= float(e.get("queued", 0)) < high)
            continue
        matches = EndpointFilter(ep).matches
        chosen = [r for r in outbox.records(0) if low <= r.queued < high and matches(r.event)]
        outbox.queue_replay(ep.name, [r.event for r in chosen], seqs=[r.seq for r in chosen])
        counts[ep.name] = len(chosen)
    return counts
