"""Failed-login throttling: after too many failures in a window, a client is answered 429.

Counts failures per client key (the peer address) in a sliding window. Success
does not reset the count (a client holding one valid account must not be able
to guess another's password faster). Memory is bounded: past ``max_clients``
keys, the oldest are forgotten.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

MAX_CLIENTS = 10_000


class LoginLimiter:
    """Sliding-window counter of failed logins per client."""

    def __init__(self, failures: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.failures = failures
        self.window = window
        self._clock = clock
        self._max_clients = max_clients
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._seen.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[client]
            return None
        return times

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 when it may try now)."""
        if self.failures <= 0:
            return 0.0
        now = self._clock()
        times = self._recent(client, now)
        if times is None or len(times) < self.failures:
            return 0.0
        return max(times[-self.failures] + self.window - now, 0.001)

    def failed(self, client: str) -> None:
        """Record one failed login by ``client``."""
        if self.failures <= 0:
            return
        now = self._clock()
        times = self._recent(client, now)
        if times is None:
            while len(self._seen) >= self._max_clients:
                self._seen.pop(next(iter(self._seen)))
            times = self._seen[client] = deque(maxlen=self.failures)
        times.append(now)
