"""Maintenance inside the server: ``GET /admin/du``, ``GET /admin/gc`` and scheduled garbage collection.

Admin endpoints are protected by :func:`registry.observability.require_admin`.
With ``gc.interval`` set (and the registry not read-only), a background task
collects garbage every ``interval`` with the ``gc`` section's options, while
the registry keeps serving; the last run's report is kept for ``/admin/gc``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from registry.appkeys import CONFIG, STORAGE
from registry.maintenance.du import disk_usage
from registry.maintenance.gc import GCBusy, GCOptions, GCReport, collect_garbage
from registry.observability import require_admin

if TYPE_CHECKING:
    from registry.config import Config

log = logging.getLogger("berth.maintenance")

DU_PATH = "/admin/du"
GC_PATH = "/admin/gc"


@dataclass
class GCState:
    """The scheduler's view: the last report and the last error."""

    last: GCReport | None = None
    error: str = ""
    running: bool = False


GC_STATE: web.AppKey[GCState] = web.AppKey("berth.gc_state", GCState)


async def du_handler(request: web.Request) -> web.Response:
    """``GET /admin/du``: storage used per repository (see :mod:`registry.maintenance.du`)."""
    await require_admin(request)
    usage = await disk_usage(request.app[STORAGE])
    return web.json_response(usage.to_json())


async def gc_status_handler(request: web.Request) -> web.Response:
    """``GET /admin/gc``: the schedule and the last scheduled run's report."""
    await require_admin(request)
    state = request.app[GC_STATE]
    config = request.app[CONFIG]
    body = {
        "interval": float(config.gc.interval),
        "running": state.running,
        "lastRun": state.last.to_json() if state.last is not None else None,
        "lastError": state.error,
    }
    return web.json_response(body)


async def run_scheduled(app: web.Application, options: GCOptions) -> GCReport | None:
    """One scheduled run; errors are logged and kept in the state, never raised."""
    state = app[GC_STATE]
    state.running = True
    try:
        report = await collect_garbage(app[STORAGE], options)
    except GCBusy as exc:
        log.info("scheduled garbage collection skipped: %s", exc)
        state.error = str(exc)
        return None
    except Exception as exc:
        log.exception("scheduled garbage collection failed")
        state.error = f"{type(exc).__name__}: {exc}"
        return None
    finally:
        state.running = False
    state.last, state.error = report, ""
    from registry.governance import AUDIT, QUOTAS

    audit = app.get(AUDIT)
    if audit is not None:
        audit.record("gc.run", actor="gc", detail={"blobs": len(report.blobs), "bytesFreed": report.bytes_freed,
                                                   "manifests": len(report.manifests), "dryRun": report.dry_run})
    if app.get(QUOTAS) is not None and not report.dry_run:
        await app[QUOTAS].recompute()  # space freed: quotas see it now, not at the next interval
    return report


def _schedule_ctx(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        interval = float(config.gc.interval)
        task = None
        if interval > 0 and not config.storage.maintenance.readonly.enabled:
            options = GCOptions.from_config(config.gc)

            async def loop() -> None:
                while True:
                    await asyncio.sleep(interval)
                    await run_scheduled(app, options)

            task = asyncio.create_task(loop())
        yield
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    return ctx


def setup(app: web.Application, config: Config) -> None:
    """Add the admin endpoints and, with ``gc.interval``, the garbage collection schedule."""
    app[GC_STATE] = GCState()
    app.router.add_get(DU_PATH, du_handler)
    app.router.add_get(GC_PATH, gc_status_handler)
    app.cleanup_ctx.append(_schedule_ctx(config))
