"""A file whose parsed contents are reloaded when it changes (htpasswd, policy).

:class:`WatchedFile` stats the file at most once per ``interval`` seconds (in a
thread, never on the event loop) and re-parses it when its identity, size or
modification time changed. A file that disappears or no longer parses keeps the
last good contents (and logs why); only the first load raises.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable, Generic, TypeVar

log = logging.getLogger("berth.auth")

T = TypeVar("T")
DEFAULT_CHECK_INTERVAL = 1.0

_Stamp = tuple[int, int, int, int]


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class WatchedFile(Generic[T]):
    """The parsed contents of ``path``, refreshed when the file changes."""

    def __init__(self, path: str, parse: Callable[[bytes], T], *, what: str,
                 interval: float = DEFAULT_CHECK_INTERVAL) -> None:
        self.path = path
        self.what = what
        self.interval = interval
        self._parse = parse
        self._value: T | None = None
        self._stamp: _Stamp | None = None
        self._checked = float("-inf")
        self.on_reload: Callable[[str], None] | None = None  # called (in a thread) after each reload

    def _read(self) -> tuple[_Stamp, T]:
        with open(self.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
        return _stamp(st), self._parse(data)

    def _refresh(self) -> None:
        """Blocking: re-read the file if it changed (runs in a thread)."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            log.error("cannot stat %s %s: %s; keeping the previous contents", self.what, self.path,
                      exc.strerror)
            return
        if _stamp(st) == self._stamp:
            return
        try:
            stamp, value = self._read()
        except (OSError, ValueError) as exc:
            log.error("cannot reload %s %s: %s; keeping the previous contents", self.what, self.path, exc)
            return
        self._stamp, self._value = stamp, value
        log.info("reloaded %s %s", self.what, self.path)
        if self.on_reload is not None:
            self.on_reload(self.path)

    async def load(self) -> T:
        """The first load; raises ``OSError`` or ``ValueError`` when the file is unusable."""
        stamp, value = await asyncio.to_thread(self._read)
        self._stamp, self._value, self._checked = stamp, value, time.monotonic()
        return value

    async def get(self) -> T:
        """The current contents, re-read first if the file changed since the last check."""
        if self._value is None:
            return await self.load()
        now = time.monotonic()
        if now - self._checked >= self.interval:
            self._checked = now  # concurrent callers use the current value meanwhile
            await asyncio.to_thread(self._refresh)
        return self._value

    @property
    def current(self) -> T | None:
        """The last loaded contents without checking the file (None before the first load)."""
        return self._value
