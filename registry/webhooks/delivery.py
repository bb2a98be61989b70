"""One delivery worker per endpoint: in order, one request at a time, retried with backoff.

A worker first works through replay files queued by ``berth webhooks replay``,
then follows the outbox log from its cursor. Each matching event is POSTed
until a 2xx answer; failures are retried after an exponential, jittered delay
(see :func:`backoff_delay`) until the event is older than the endpoint's
``maxretryage``, when it goes to the dead-letter file with its last error.
The cursor is persisted only after an event is handled, so a crash leads to a
redelivery of the same event id, never to a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp
from multidict import CIMultiDict

from registry.webhooks import metrics
from registry.webhooks.config import Endpoint
from registry.webhooks.envelope import render
from registry.webhooks.filters import EndpointFilter
from registry.webhooks.outbox import READ_BATCH, EndpointState, Outbox, Record, read_records
from registry.webhooks.signing import SIGNATURE_HEADER, sign

log = logging.getLogger("berth.webhooks")

USER_AGENT = "Berth-Webhooks/0.1"
REPLAY_POLL = 1.0  # seconds between looks for new replay files
SAVE_INTERVAL = 0.2  # at most this much delivery progress is repeated after a crash
LIVE_MAX = 10_000  # records handed over in memory before a lagging worker goes back to reading the log
MAX_ERROR_BODY = 200  # characters of a failed response's body kept in last_error
_READ_LIMIT = 64 * 1024  # bytes of a response body read before the connection is released


def backoff_delay(attempts: int, endpoint: Endpoint, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the ``attempts``-th consecutive failure.

    The first ``threshold`` failures wait about ``backoff`` each (Distribution's
    meaning of threshold: failures tolerated before backing off); after that
    the wait doubles per failure up to ``maxbackoff``. Each wait is jittered
    to between half and all of its value so endpoints coming back are not hit
    by every replica at once.
    """
    exponent = max(0, attempts - endpoint.threshold)
    base = min(endpoint.maxbackoff, endpoint.backoff * (2.0 ** min(exponent, 32)))
    return base * (0.5 + 0.5 * rand())


@dataclass(frozen=True)
class EndpointStatus:
    """What ``berth webhooks status`` and ``GET /admin/webhooks`` report for one endpoint."""

    name: str
    url: str
    format: str
    disabled: bool
    pending: int
    delivered: int
    failed: int
    deadlettered: int
    last_error: str
    last_error_at: float | None
    last_success_at: float | None
    cursor: int | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (times as Unix seconds)."""
        return dataclasses.asdict(self)


class EndpointWorker:
    """Delivers the events of one endpoint. Runs as one task; owns that endpoint's state."""

    def __init__(self, endpoint: Endpoint, outbox: Outbox, *, include_references: bool,
                 committed: Callable[[], int]) -> None:
        self.endpoint = endpoint
        self.filter = EndpointFilter(endpoint)
        self._outbox = outbox
        self._include_refs = include_references
        self._committed = committed
        self.state = EndpointState()
        self.pending = 0
        self._buffer: deque[Record] = deque()
        self._reader = outbox.reader(0)
        self._taken = 0  # seq of the last log record handed to delivery
        # While caught up, new records arrive here from notify() instead of being read back from disk.
        self._live: deque[Record] | None = None
        self._last_save = 0.0
        self._replay: Path | None = None
        self._replay_offset = 0
        self._replay_buffer: list[Record] = []
        self._replay_checked = 0.0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._draining = False
        self._dirty = False
        self._version = 0
        self._saved_version = 0
        self._saved_cursor = 0
        self._save_lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._replay_seen: set[str] = set()
        name = endpoint.name
        self._m_pending = metrics.PENDING.labels(name)
        self._m_queued = metrics.EVENTS.labels(name, "queued")
        self._m_delivered = metrics.EVENTS.labels(name, "delivered")
        self._m_filtered = metrics.EVENTS.labels(name, "filtered")
        self._m_dead = metrics.EVENTS.labels(name, "deadlettered")
        self._m_failed = metrics.FAILED_ATTEMPTS.labels(name)
        self._m_last_success = metrics.LAST_SUCCESS.labels(name)
        self._m_latency = metrics.DELIVERY_SECONDS.labels(name)

    @property
    def name(self) -> str:
        """The endpoint name."""
        return self.endpoint.name

    @property
    def persisted_cursor(self) -> int:
        """The cursor as last written to disk (what a restart would resume from)."""
        return self._saved_cursor

    # -- lifecycle -------------------------------------------------------------------------

    def load(self, last_seq: int) -> None:
        """Blocking: read the persisted state, position the reader, count pending events."""
        self.state = self._outbox.load_state(self.name)
        if self.state.cursor is None:
            self.state.cursor = last_seq  # a new endpoint starts with the events that come next
        elif self.state.cursor > last_seq:
            log.warning("webhooks: endpoint %s cursor %d is past the log end %d; resetting",
                        self.name, self.state.cursor, last_seq)
            self.state.cursor = last_seq
        self._outbox.save_state(self.name, self.state)
        self._saved_cursor = self.state.cursor
        self.pending = sum(1 for r in self._outbox.records(self.state.cursor) if r.seq <= last_seq
                           and self.filter.matches(r.event))
        self.pending += self._count_replays(self._outbox.replay_files(self.name))
        self._reader = self._outbox.reader(self.state.cursor)
        self._taken = self.state.cursor
        self._m_pending.set(self.pending)

    def _count_replays(self, files: list[Path]) -> int:
        """Blocking: records in replay files not counted before (minus those already handled)."""
        total = 0
        for path in files:
            if path.name in self._replay_seen:
                continue
            self._replay_seen.add(path.name)
            records, _ = read_records(path)
            total += len(records)
            if path.name == self.state.replay_file:
                total -= min(self.state.replay_done, len(records))
        return total

    def notify(self, records: list[Record]) -> None:
        """New records were committed to the log: count the matching ones and wake up."""
        if self._live is not None:
            if len(self._live) + len(records) > LIVE_MAX:
                self._live = None  # lagging: read the log from disk again
                self._reader = self._outbox.reader(self._taken)
                self._buffer.clear()
            else:
                self._live.extend(records)
        matched = sum(1 for r in records if self.filter.matches(r.event))
        if matched:
            self.pending += matched
            self._m_pending.set(self.pending)
            self._m_queued.inc(matched)
        self._wake.set()

    def drain(self) -> None:
        """Deliver what is ready, without waiting out backoffs, then stop."""
        self._draining = True
        self._stop.set()
        self._wake.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        """The worker loop (returns when drained or stopped)."""
        self._session = session
        try:
            while True:
                try:
                    if not await self._step():
                        return
                except Exception:
                    # An IO error (disk full, a vanished file): start over from the cursor after a pause.
                    log.exception("webhooks: endpoint %s: delivery loop failed; retrying", self.name)
                    self._rewind()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.endpoint.maxbackoff)
                    if self._stop.is_set():
                        return
        finally:
            if self._dirty:
                await self.save()

    async def _step(self) -> bool:
        """Handle the next event (or wait for one); False when the worker should stop."""
        item = await self._next()
        if item is None:
            if self._draining:
                return False
            await self._idle()
            return True
        record, from_replay = item
        if not self.filter.matches(record.event):
            self._m_filtered.inc()
            self._handled(record, from_replay, counted=from_replay)
            return True
        if not await self._deliver(record):
            return False
        self._handled(record, from_replay, counted=True)
        if time.monotonic() - self._last_save >= SAVE_INTERVAL:
            await self.save()
        return True

    def _rewind(self) -> None:
        """Forget what was read ahead; continue from the state's cursor and replay position."""
        cursor = self.state.cursor or 0
        self._live = None
        self._buffer.clear()
        self._reader = self._outbox.reader(cursor)
        self._taken = cursor
        self._replay, self._replay_buffer, self._replay_checked = None, [], 0.0

    async def _idle(self) -> None:
        if self._dirty:
            await self.save()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), REPLAY_POLL)
        self._wake.clear()

    # -- reading ---------------------------------------------------------------------------

    async def _next(self) -> tuple[Record, bool] | None:
        replayed = await self._next_replay()
        if replayed is not None:
            return replayed, True
        if not self._buffer and self._live:
            self._buffer.append(self._live.popleft())
        while not self._buffer and self._live is None:
            upto = self._committed()
            self._buffer.extend(await asyncio.to_thread(self._reader.read, READ_BATCH, upto))
            if not self._buffer and upto == self._committed() and self._live is None:
                self._live = deque()  # caught up: from now on notify() hands records over
        if self._buffer:
            record = self._buffer.popleft()
            self._taken = record.seq
            return record, False
        return None

    async def _next_replay(self) -> Record | None:
        if self._replay is None:
            now = time.monotonic()
            if now - self._replay_checked < REPLAY_POLL and not self._draining:
                return None
            self._replay_checked = now
            files = await asyncio.to_thread(self._outbox.replay_files, self.name)
            if not files:
                return None
            if any(f.name not in self._replay_seen for f in files):
                self.pending += await asyncio.to_thread(self._count_replays, files)
                self._m_pending.set(self.pending)
            self._replay, self._replay_offset, self._replay_buffer = files[0], 0, []
            if self.state.replay_file != files[0].name:
                self.state.replay_file, self.state.replay_done = files[0].name, 0
                self._mark_dirty()
            else:
                skipped, self._replay_offset = await asyncio.to_thread(
                    read_records, files[0], 0, self.state.replay_done)
                if self.state.replay_done and not skipped:
                    self.state.replay_done = 0
        if not self._replay_buffer:
            self._replay_buffer, self._replay_offset = await asyncio.to_thread(
                read_records, self._replay, self._replay_offset, READ_BATCH)
        if self._replay_buffer:
            return self._replay_buffer.pop(0)
        await asyncio.to_thread(self._outbox.finish_replay, self._replay)
        self._replay_seen.discard(self._replay.name)
        self._replay = None
        self.state.replay_file, self.state.replay_done = "", 0
        self._replay_checked = 0.0
        self._mark_dirty()
        return await self._next_replay()

    # -- delivering ------------------------------------------------------------------------

    def _handled(self, record: Record, from_replay: bool, *, counted: bool) -> None:
        if from_replay:
            self.state.replay_done += 1
        else:
            self.state.cursor = record.seq
        if counted:
            self.pending = max(0, self.pending - 1)
            self._m_pending.set(self.pending)
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        self._dirty = True
        self._version += 1

    async def _deliver(self, record: Record) -> bool:
        """Send until delivered or dead-lettered (True), or until told to stop (False)."""
        attempts = 0
        while True:
            error = await self.attempt(record)
            now = time.time()
            if error is None:
                self.state.delivered += 1
                self.state.last_success_at = now
                self._m_delivered.inc()
                self._m_last_success.set(now)
                return True
            attempts += 1
            self.state.failed += 1
            self.state.last_error, self.state.last_error_at = error, now
            self._mark_dirty()
            self._m_failed.inc()
            if attempts == self.endpoint.threshold:
                log.warning("webhooks: endpoint %s failed %d times in a row: %s", self.name, attempts, error)
            age = now - record.queued
            if age >= self.endpoint.maxretryage:
                await asyncio.to_thread(self._outbox.dead_letter, self.name, record, error, attempts)
                self.state.deadlettered += 1
                self._m_dead.inc()
                log.error("webhooks: endpoint %s: event %s dead-lettered after %d attempts: %s",
                          self.name, record.id, attempts, error)
                return True
            if self._draining:
                return False
            await self.save()
            delay = min(backoff_delay(attempts, self.endpoint), self.endpoint.maxretryage - age)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return False

    async def attempt(self, record: Record) -> str | None:
        """POST ``record`` once; None on a 2xx answer, else a short description of the failure."""
        assert self._session is not None
        ep = self.endpoint
        content_type, body = render(record.event, ep.format, self._include_refs)
        headers: CIMultiDict[str] = CIMultiDict()
        for key, values in ep.headers.items():
            for value in values:
                headers.add(key, value)
        headers["Content-Type"] = content_type
        if ep.secret:
            headers[SIGNATURE_HEADER] = sign(ep.secret, body)
        started = time.perf_counter()
        try:
            async with self._session.post(ep.url, data=body, headers=headers, allow_redirects=False,
                                          timeout=aiohttp.ClientTimeout(total=ep.timeout)) as resp:
                text = (await resp.content.read(_READ_LIMIT)).decode("utf-8", "replace")
                metrics.RESPONSES.labels(self.name, str(resp.status)).inc()
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}: {text[:MAX_ERROR_BODY]}".rstrip(": ")
        except asyncio.TimeoutError:
            return f"timed out after {ep.timeout:g}s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_BODY * 2]
        finally:
            self._m_latency.observe(time.perf_counter() - started)

    # -- persistence -----------------------------------------------------------------------

    async def save(self) -> None:
        """Persist the state (cursor, counters) if it changed; never moves the saved cursor back."""
        if not self._dirty:
            return
        self._dirty = False
        self._last_save = time.monotonic()
        snapshot = dataclasses.replace(self.state)
        await asyncio.to_thread(self._save_sync, snapshot, self._version)

    def _save_sync(self, snapshot: EndpointState, version: int) -> None:
        with self._save_lock:
            if version <= self._saved_version:
                return
            self._outbox.save_state(self.name, snapshot)
            self._saved_version = version
            self._saved_cursor = snapshot.cursor or 0

    def status(self) -> EndpointStatus:
        """Blocking (reads the dead-letter file): the current status."""
        return EndpointStatus(
            name=self.name, url=self.endpoint.url, format=self.endpoint.format, disabled=False,
            pending=self.pending, delivered=self.state.delivered, failed=self.state.failed,
            deadlettered=len(self._outbox.dead_letters(self.name)), last_error=self.state.last_error,
            last_error_at=self.state.last_error_at, last_success_at=self.state.last_success_at,
            cursor=self.state.cursor)
