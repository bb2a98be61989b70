"""Running the server: listeners, TLS, limits, timeouts and graceful shutdown.

:func:`serve` runs until SIGTERM or SIGINT, then drains:

1. ``/readyz`` turns 503 and the listening sockets close (no new connections);
   every response from now on carries ``Connection: close``;
2. requests in flight — uploads still receiving their body included, and blobs
   still being sent — get ``http.draintimeout`` seconds to finish; then the
   remaining connections are closed and what is left is cancelled (a cut upload
   can be resumed from the offset the registry reports);
3. the apps' cleanup runs: the webhook outbox is flushed (within
   ``notifications.draintimeout``), background tasks stop, storage closes;
4. :func:`serve` returns and ``berth serve`` exits 0. A second signal stops
   waiting for requests in flight.

Limits: request line and each header field up to ``http.maxheadersize``;
request bodies outside uploads up to ``http.maxmanifestsize`` (413 above).
Timeouts: a connection that sends nothing for ``http.idletimeout`` seconds —
before a request, between requests, or in the middle of a request body that
has stopped moving — is closed; a slow upload that keeps moving is never cut.

With ``http.debug.addr`` set, a second listener serves only the probes and
(when enabled) the metrics endpoint. ``berth serve`` runs on uvloop where it is installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from registry import observability
from registry.app import create_app
from registry.config import Config

log = logging.getLogger("berth.server")

CANCEL_GRACE = 1.0  # after the drain: seconds aiohttp gives handlers before cancelling them

TLS_VERSIONS = {
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` / ``:port`` / ``[v6]:port`` -> (host, port); an empty host means every interface."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """The server TLS context from ``http.tls`` (None: plain HTTP)."""
    tls = config.http.tls
    if tls is None or not tls.certificate:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    minimum = (tls.minimumtls or "tls1.2").lower()
    if minimum not in TLS_VERSIONS:
        raise ValueError(f"http.tls.minimumtls: expected one of {', '.join(TLS_VERSIONS)}, got {tls.minimumtls!r}")
    ctx.minimum_version = max(TLS_VERSIONS[minimum], ssl.TLSVersion.TLSv1_2)
    ctx.load_cert_chain(tls.certificate, tls.key or None)
    if tls.clientcas:
        ctx.verify_mode = ssl.CERT_REQUIRED
        for ca in tls.clientcas:
            ctx.load_verify_locations(ca)
    return ctx


def _site(runner: web.AppRunner, config: Config, addr: str, tls: ssl.SSLContext | None) -> web.BaseSite:
    if config.http.net == "unix":
        return web.UnixSite(runner, addr, ssl_context=tls)
    host, port = split_addr(addr)
    return web.TCPSite(runner, host, port, ssl_context=tls, backlog=1024)


class Server:
    """The registry's listeners and their lifecycle (usable in-process, e.g. by tests)."""

    def __init__(self, config: Config, app: web.Application | None = None) -> None:
        self.config = config
        self.app = app if app is not None else create_app(config)
        self.runner: web.AppRunner | None = None
        self.debug_runner: web.AppRunner | None = None
        self.addresses: list[str] = []

    async def start(self) -> None:
        """Open the storage and every subsystem, then start listening."""
        http = self.config.http
        self.runner = web.AppRunner(
            self.app,
            handle_signals=False,
            shutdown_timeout=CANCEL_GRACE,
            keepalive_timeout=float(http.idletimeout),
            max_line_size=int(http.maxheadersize),
            max_field_size=int(http.maxheadersize),
            **observability.server_kwargs(),
        )
        await self.runner.setup()
        site = _site(self.runner, self.config, http.addr, ssl_context(self.config))
        await site.start()
        self.addresses.append(site.name)
        if http.debug.addr:
            self.debug_runner = web.AppRunner(observability.debug_app(self.app, self.config), handle_signals=False,
                                              shutdown_timeout=1.0, access_log=None)
            await self.debug_runner.setup()
            debug_site = web.TCPSite(self.debug_runner, *split_addr(http.debug.addr))
            await debug_site.start()
            self.addresses.append(debug_site.name)
        log.info("listening on %s", ", ".join(self.addresses))

    async def stop(self) -> None:
        """Drain (see the module docstring) and release everything."""
        observability.mark_draining(self.app)
        state = self.app.get(observability.OBSERVABILITY)
        drain = float(self.config.http.draintimeout)
        if self.runner is not None:
            # Stop accepting, but keep connections open: aiohttp's own shutdown stops reading
            # request bodies at once, which would cut every upload in flight.
            for site in list(self.runner.sites):
                await site.stop()
        if state is not None and state.active:
            log.info("draining: waiting up to %.0fs for %d requests in flight", drain, state.active)
            if not await state.wait_idle(drain) and state.active:
                log.warning("drain deadline passed: cancelling %d requests in flight", state.active)
        else:
            log.info("shutting down: no requests in flight")
        if self.debug_runner is not None:
            await self.debug_runner.cleanup()
        if self.runner is not None:
            await self.runner.cleanup()  # closes connections, then runs the apps' cleanup (webhooks, storage)
        log.info("stopped")

    def hurry(self) -> None:
        """Stop waiting for requests in flight (a second signal)."""
        state = self.app.get(observability.OBSERVABILITY)
        if state is not None:
            log.warning("second signal: not waiting for requests in flight")
            state.stop_waiting()


async def run(config: Config, stop: asyncio.Event | None = None,
              started: Callable[[Server], None] | None = None) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives; then drain and return."""
    server = Server(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal() -> None:
        if stop.is_set():
            server.hurry()
        else:
            log.info("signal received")
            stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        try:
            await server.start()
            if started is not None:
                started(server)
            await stop.wait()
        finally:
            await server.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (faster uploads), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # uvloop is a dependency on Linux; other platforms run on asyncio's loop
        return None
    return uvloop.new_event_loop


def serve(config: Config, started: Callable[[Server], None] | None = None) -> None:
    """``berth serve``: configure logging, serve until a signal, drain, return (exit 0).

    ``started`` is called once the listeners are open (the start-up banner)."""
    observability.configure_logging(config)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run(config, started=started))
