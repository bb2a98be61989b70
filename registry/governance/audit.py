"""The audit log: one JSON line per security-relevant event, rotated by size, written off the event loop.

Every line has ``time`` (RFC 3339, UTC), ``actor`` (user, ``robot$NAME``, with the access
token id when one was used; ``anonymous``), ``address``, ``action``, ``repository``,
``reference``, ``digest`` and ``outcome`` (``success``, ``failure``, ``denied``), and may add
``detail``. Actions: ``login``, ``token.create``, ``token.revoke``, ``push``, ``mount``,
``delete``, ``pull`` (with ``audit.pulls``), ``denied``, ``policy.reload``, ``retention.run``,
``gc.run``.

Guarantees: :meth:`AuditLog.record` never blocks the event loop: it puts the line on a bounded
queue that a :class:`logging.handlers.QueueListener` thread writes through a
:class:`~logging.handlers.RotatingFileHandler` (``audit.maxsize``, ``audit.backups``). When
the queue is full a line is dropped and counted (``berth_audit_dropped_lines``), never waited
for. No secret is ever written: callers pass names, ids and digests only, and every value is
scrubbed of anything that looks like an access token, or an ``Authorization`` header, as a
second line of defence. Several processes (replicas, CLI runs) may append to one file; rotation
is then per process, so give each replica its own ``audit.path`` when that matters.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import queue
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter

from registry.events import Event, EventSink
from registry.governance.config import AuditConfig

QUEUE_SIZE = 10_000  # lines waiting for the writer thread
MAX_VALUE = 512  # characters kept of any one value
DROPPED = Counter("berth_audit_dropped_lines", "Audit lines dropped because the writer fell behind.")
LINES = Counter("berth_audit_lines", "Audit lines written, by action and outcome.", ["action", "outcome"])

_SECRET_RE = re.compile(r"berth_pat_[A-Za-z0-9_-]*|(?i:authorization)\s*[:=].*|(?i:basic|bearer)\s+[A-Za-z0-9+/=._-]{8,}")


def scrub(value: Any) -> Any:
    """``value`` with anything secret-looking replaced by ``[redacted]`` (strings, lists, dicts)."""
    if isinstance(value, str):
        return _SECRET_RE.sub("[redacted]", value[:MAX_VALUE])
    if isinstance(value, dict):
        return {str(k)[:MAX_VALUE]: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


# Who is acting in the current request: set by the audit middleware to a function answering
# (actor, address), read by the event sink (auth identifies the caller after the middleware starts).
CURRENT: contextvars.ContextVar[Callable[[], tuple[str, str]] | None] = contextvars.ContextVar(
    "berth_audit_context", default=None)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            DROPPED.inc()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # the message is already the finished JSON line


class AuditLog:
    """Appends audit lines to ``config.path`` from a writer thread; :meth:`start` before use, :meth:`stop` after."""

    def __init__(self, config: AuditConfig) -> None:
        self.config = config
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_SIZE)
        self._logger = logging.getLogger(f"berth.audit.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._listener: logging.handlers.QueueListener | None = None
        self._file: logging.Handler | None = None

    @property
    def pulls(self) -> bool:
        """Whether pulls are recorded."""
        return self.config.pulls

    def start(self) -> None:
        """Open the file (blocking; call from a thread or at startup) and start the writer thread."""
        if self._listener is not None:
            return
        handler = logging.handlers.RotatingFileHandler(self.config.path, maxBytes=int(self.config.maxsize),
                                                       backupCount=self.config.backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._file = handler
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._listener.start()
        self._logger.addHandler(_DroppingQueueHandler(self._queue))

    def stop(self) -> None:
        """Write what is queued, stop the thread and close the file (blocking)."""
        if self._listener is None:
            return
        for h in list(self._logger.handlers):
            self._logger.removeHandler(h)
        self._listener.stop()
        self._listener = None
        if self._file is not None:
            self._file.close()

    def record(self, action: str, *, actor: str = "", address: str = "", repository: str = "",
               reference: str = "", digest: str = "", outcome: str = "success",
               detail: dict[str, Any] | None = None, when: float | None = None) -> None:
        """Queue one line (never blocks; see the module doc)."""
        now = time.time() if when is None else when
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "actor": actor or "anonymous", "address": address, "action": action, "repository": repository,
            "reference": reference, "digest": digest, "outcome": outcome,
        }
        if detail:
            line["detail"] = detail
        LINES.labels(action, outcome).inc()
        self._logger.info(json.dumps(scrub(line), separators=(",", ":"), sort_keys=False))


def context_actor(default: str = "") -> tuple[str, str]:
    """(actor, address) of the current request, or ``(default, '')`` outside one."""
    ctx = CURRENT.get()
    if ctx is None:
        return default, ""
    return ctx()


class AuditingSink:
    """An :class:`~registry.events.EventSink` that writes audit lines, then hands the events on."""

    def __init__(self, inner: EventSink, audit: AuditLog, *, forward_pulls: bool = True) -> None:
        self.inner = inner
        self.audit = audit
        self.forward_pulls = forward_pulls  # False: pull events exist only for the audit (events.pull off)

    async def publish(self, events: Sequence[Event]) -> None:
        """Audit each event (pulls only with ``audit.pulls``), then publish to the wrapped sink."""
        for event in events:
            if event.action == "pull" and not self.audit.pulls:
                continue
            actor, address = context_actor(event.actor)
            self.audit.record(event.action, actor=actor or event.actor, address=address or event.request.addr,
                              repository=event.repository, reference=event.tag, digest=event.digest,
                              detail={"from": event.from_repository} if event.from_repository else None)
        if not self.forward_pulls:
            events = [e for e in events if e.action != "pull"]
        if events:
            await self.inner.publish(events)
