"""A wrapping driver that measures every storage operation of the driver it wraps.

:class:`InstrumentedDriver` forwards each call to the inner driver unchanged
and records, in Prometheus collectors of the default registry:

* ``berth_storage_operation_seconds{driver,operation}``: latency of every
  operation (``get_content``, ``put_content``, ``stat``, ``list``, ``move``,
  ``delete``, ``walk`` (whole walk), ``reader`` (until the first chunk),
  ``writer`` (opening), ``write``, ``commit``, ``close``, ``cancel``,
  ``redirect_url``, ``health``);
* ``berth_storage_errors_total{driver,operation,error}``: failed operations by
  error class. "Not found" is an answer, not a failure, and is not counted.

It changes no behaviour: results and exceptions pass through as they are,
``local_path`` (sendfile), ``redirect_url`` and ``health`` reach the inner
driver. Like every backend it imports nothing from ``registry`` or ``auth``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator

from prometheus_client import Counter, Histogram

from storage_backends.base import FileInfo, FileWriter, PathNotFound, StorageDriver

OPERATION_SECONDS = Histogram(
    "berth_storage_operation_seconds",
    "Latency of storage driver operations.",
    ["driver", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
OPERATION_ERRORS = Counter(
    "berth_storage_errors",
    "Failed storage driver operations (not-found answers excluded).",
    ["driver", "operation", "error"],
)


class _Timer:
    """Observe one operation: latency always, the error class when it fails (PathNotFound excluded)."""

    __slots__ = ("_driver", "_operation", "_start")

    def __init__(self, driver: str, operation: str) -> None:
        self._driver = driver
        self._operation = operation
        self._start = time.perf_counter()

    def __enter__(self) -> _Timer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        OPERATION_SECONDS.labels(self._driver, self._operation).observe(time.perf_counter() - self._start)
        if exc_type is not None and issubclass(exc_type, Exception) and not issubclass(exc_type, PathNotFound):
            OPERATION_ERRORS.labels(self._driver, self._operation, exc_type.__name__).inc()


class _InstrumentedWriter(FileWriter):
    def __init__(self, inner: FileWriter, driver: str) -> None:
        self._inner = inner
        self._driver = driver

    @property
    def size(self) -> int:
        return self._inner.size

    async def write(self, data: bytes) -> None:
        with _Timer(self._driver, "write"):
            await self._inner.write(data)

    async def commit(self) -> None:
        with _Timer(self._driver, "commit"):
            await self._inner.commit()

    async def cancel(self) -> None:
        with _Timer(self._driver, "cancel"):
            await self._inner.cancel()

    async def close(self) -> None:
        with _Timer(self._driver, "close"):
            await self._inner.close()


class InstrumentedDriver(StorageDriver):
    """``inner`` with every operation timed and every failure counted.

    The inner driver validates paths (the public methods are forwarded as a whole),
    and is closed by :meth:`close`.
    """

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.min_chunk_size = inner.min_chunk_size
        self.walk_is_cheap = inner.walk_is_cheap

    def _timer(self, operation: str) -> _Timer:
        return _Timer(self.name, operation)

    async def get_content(self, path: str) -> bytes:
        with self._timer("get_content"):
            return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes) -> None:
        with self._timer("put_content"):
            await self.inner.put_content(path, data)

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        timer = self._timer("reader")
        return self._read(self.inner.reader(path, offset, length), timer)

    async def _read(self, chunks: AsyncIterator[bytes], timer: _Timer) -> AsyncIterator[bytes]:
        timing = True
        try:
            async for chunk in chunks:
                if timing:
                    timing = False
                    timer.__exit__(None, None, None)
                yield chunk
        except Exception as exc:
            if timing:
                timing = False
                timer.__exit__(type(exc), exc, None)
            else:
                OPERATION_ERRORS.labels(self.name, "reader", type(exc).__name__).inc()
            raise
        if timing:
            timer.__exit__(None, None, None)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        with self._timer("writer"):
            inner = await self.inner.writer(path, append)
        return _InstrumentedWriter(inner, self.name)

    async def stat(self, path: str) -> FileInfo:
        with self._timer("stat"):
            return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        with self._timer("list"):
            return await self.inner.list(path)

    async def move(self, source: str, dest: str) -> None:
        with self._timer("move"):
            await self.inner.move(source, dest)

    async def delete(self, path: str) -> None:
        with self._timer("delete"):
            await self.inner.delete(path)

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        return self._walk_timed(path)

    async def _walk_timed(self, path: str) -> AsyncIterator[FileInfo]:
        with self._timer("walk"):
            async for info in self.inner.walk(path):
                yield info

    async def redirect_url(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        with self._timer("redirect_url"):
            return await self.inner.redirect_url(path, method, expires_in)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    async def find_dirs(self, path: str, markers: tuple[str, ...], skip_prefix: str = "_") -> list[str]:
        with self._timer("find_dirs"):
            return await self.inner.find_dirs(path, markers, skip_prefix)

    async def health(self) -> None:
        with self._timer("health"):
            await self.inner.health()

    async def close(self) -> None:
        await self.inner.close()

    # The primitives are never reached (every public method is forwarded whole); they exist
    # because the base class declares them abstract.
    async def _get_content(self, path: str) -> bytes:
        return await self.inner.get_content(path)

    async def _put_content(self, path: str, data: bytes) -> None:
        await self.inner.put_content(path, data)

    def _reader(self, path: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        return self.inner.reader(path, offset, length)

    async def _writer(self, path: str, append: bool) -> FileWriter:
        return await self.inner.writer(path, append)

    async def _stat(self, path: str) -> FileInfo:
        return await self.inner.stat(path)

    async def _list(self, path: str) -> builtins.list[str]:
        return await self.inner.list(path)

    async def _move(self, source: str, dest: str) -> None:
        await self.inner.move(source, dest)

    async def _delete(self, path: str) -> None:
        await self.inner.delete(path)

    def _walk(self, path: str) -> AsyncIterator[FileInfo]:
        return self.inner.walk(path)
