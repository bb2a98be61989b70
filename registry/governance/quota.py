"""Quotas: each ``quotas`` entry caps the stored bytes of the repositories its globs match.

:class:`QuotaTracker` keeps, per namespace, the distinct linked blobs (digest -> size and the
repositories linking it) in memory. Every committed push, mount and delete of *this* process
updates it at once (it sees them as events, :class:`UsageSink`); a full recompute from storage
(:func:`registry.governance.usage.namespace_usage`) runs at startup, every
:data:`RECOMPUTE_INTERVAL`, after retention and garbage collection runs in this process, and on
``POST /admin/quotas``. Updates that arrive while a recompute walks storage are replayed onto its
result, so none is lost. Until the first recompute after startup finishes (it runs in the
background), a namespace counts only what this process linked since it started. Memory is bounded: past :data:`MAX_TRACKED` tracked blobs a namespace
stops tracking digests and only adds sizes (an over-estimate, so the limit still holds) until
the next recompute.

Across replicas: each replica sees its own pushes at once and the other replicas' at its next
recompute, so with N replicas a namespace can overshoot its limit by what the other N-1 accept
within one interval; deletes elsewhere are likewise seen late (a refusal may outlast the space
freed). Concurrent uploads in one process are checked against the same usage, so they can
overshoot by at most what is in flight at once.

Enforcement (:func:`quota_middleware`, after auth): an upload completion (``PUT``), a
monolithic upload (``POST ?digest=``), a mount and a manifest ``PUT`` that would take a
namespace past its limit answer 403 ``DENIED`` with ``used``, ``allowed`` and ``needed`` in the
detail; starting or continuing an upload into a namespace that is already full is refused the
same way. A blob the namespace already links adds nothing. Pulls and deletes are never refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from registry.digest import Digest, InvalidDigest
from registry.errors import ErrorCode, RegistryError
from registry.events import Event, EventSink
from registry.governance.config import QuotaRule
from registry.governance.usage import matches, usage_by_namespace
from registry.routes import Kind, match

log = logging.getLogger("berth.quota")

RECOMPUTE_INTERVAL = 300.0
MAX_TRACKED = 1_000_000  # blobs tracked per namespace before sizes are only added up
USED = Gauge("berth_quota_used_bytes", "Stored bytes of a quota namespace.", ["repositories"])
LIMIT = Gauge("berth_quota_limit_bytes", "The quota limit of a namespace.", ["repositories"])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Namespace:
    rule: QuotaRule
    blobs: dict[Digest, tuple[int, set[str]]] = field(default_factory=dict)
    tracked: int = 0  # sum of the sizes in ``blobs``, kept as they change
    untracked: int = 0  # bytes added past MAX_TRACKED (not attributable to digests)
    computed_at: float = 0.0

    @property
    def used(self) -> int:
        return self.tracked + self.untracked


class QuotaTracker:
    """Per-namespace usage for one process (see the module doc for what holds across replicas)."""

    def __init__(self, registry: Any, rules: Sequence[QuotaRule], *, max_tracked: int = MAX_TRACKED) -> None:
        self.registry = registry
        self.max_tracked = max_tracked
        self.namespaces = [_Namespace(r) for r in rules]
        self._pending: list[tuple[str, str, Digest, int]] | None = None  # updates during a recompute
        self._lock = asyncio.Lock()

    def _apply(self, op: str, repository: str, digest: Digest, size: int) -> None:
        for ns in self.namespaces:
            if not matches(ns.rule.patterns, repository):
                continue
            entry = ns.blobs.get(digest)
            if op == "link":
                if entry is not None:
                    entry[1].add(repository)
                elif len(ns.blobs) < self.max_tracked:
                    ns.blobs[digest] = (size, {repository})
                    ns.tracked += size
                else:
                    ns.untracked += size
            elif entry is not None:
                entry[1].discard(repository)
                if not entry[1]:
                    del ns.blobs[digest]
                    ns.tracked -= entry[0]
        self._publish()

    def linked(self, repository: str, digest: Digest, size: int) -> None:
        """A blob or manifest was linked into ``repository``."""
        if self._pending is not None:
            self._pending.append(("link", repository, digest, size))
        self._apply("link", repository, digest, size)

    def unlinked(self, repository: str, digest: Digest) -> None:
        """A blob link or manifest revision was removed from ``repository``."""
        if self._pending is not None:
            self._pending.append(("unlink", repository, digest, 0))
        self._apply("unlink", repository, digest, 0)

    async def recompute(self) -> None:
        """Replace every namespace's state with a fresh walk of storage (updates meanwhile replayed)."""
        if not self.namespaces:
            return
        async with self._lock:
            self._pending = []
            try:
                fresh = await usage_by_namespace(self.registry, [ns.rule.patterns for ns in self.namespaces])
                pending, self._pending = self._pending, None
            except BaseException:
                self._pending = None
                raise
            now = time.time()
            for ns, usage in zip(self.namespaces, fresh):
                ns.blobs = {d: (size, set(repos)) for d, (size, repos) in usage.blobs.items()}
                ns.tracked = sum(size for size, _ in ns.blobs.values())
                ns.untracked = 0
                ns.computed_at = now
            for op, repository, digest, size in pending:
                self._apply(op, repository, digest, size)
            self._publish()

    def _publish(self) -> None:
        for ns in self.namespaces:
            used = ns.used
            USED.labels(ns.rule.key).set(used)
            LIMIT.labels(ns.rule.key).set(int(ns.rule.limit))

    def check(self, repository: str, digest: Digest | None, size: int, *, full_only: bool = False) -> None:
        """Raise 403 DENIED if adding ``size`` bytes (``digest``, if known) would pass a limit."""
        for ns in self.namespaces:
            if not matches(ns.rule.patterns, repository):
                continue
            used = ns.used
            limit = int(ns.rule.limit)
            if digest is not None and digest in ns.blobs:
                continue
            if (used >= limit) if full_only else (used + size > limit):
                raise RegistryError(ErrorCode.DENIED, "storage quota exceeded", {
                    "repositories": list(ns.rule.patterns), "used": used, "allowed": limit, "needed": size})

    def report(self) -> list[dict[str, Any]]:
        """``GET /admin/quotas`` and ``berth du``: each namespace's limit, use and blob count."""
        return [{"repositories": list(ns.rule.patterns), "limit": int(ns.rule.limit), "used": ns.used,
                 "blobs": len(ns.blobs), "exact": ns.untracked == 0,
                 "computedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns.computed_at))
                 if ns.computed_at else None} for ns in self.namespaces]

    async def run(self, interval: float = RECOMPUTE_INTERVAL) -> None:
        """Recompute now and every ``interval`` seconds (errors logged, never raised)."""
        while True:
            try:
                await self.recompute()
            except Exception:
                log.exception("quota usage recompute failed")
            await asyncio.sleep(interval)


def _digest(text: str) -> Digest | None:
    try:
        return Digest.parse(text) if text else None
    except InvalidDigest:
        return None


class UsageSink:
    """Feeds committed pushes, mounts and deletes to a :class:`QuotaTracker`, then hands events on."""

    def __init__(self, inner: EventSink, tracker: QuotaTracker) -> None:
        self.inner = inner
        self.tracker = tracker

    async def publish(self, events: Sequence[Event]) -> None:
        """Update usage (pushes and mounts link; digest deletes unlink; tag deletes change nothing)."""
        for event in events:
            digest = _digest(event.digest)
            if digest is None:
                continue
            if event.action in ("push", "mount"):
                self.tracker.linked(event.repository, digest, event.size)
            elif event.action == "delete" and not event.tag:
                self.tracker.unlinked(event.repository, digest)
        await self.inner.publish(events)


def _content_length(request: web.Request) -> int:
    value = request.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else 0


def make_middleware(tracker: QuotaTracker) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware that refuses writes past a limit (see the module doc)."""
    from registry.appkeys import REGISTRY

    @web.middleware
    async def quota_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = match(request.path) if request.method in ("POST", "PUT", "PATCH") else None
        if route is None or not route.name:
            return await handler(request)
        name = route.name
        if route.kind == Kind.MANIFEST and request.method == "PUT":
            tracker.check(name, None, _content_length(request))
        elif route.kind == Kind.UPLOAD_START and request.method == "POST":
            mount = _digest(request.query.get("mount", ""))
            given = _digest(request.query.get("digest", ""))
            if mount is not None:
                info = await request.app[REGISTRY].blob_exists_anywhere(mount)
                tracker.check(name, mount, info.size if info is not None else 0)
            elif given is not None:
                tracker.check(name, given, _content_length(request))
            else:
                tracker.check(name, None, 0, full_only=True)
        elif route.kind == Kind.UPLOAD and request.method == "PATCH":
            tracker.check(name, None, 0, full_only=True)
        elif route.kind == Kind.UPLOAD and request.method == "PUT":
            given = _digest(request.query.get("digest", ""))
            try:
                offset, _ = await request.app[REGISTRY].upload_status(name, route.reference)
            except RegistryError:
                offset = 0  # the handler answers for an unknown upload
            tracker.check(name, given, offset + _content_length(request))
        return await handler(request)

    return quota_middleware
