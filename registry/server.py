"""Running the server: listen address, TLS, limits, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from registry.app import create_app
from registry.config import Config

log = logging.getLogger("berth.server")


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` / ``:port`` -> (host, port); an empty host means every interface."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def ssl_context(config: Config) -> ssl.SSLContext | None:
    tls = config.http.tls
    if tls is None or not tls.certificate:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.certificate, tls.key)
    if tls.clientcas:
        ctx.verify_mode = ssl.CERT_REQUIRED
        for ca in tls.clientcas:
            ctx.load_verify_locations(ca)
    return ctx


def serve(config: Config) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``http.draintimeout`` to finish."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = create_app(config)
    host, port = split_addr(config.http.addr)
    web.run_app(
        app,
        host=host,
        port=port,
        ssl_context=ssl_context(config),
        shutdown_timeout=config.http.draintimeout,
        keepalive_timeout=config.http.idletimeout,
        access_log=None,
        max_field_size=int(config.http.maxheadersize),
        max_line_size=int(config.http.maxheadersize),
        print=lambda msg: log.info("listening on %s:%d", host, port),
    )
