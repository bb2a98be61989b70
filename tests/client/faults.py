"""A fault-injecting HTTP proxy in front of a real registry (the only fake in the client suite).

Forwards every request to the upstream registry unchanged, except blob GETs, which it can
cut off halfway (once per blob, to exercise ``Range`` resumes) or corrupt (to exercise digest
verification). Runs its own event loop in a thread; binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "transfer-encoding", "connection", "keep-alive", "content-length"}


@dataclass
class Seen:
    """A request the proxy forwarded."""

    method: str
    path: str
    range: str | None


@dataclass
class FaultProxy:
    """``mode``: ``cut`` (first GET of each blob stops halfway), ``corrupt`` (blob bytes flipped) or ``pass``."""

    upstream: str
    mode: str = "pass"
    seen: list[Seen] = field(default_factory=list)
    _cut: set[str] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def addr(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, request.headers.get("Range")))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        assert self._session is not None
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, allow_redirects=False) as upstream:
            is_blob = request.method == "GET" and "/blobs/sha256:" in request.path and upstream.status in (200, 206)
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            digest = request.path.rsplit("/", 1)[-1]
            cut_at = None
            if is_blob and self.mode == "cut" and digest not in self._cut and (upstream.content_length or 0) > 1:
                self._cut.add(digest)
                cut_at = (upstream.content_length or 0) // 2
            sent = 0
            first = True
            async for chunk in upstream.content.iter_chunked(16 * 1024):
                if is_blob and self.mode == "corrupt" and first and chunk:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                first = False
                if cut_at is not None and sent + len(chunk) >= cut_at:
                    await response.write(chunk[: cut_at - sent])
                    assert request.transport is not None
                    request.transport.close()  # flushes what was written, then ends the connection
                    return response
                await response.write(chunk)
                sent += len(chunk)
                if cut_at is not None:
                    await asyncio.sleep(0.005)  # let the client consume what it got before the cut
            await response.write_eof()
            return response

    def start(self) -> "FaultProxy":
        """Start serving in a background thread."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def setup() -> None:
                self._session = aiohttp.ClientSession(auto_decompress=False)
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self._handle)
                self._runner = web.AppRunner(app, handle_signals=False)
                await self._runner.setup()
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                await site.start()
                server = site._server  # noqa: SLF001 - the bound port
                assert server is not None
                self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

            loop.run_until_complete(setup())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def stop(self) -> None:
        """Stop the loop and join the thread (bounded)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
