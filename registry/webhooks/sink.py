"""The durable event sink: ``publish`` writes to the outbox; workers deliver in the background.

Guarantees:

* :meth:`WebhookSink.publish` returns only when its events are fsynced in the
  outbox (so a handler that awaits it before answering never acknowledges a
  push whose event could be lost). Concurrent publishes are group-committed:
  one write and one ``fdatasync`` per batch, in a dedicated thread, so the
  event loop never blocks and many pushes share one disk flush.
* Delivery never slows publishing: workers read the log on their own, one per
  endpoint, and a slow or dead endpoint only grows that endpoint's backlog.
* :meth:`WebhookSink.close` stops accepting events, lets workers deliver what
  they can within ``draintimeout``, persists every cursor, and releases the
  outbox. Anything not delivered is sent after the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import aiohttp

from registry.events import Event
from registry.webhooks import metrics
from registry.webhooks.config import NotificationsConfig
from registry.webhooks.delivery import USER_AGENT, EndpointStatus, EndpointWorker
from registry.webhooks.envelope import Source, event_record
from registry.webhooks.outbox import EndpointState, Outbox, OutboxError, Record

log = logging.getLogger("berth.webhooks")

COMPACT_INTERVAL = 60.0


class WebhookSink:
    """An :class:`registry.events.EventSink` backed by a durable outbox and delivery workers."""

    def __init__(self, config: NotificationsConfig, directory: str | Path, source: Source) -> None:
        self.config = config
        self.directory = Path(directory)
        self.source = source
        self.outbox: Outbox | None = None
        self.workers: list[EndpointWorker] = []
        self._committed = 0
        # Batches for the writer thread: (events, the publisher's future); None stops the thread.
        self._inbox: queue.SimpleQueue[tuple[list[dict[str, Any]], asyncio.Future[None]] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._compactor: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._accepting = False

    @property
    def committed(self) -> int:
        """The newest sequence number known to be durable."""
        return self._committed

    async def open(self) -> None:
        """Open the outbox (taking its lock), load every endpoint's state, start the workers."""
        self.outbox = outbox = await asyncio.to_thread(Outbox, self.directory)
        self._committed = outbox.last_seq
        refs = self.config.events.includereferences
        self.workers = [EndpointWorker(ep, outbox, include_references=refs, committed=lambda: self._committed)
                        for ep in self.config.active_endpoints]
        for worker in self.workers:
            await asyncio.to_thread(worker.load, self._committed)
        for ep in self.config.endpoints:
            if ep.disabled:
                await asyncio.to_thread(_forget_cursor, outbox, ep.name)
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        self._tasks = [asyncio.create_task(w.run(self._session), name=f"webhooks:{w.name}") for w in self.workers]
        self._compactor = asyncio.create_task(self._compact_loop(), name="webhooks:compact")
        self._thread = threading.Thread(target=self._writer, args=(asyncio.get_running_loop(),),
                                        name="berth-outbox", daemon=True)
        self._thread.start()
        self._accepting = True
        log.info("webhooks: outbox %s open at seq %d; delivering to %s", self.directory, self._committed,
                 ", ".join(w.name for w in self.workers))

    async def publish(self, events: Sequence[Event]) -> None:
        """Make ``events`` durable in the outbox (pull events only if ``events.pull`` is on)."""
        records = [event_record(e, self.source) for e in events
                   if e.action != "pull" or self.config.events.pull]
        if not records:
            return
        if not self._accepting:
            raise OutboxError("webhook outbox is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.put((records, future))
        await future

    def _writer(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: append everything queued as one group commit, report back, repeat."""
        assert self.outbox is not None
        while True:
            item = self._inbox.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while True:
                try:
                    nxt = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            started = time.perf_counter()
            try:
                written = self.outbox.append([ev for records, _ in batch for ev in records])
                error: Exception | None = None
            except Exception as exc:  # reported to every publisher of the batch
                written, error = [], exc
            loop.call_soon_threadsafe(self._written, batch, written, error, time.perf_counter() - started)
            if stop:
                return

    def _written(self, batch: list[tuple[list[dict[str, Any]], asyncio.Future[None]]], written: list[Record],
                 error: Exception | None, seconds: float) -> None:
        """On the loop: resolve the batch's publishers and wake the workers."""
        if error is not None:
            log.error("webhooks: cannot write %d events to the outbox: %s", sum(len(r) for r, _ in batch), error)
            for _, future in batch:
                if not future.done():
                    future.set_exception(OutboxError(f"cannot record events: {error}"))
            return
        metrics.PUBLISH_SECONDS.observe(seconds)
        self._committed = written[-1].seq
        for worker in self.workers:
            worker.notify(written)
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _compact_loop(self) -> None:
        assert self.outbox is not None
        while True:
            await asyncio.sleep(COMPACT_INTERVAL)
            floor = min((w.persisted_cursor for w in self.workers), default=self._committed)
            try:
                # Safe next to the writer thread: the active (newest) segment is never removed.
                removed = await asyncio.to_thread(self.outbox.compact, floor, self.config.retention)
                if removed:
                    log.info("webhooks: removed %d delivered outbox segments", removed)
            except OSError as exc:
                log.warning("webhooks: outbox compaction failed: %s", exc)

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting, deliver what can be delivered within ``timeout``, persist, release the outbox."""
        self._accepting = False
        deadline = self.config.draintimeout if timeout is None else timeout
        if self._thread is not None:
            self._inbox.put(None)  # after the batches already queued
            await asyncio.to_thread(self._thread.join)
            await asyncio.sleep(0)  # let the writer's last report run
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        for worker in self.workers:
            worker.drain()
        if self._tasks:
            _, unfinished = await asyncio.wait(self._tasks, timeout=deadline)
            for task in unfinished:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    exc = await asyncio.gather(task, return_exceptions=True)
                    if exc and isinstance(exc[0], Exception):
                        log.error("webhooks: worker %s failed: %r", task.get_name(), exc[0])
        for worker in self.workers:
            await worker.save()
        if self._session is not None:
            await self._session.close()
        if self.outbox is not None:
            await asyncio.to_thread(self.outbox.close)
        pending = {w.name: w.pending for w in self.workers if w.pending}
        if pending:
            log.warning("webhooks: stopped with undelivered events (sent after restart): %s", pending)

    async def status(self) -> list[EndpointStatus]:
        """Per configured endpoint: pending, delivered, failed, dead-lettered, last error and success."""
        active = {w.name: w for w in self.workers}
        out: list[EndpointStatus] = []
        for ep in self.config.endpoints:
            worker = active.get(ep.name)
            if worker is not None:
                out.append(await asyncio.to_thread(worker.status))
            elif self.outbox is not None:
                out.append(await asyncio.to_thread(disabled_status, self.outbox, ep.name, ep.url, ep.format))
        return out


def _forget_cursor(outbox: Outbox, name: str) -> None:
    """A disabled endpoint queues nothing: when enabled again it starts with the events that come next."""
    state = outbox.load_state(name)
    if state.cursor is not None:
        state.cursor = None
        outbox.save_state(name, state)


def disabled_status(outbox: Outbox, name: str, url: str, fmt: str) -> EndpointStatus:
    """Blocking: the status of an endpoint that has no worker (disabled)."""
    state: EndpointState = outbox.load_state(name)
    return EndpointStatus(
        name=name, url=url, format=fmt, disabled=True, pending=0, delivered=state.delivered,
        failed=state.failed, deadlettered=len(outbox.dead_letters(name)), last_error=state.last_error,
        last_error_at=state.last_error_at, last_success_at=state.last_success_at, cursor=state.cursor)
