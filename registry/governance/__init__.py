"""Governance: the audit log (:mod:`.audit`), quotas (:mod:`.quota`, :mod:`.usage`) and retention
(:mod:`.retention`); access tokens and robots live with the rest of auth (:mod:`auth.pat`).

``setup(app, config)`` (after auth and webhooks are set up) wraps ``app[EVENTS]`` so committed
pushes, mounts, deletes and (with ``audit.pulls``) pulls become audit lines and quota usage
updates, puts the audit middleware outside auth (denied requests) and the quota middleware
inside it, mounts ``/admin/quotas`` and ``/admin/retention``, and runs the quota recompute and
the retention schedule in ``cleanup_ctx``. Per process: every worker or replica holds its own
audit writer, quota usage and (when scheduled) retention loop; see :mod:`.quota` for what
holds across replicas. Scheduled retention should run on one replica only (or on each: the
re-checks make concurrent runs safe, merely redundant).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from registry.appkeys import CONFIG, EVENTS, REGISTRY
from registry.errors import RegistryError
from registry.governance.audit import CURRENT, AuditingSink, AuditLog
from registry.governance.quota import QuotaTracker, UsageSink
from registry.governance.quota import make_middleware as quota_middleware

if TYPE_CHECKING:
    from registry.config import Config
    from registry.governance.retention import PolicySource, RetentionReport

log = logging.getLogger("berth.governance")

AUDIT: web.AppKey[AuditLog] = web.AppKey("berth.audit", AuditLog)
QUOTAS: web.AppKey[QuotaTracker] = web.AppKey("berth.quotas", QuotaTracker)
QUOTAS_PATH = "/admin/quotas"
RETENTION_PATH = "/admin/retention"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = ["AUDIT", "QUOTAS", "AuditLog", "QuotaTracker", "run_retention_in_app", "setup"]


def _actor(request: web.Request) -> str:
    from auth.middleware import IDENTITY

    identity = request.get(IDENTITY)
    return identity.actor if identity is not None else "anonymous"


def _audit_middleware(audit: AuditLog) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    from auth.challenge import (
        BasicCredentials,
        MalformedAuthorization,
        parse_authorization,
    )
    from registry.routes import match

    @web.middleware
    async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = CURRENT.set(lambda: (_actor(request), request.remote or ""))
        try:
            return await handler(request)
        except RegistryError as exc:
            status = exc.status
            if status in (401, 403):
                try:
                    creds = parse_authorization(request.headers.getall("Authorization", []))
                except MalformedAuthorization:
                    creds = None
                # A 401 to Basic credentials is a failed login (recorded as such); a 401 without
                # credentials is the usual challenge.
                if status == 403 or (status == 401 and creds is not None and not isinstance(creds, BasicCredentials)):
                    route = match(request.path)
                    audit.record("denied", actor=_actor(request) if status == 403 else "anonymous",
                                 address=request.remote or "", repository=route.name if route else "",
                                 reference=route.reference if route and ":" not in route.reference else "",
                                 digest=route.reference if route and ":" in route.reference else "",
                                 outcome="denied", detail={"method": request.method, "status": status,
                                                           "reason": exc.message})
            raise
        finally:
            CURRENT.reset(token)

    return audit_middleware


async def run_retention_in_app(app: web.Application, *, dry_run: bool) -> RetentionReport:
    """One retention run inside the server: deletes publish to the app's sink; audit; quota recompute."""
    from registry.governance.retention import run_retention

    source = app[_RETENTION_SOURCE]
    requested_by = CURRENT.get()
    context = CURRENT.set(None)  # its deletions are the run's own (actor "retention"), not the caller's
    try:
        report = await run_retention(app[REGISTRY], await source.policies(), dry_run=dry_run, sink=app[EVENTS])
    finally:
        CURRENT.reset(context)
    audit = app.get(AUDIT)
    if audit is not None:
        audit.record("retention.run", actor="retention", outcome="success",
                     detail={"dryRun": dry_run, "requestedBy": requested_by()[0] if requested_by else "schedule", "tags": sum(d.kind == "tag" for d in report.deletions),
                             "manifests": sum(d.kind == "manifest" for d in report.deletions),
                             "skipped": len(report.skipped)})
    tracker = app.get(QUOTAS)
    if tracker is not None and not dry_run:
        await tracker.recompute()
    return report


async def quotas_handler(request: web.Request) -> web.Response:
    """``GET /admin/quotas``: every namespace's limit and use; ``POST`` recomputes from storage first."""
    from registry.observability import require_admin

    await require_admin(request)
    tracker = request.app.get(QUOTAS)
    if tracker is None:
        return web.json_response({"quotas": []})
    if request.method == "POST":
        await tracker.recompute()
    return web.json_response({"quotas": tracker.report()})


async def retention_handler(request: web.Request) -> web.Response:
    """``POST /admin/retention[?dryrun=true]``: run retention now and answer the report."""
    from registry.observability import require_admin

    await require_admin(request)
    dry_run = request.query.get("dryrun", "").lower() in ("1", "true", "yes")
    if not dry_run and request.app[CONFIG].storage.maintenance.readonly.enabled:
        from registry.errors import ErrorCode

        raise RegistryError(ErrorCode.READ_ONLY, "the registry is read-only")
    report = await run_retention_in_app(request.app, dry_run=dry_run)
    return web.json_response(report.to_json())


_RETENTION_SOURCE: web.AppKey[PolicySource] = web.AppKey("berth.retention_source")


def _ctx(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        audit = app.get(AUDIT)
        if audit is not None:
            await asyncio.to_thread(audit.start)
            from auth.middleware import CONTROLLER

            controller = app.get(CONTROLLER)
            if controller is not None:
                def on_login(request: web.Request, actor: str, outcome: str, reason: str) -> None:
                    audit.record("login", actor=actor, address=request.remote or "", outcome=outcome,
                                 detail={"reason": reason} if reason else None)

                controller.on_login = on_login
                if controller.policy_file is not None:
                    controller.policy_file.on_reload = lambda path: audit.record(
                        "policy.reload", actor="berth", detail={"path": path})
        tasks: list[asyncio.Task[None]] = []
        if config.quotas:
            app[QUOTAS].registry = app[REGISTRY]
            tasks.append(asyncio.create_task(app[QUOTAS].run()))
        retention = config.retention
        if retention.configured and retention.schedule > 0 and not config.storage.maintenance.readonly.enabled:
            async def loop() -> None:
                while True:
                    await asyncio.sleep(float(retention.schedule))
                    try:
                        await run_retention_in_app(app, dry_run=False)
                    except Exception:
                        log.exception("scheduled retention run failed")

            tasks.append(asyncio.create_task(loop()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if audit is not None:
                await asyncio.to_thread(audit.stop)

    return ctx


def setup(app: web.Application, config: Config) -> None:
    """Wire the audit log, quotas and retention into ``app`` (see the module doc)."""
    from registry.governance.retention import PolicySource

    app[_RETENTION_SOURCE] = PolicySource(config.retention)
    app.router.add_route("GET", QUOTAS_PATH, quotas_handler)
    app.router.add_route("POST", QUOTAS_PATH, quotas_handler)
    app.router.add_post(RETENTION_PATH, retention_handler)
    if config.quotas:
        # The registry exists only once storage is open; the tracker gets it then (ctx).
        tracker = QuotaTracker(None, config.quotas)
        app[QUOTAS] = tracker
        app[EVENTS] = UsageSink(app[EVENTS], tracker)
        app.middlewares.append(quota_middleware(tracker))
    if config.audit.enabled:
        audit = AuditLog(config.audit)
        app[AUDIT] = audit
        app[EVENTS] = AuditingSink(app[EVENTS], audit, forward_pulls=config.notifications.events.pull)
        app.middlewares.insert(1, _audit_middleware(audit))  # right inside the error renderer, outside auth
    app.cleanup_ctx.append(_ctx(config))
