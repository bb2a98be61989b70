"""A real webhook receiver for the tests: an aiohttp server on 127.0.0.1 that records deliveries.

Its behaviour is programmable per test (fail the next N requests, answer with a
status, delay answers, go down and come back) so faults are injected at the
HTTP boundary rather than by patching the sender.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Delivery:
    """One request the receiver got."""

    path: str
    headers: CIMultiDict[str]
    body: bytes
    at: float
    status: int

    @property
    def json(self) -> Any:
        """The parsed body."""
        return json.loads(self.body)

    @property
    def event(self) -> dict[str, Any]:
        """The single event of a Distribution envelope (or the CloudEvent's data)."""
        doc = self.json
        if "events" in doc:
            assert len(doc["events"]) == 1
            return dict(doc["events"][0])
        return dict(doc["data"])


@dataclass
class Receiver:
    """Records every request; ``accepted`` are those answered 2xx."""

    host: str = "127.0.0.1"
    port: int = 0
    fail_next: int = 0
    fail_status: int = 503
    delay: float = 0.0
    down: bool = False
    requests: list[Delivery] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """The URL to configure as the endpoint."""
        return f"http://{self.host}:{self.port}/hook"

    @property
    def accepted(self) -> list[Delivery]:
        """Requests answered with a 2xx."""
        return [d for d in self.requests if 200 <= d.status < 300]

    def ids(self) -> list[str]:
        """Event ids of the accepted deliveries, in arrival order."""
        return [d.event["id"] for d in self.accepted]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = 200
        if self.down:
            status = self.fail_status
        elif self.fail_next > 0:
            self.fail_next -= 1
            status = self.fail_status
        self.requests.append(Delivery(request.path, CIMultiDict(request.headers), body, time.time(), status))
        self._changed.set()
        return web.Response(status=status, text="nope" if status >= 300 else "")

    async def start(self) -> "Receiver":
        """Listen on 127.0.0.1 (a free port the first time, the same port after a restart)."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop listening (connections are refused until :meth:`start`)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Wait until ``count`` deliveries were accepted; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {count} deliveries, got {len(self.accepted)}: {self.ids()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self.accepted
