"""Operating signals: ``/healthz``, ``/readyz``, ``/metrics``, access logs, structured logging.

This module owns what an operator watches:

* ``GET /healthz`` answers 200 while the process serves; ``GET /readyz`` answers
  200 when storage is reachable (``driver.health()``, cached for a second) and,
  on a local filesystem root, has at least ``health.storagedriver.minfree`` bytes
  free (``statvfs`` in a thread); 503 with the reason while not, or while the
  server drains. Both live outside ``/v2/``
  and need no credentials.
* ``GET <http.debug.prometheus.path>`` (when ``http.debug.prometheus.enabled``)
  serves the process's default Prometheus registry: the request metrics below,
  storage operation metrics (:mod:`storage_backends.instrumented`), garbage
  collection metrics (:mod:`registry.maintenance.gc`) and the webhook metrics
  (:mod:`registry.webhooks.metrics`). Every collector is created once per
  process, so any number of apps can share them.
* :class:`AccessLogger` writes one structured line per request (request id,
  user, repository, method, route, status, bytes in and out, duration) and
  records the request metrics. Headers are never logged, and the query string
  only with secrets (upload ``_state``, tokens, signatures, passwords) redacted.
* :func:`configure_logging` sets the process's log format (``log.formatter``:
  json, logstash or text) and level (``log.level``), adding ``log.fields``.
* The middleware installed by :func:`setup` counts requests in flight and
  uploads receiving a body, closes a connection whose request body has not
  moved for ``http.idletimeout`` seconds (a slow upload that keeps moving is
  never cut), and logs requests the client aborted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from registry.appkeys import CONFIG, REQUEST_ID, REQUEST_REPOSITORY, REQUEST_USER, STORAGE
from registry.errors import ErrorCode, RegistryError
from registry.routes import match

if TYPE_CHECKING:
    from registry.config import Config

log = logging.getLogger("berth.observability")
access_log = logging.getLogger("berth.access")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
READY_CACHE_SECONDS = 1.0
READY_TIMEOUT = 5.0
ABORTED_STATUS = 499  # nginx's "client closed request"
STALLED_STATUS = 408

_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
_SECRET_QUERY_WORDS = ("_state", "token", "password", "secret", "signature", "credential", "x-amz-")

REQUESTS = Counter("berth_http_requests", "HTTP requests by route kind, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("berth_http_request_duration_seconds", "HTTP request latency (until the response is sent).",
                    ["route", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                             60.0, 300.0))
BYTES_IN = Counter("berth_http_request_body_bytes", "Request body bytes received, by route kind.", ["route"])
BYTES_OUT = Counter("berth_http_response_bytes", "Response bytes sent, by route kind.", ["route"])
IN_FLIGHT = Gauge("berth_http_requests_in_flight", "Requests being handled now.")
UPLOADS = Gauge("berth_uploads_in_progress", "Blob upload requests receiving a body now.")
STORAGE_UP = Gauge("berth_storage_up", "1 when the last storage health check passed, else 0.")
STORAGE_FREE = Gauge("berth_storage_free_bytes", "Bytes free to Berth on a local storage root (last check).")
STALLED = Counter("berth_http_stalled_bodies", "Connections closed because a request body stopped moving.")


@dataclass
class Observability:
    """Per-app state: requests in flight, the draining flag and the cached readiness answer.

    A request is in flight from the middleware's entry until its response has been
    sent (the access logger's call), so a blob still streaming by ``sendfile`` after
    its handler returned counts too.
    """

    config: Config
    draining: bool = False
    active: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _ready_at: float = 0.0
    _ready: tuple[bool, str] = (True, "")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._idle.set()

    def begin(self, request: web.BaseRequest) -> None:
        """A request entered the app."""
        request[_ACTIVE] = True
        self.active += 1
        self._idle.clear()

    def end(self, request: web.BaseRequest) -> None:
        """Its response is sent, or it was aborted (idempotent per request)."""
        if request.get(_ACTIVE):
            request[_ACTIVE] = False
            self.active -= 1
            if self.active <= 0:
                self.active = 0
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (True) or ``timeout`` passes (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def stop_waiting(self) -> None:
        """Make :meth:`wait_idle` return now."""
        self._idle.set()

    async def storage_ready(self, app: web.Application) -> tuple[bool, str]:
        """Whether storage answers (cached for :data:`READY_CACHE_SECONDS`); and why not."""
        async with self._lock:
            now = time.monotonic()
            if now - self._ready_at < READY_CACHE_SECONDS:
                return self._ready
            self._ready = await check_storage(app)
            self._ready_at = time.monotonic()
            return self._ready


OBSERVABILITY: web.AppKey[Observability] = web.AppKey("berth.observability", Observability)
_START: web.RequestKey[float] = web.RequestKey("berth.start", float)
_STALLED: web.RequestKey[bool] = web.RequestKey("berth.stalled", bool)
_ACTIVE: web.RequestKey[bool] = web.RequestKey("berth.active", bool)


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem that holds (or will hold) ``path``
    (blocking; a root not created yet is measured at its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


async def check_free_space(app: web.Application) -> str:
    """'' when a local storage root has at least ``health.storagedriver.minfree`` bytes free (or the
    storage is not local, or the floor is 0); else the reason."""
    driver = app.get(STORAGE)
    config = app.get(CONFIG)
    floor = config.health.storagedriver.minfree if config is not None else 0
    root = driver.local_path("/") if driver is not None else None
    if not floor or root is None:
        return ""
    free = await asyncio.to_thread(free_bytes, root)
    STORAGE_FREE.set(free)
    if free < floor:
        return f"low disk space: {free} bytes free, below health.storagedriver.minfree ({floor})"
    return ""


async def check_storage(app: web.Application) -> tuple[bool, str]:
    """Run the storage driver's health check with a timeout, then the free-space floor; (ok, reason)."""
    driver = app.get(STORAGE)
    if driver is None:
        return False, "storage not open"
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await driver.health()
            low = await check_free_space(app)
    except Exception as exc:  # any failure means "not ready"; the class name is enough for callers
        log.warning("storage health check failed: %s", exc)
        STORAGE_UP.set(0)
        return False, type(exc).__name__
    STORAGE_UP.set(1)
    if low:
        log.warning("storage not ready: %s", low)
        return False, low
    return True, ""


# ------------------------------------------------------------------------------- classification


def route_kind(path: str) -> str:
    """A low-cardinality name for what ``path`` addresses (metric label, log field)."""
    route = match(path)
    if route is not None:
        return route.kind.value
    if path in (HEALTH_PATH, READY_PATH):
        return path[1:]
    first = path.strip("/").split("/", 1)[0]
    if first in ("admin", "auth", "metrics"):
        return first
    return "other"


def _method(method: str) -> str:
    return method if method in _METHODS else "other"


def safe_query(request: web.BaseRequest) -> str:
    """The query string with secret-looking parameters' values replaced by ``REDACTED``."""
    if not request.query_string:
        return ""
    parts = []
    for key, value in request.query.items():
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_QUERY_WORDS):
            value = "REDACTED"
        parts.append(f"{quote(key, safe='')}={quote(value, safe='')}")
    return "&".join(parts)


# ----------------------------------------------------------------------------------- access log


def access_fields(request: web.BaseRequest, status: int, bytes_out: int, duration: float) -> dict[str, Any]:
    """The structured fields of one access-log line."""
    user = request.get(REQUEST_USER) or ""
    return {
        "request_id": request.get(REQUEST_ID, ""),
        "remote": request.remote or "",
        "method": request.method,
        "path": request.path,
        "query": safe_query(request),
        "route": route_kind(request.path),
        "repository": request.get(REQUEST_REPOSITORY, ""),
        "user": user,
        "status": status,
        "bytes_in": request.content.total_bytes if request.body_exists else 0,
        "bytes_out": bytes_out,
        "duration_ms": round(duration * 1000, 3),
        "user_agent": request.headers.get("User-Agent", ""),
    }


def _record(fields: dict[str, Any], duration: float) -> None:
    route, method = fields["route"], _method(fields["method"])
    REQUESTS.labels(route, method, str(fields["status"])).inc()
    LATENCY.labels(route, method).observe(duration)
    if fields["bytes_in"]:
        BYTES_IN.labels(route).inc(fields["bytes_in"])
    if fields["bytes_out"]:
        BYTES_OUT.labels(route).inc(fields["bytes_out"])


def _access_enabled(request: web.BaseRequest) -> bool:
    app = getattr(request, "app", None)
    config = app.get(CONFIG) if app is not None else None
    return not (config is not None and config.log.accesslog.get("disabled"))


def sent_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """Bytes written for the response, headers included.

    aiohttp counts what passes through its writer; a file sent with ``sendfile``
    bypasses it, so its length is added from the response's Content-Length.
    """
    written = response.body_length
    length = response.content_length or 0
    if isinstance(response, web.FileResponse) and request.method != "HEAD" and written < length:
        written += length
    return written


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook: called once the response has been sent (sendfile included)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Record the request metrics and write the access line."""
        fields = access_fields(request, response.status, sent_bytes(request, response), time)
        _record(fields, time)
        if _access_enabled(request):
            self.logger.info("request", extra={"fields": fields})
        state = _state_of(request)
        if state is not None:
            state.end(request)


def _state_of(request: web.BaseRequest) -> Observability | None:
    app = getattr(request, "app", None)
    return app.get(OBSERVABILITY) if app is not None else None


def server_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``AppRunner``/``TestServer`` that install :class:`AccessLogger`."""
    return {"access_log_class": AccessLogger, "access_log": access_log}


# ----------------------------------------------------------------------------------- middleware


def _watch_body(request: web.Request, idle: float) -> Callable[[], None]:
    """Close the connection if the request body stops moving for ``idle`` seconds; returns the canceller.

    Bytes waiting in aiohttp's buffer mean the server, not the client, is slow:
    that never counts as idle.
    """
    loop = asyncio.get_running_loop()
    content = request.content
    seen = content.total_bytes
    last = loop.time()
    handle: asyncio.TimerHandle | None = None

    def check() -> None:
        nonlocal seen, last, handle
        handle = None
        if content.is_eof() or content.exception() is not None:
            return
        now = loop.time()
        buffered = getattr(content, "_size", 0)
        if content.total_bytes != seen or buffered:
            seen, last = content.total_bytes, now
        elif now - last >= idle:
            STALLED.inc()
            request[_STALLED] = True
            log.warning("closing connection from %s: request body idle for %.0fs after %d bytes (%s %s)",
                        request.remote, idle, seen, request.method, request.path)
            if request.transport is not None:
                request.transport.close()
            return
        handle = loop.call_later(max(idle / 4, 0.05), check)

    handle = loop.call_later(max(idle / 4, 0.05), check)

    def cancel() -> None:
        if handle is not None:
            handle.cancel()

    return cancel


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gauges, the idle-body watchdog, and access lines for requests that never got a response."""
    loop = asyncio.get_running_loop()
    request[_START] = loop.time()
    kind = route_kind(request.path)
    uploading = kind in ("upload", "upload_start") and request.body_exists
    idle = float(request.app[CONFIG].http.idletimeout)
    stop_watch = _watch_body(request, idle) if request.body_exists and idle > 0 else None
    state = request.app[OBSERVABILITY]
    state.begin(request)
    IN_FLIGHT.inc()
    if uploading:
        UPLOADS.inc()
    try:
        return await handler(request)
    except (asyncio.CancelledError, ConnectionError):
        state.end(request)
        status = STALLED_STATUS if request.get(_STALLED) else ABORTED_STATUS
        duration = loop.time() - request[_START]
        fields = access_fields(request, status, 0, duration)
        _record(fields, duration)
        if _access_enabled(request):
            access_log.info("request aborted", extra={"fields": fields})
        raise
    finally:
        IN_FLIGHT.dec()
        if uploading:
            UPLOADS.dec()
        if stop_watch is not None:
            stop_watch()


# ------------------------------------------------------------------------------------- handlers


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and its event loop answers."""
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


def _main_app(request: web.Request) -> web.Application:
    return request.app.get(_MAIN, request.app)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: not draining, and storage reachable (unless ``health.storagedriver.enabled`` is false)."""
    app = _main_app(request)
    state = app[OBSERVABILITY]
    headers = {"Cache-Control": "no-store"}
    if state.draining:
        return web.json_response({"status": "draining"}, status=503, headers=headers)
    if state.config.health.storagedriver.enabled:
        ok, error = await state.storage_ready(app)
        if not ok:
            return web.json_response({"status": "unavailable", "checks": {"storage": error}}, status=503,
                                     headers=headers)
    return web.json_response({"status": "ok", "checks": {"storage": "ok"}}, headers=headers)


async def metrics(request: web.Request) -> web.Response:
    """The process's Prometheus registry in the text exposition format."""
    body = await asyncio.to_thread(generate_latest, REGISTRY)  # the process collector reads /proc
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


async def require_admin(request: web.Request) -> None:
    """Raise unless the caller may use admin endpoints.

    Without auth every caller may (like every other endpoint). With auth, the auth
    middleware has authenticated the caller already (``/admin/...`` is no free path);
    the caller must then be an admin of the policy (``admins``), or, without a policy
    file, any authenticated user (who may do everything anyway).
    """
    app = request.app
    config = app[CONFIG]
    if not config.auth.enabled:
        return
    from auth.middleware import CONTROLLER, IDENTITY

    controller = app.get(CONTROLLER)
    identity = request.get(IDENTITY)
    user = identity.user if identity is not None else None
    if controller is None or user is None:
        raise RegistryError(ErrorCode.UNAUTHORIZED, "admin endpoints need an authenticated admin")
    if controller.policy_file is None:
        return
    if not (await controller.policy()).is_admin(user):
        raise RegistryError(ErrorCode.DENIED, "admin endpoints are for admins", {"user": user})


# ---------------------------------------------------------------------------------------- wiring


_MAIN: web.AppKey[web.Application] = web.AppKey("berth.main_app", web.Application)


def _add_probe_routes(app: web.Application, config: Config) -> None:
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)
    prometheus = config.http.debug.prometheus
    if prometheus.enabled:
        app.router.add_get(prometheus.path, metrics)


def _health_ctx(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        check = config.health.storagedriver
        task = None
        if check.enabled and check.interval > 0:
            task = asyncio.create_task(_health_loop(app, float(check.interval), check.threshold))
        yield
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    return ctx


async def _health_loop(app: web.Application, interval: float, threshold: int) -> None:
    failures = 0
    while True:
        await asyncio.sleep(interval)
        ok, error = await check_storage(app)
        if ok:
            if failures >= threshold:
                log.warning("storage is reachable again")
            failures = 0
            continue
        failures += 1
        if failures == max(threshold, 1):
            log.error("storage health check failed %d times in a row (%s)", failures, error)


async def _close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    """While draining, every response ends its connection (keep-alive clients go elsewhere)."""
    state = request.app.get(OBSERVABILITY)
    if state is not None and state.draining:
        response.force_close()


def _configured_headers(config: Config) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    headers = [(name, value) for name, values in config.http.headers.items() for value in values]

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in headers:
            if name not in response.headers:
                response.headers.add(name, value)

    return add


def setup(app: web.Application, config: Config) -> None:
    """Install the probes, the metrics endpoint (if enabled), the middleware, ``http.headers``
    on every response, and the storage health loop."""
    app[OBSERVABILITY] = Observability(config)
    app.middlewares.insert(0, observe_middleware)
    app.on_response_prepare.append(_close_when_draining)
    if config.http.headers:
        app.on_response_prepare.append(_configured_headers(config))
    _add_probe_routes(app, config)
    app.cleanup_ctx.append(_health_ctx(config))


def debug_app(main: web.Application, config: Config) -> web.Application:
    """The app served on ``http.debug.addr``: the probes and the metrics endpoint, nothing else."""
    app = web.Application()
    app[_MAIN] = main
    _add_probe_routes(app, config)
    return app


def mark_draining(app: web.Application) -> None:
    """From now on ``/readyz`` answers 503 (the server is shutting down)."""
    state = app.get(OBSERVABILITY)
    if state is not None:
        state.draining = True


# ---------------------------------------------------------------------------------------- logging


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime", "fields"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, the record's ``fields`` and static fields."""

    def __init__(self, static: dict[str, Any] | None = None, logstash: bool = False) -> None:
        super().__init__()
        self.static = dict(static or {})
        self.logstash = logstash

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        doc: dict[str, Any] = {"@timestamp" if self.logstash else "time": stamp,
                               "level": record.levelname.lower(), "logger": record.name,
                               "msg": record.getMessage()}
        if self.logstash:
            doc["@version"] = "1"
        doc.update(self.static)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger msg key=value ...`` for people reading a terminal."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line (plus a traceback, if any)."""
        line = super().format(record)
        extra = dict(self.static)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            extra.update(fields)
        if extra:
            line += " " + " ".join(f"{k}={json.dumps(v) if isinstance(v, str) and (' ' in v or not v) else v}"
                                   for k, v in extra.items())
        return line


def log_level(config: Config) -> int:
    """``log.level`` (or Distribution's older top-level ``loglevel``) as a logging level."""
    name = config.log.level
    if config.loglevel and name == "info":
        name = config.loglevel
    name = name.lower()
    return {"error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
            "info": logging.INFO, "debug": logging.DEBUG}.get(name, logging.INFO)


def configure_logging(config: Config, stream: Any = None) -> None:
    """Process-wide logging from ``log``: one handler on stderr (or ``stream``), format and level."""
    static = dict(config.log.fields)
    formatter: logging.Formatter
    if config.log.formatter == "text":
        formatter = TextFormatter(static)
    else:
        formatter = JSONFormatter(static, logstash=config.log.formatter == "logstash")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = log_level(config)
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
