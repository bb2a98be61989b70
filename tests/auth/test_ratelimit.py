"""The failed-login limiter."""

from __future__ import annotations

from auth.ratelimit import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_the_limit_and_recovers() -> None:
    clock = Clock()
    lim = LoginLimiter(3, 60, clock=clock)
    for _ in range(2):
        lim.failed("a")
    assert lim.retry_after("a") == 0
    lim.failed("a")
    assert 59 < lim.retry_after("a") <= 60
    assert lim.retry_after("b") == 0
    clock.now += 30
    assert 29 < lim.retry_after("a") <= 30
    clock.now += 31
    assert lim.retry_after("a") == 0


def test_sliding_window() -> None:
    clock = Clock()
    lim = LoginLimiter(2, 10, clock=clock)
    lim.failed("a")
    clock.now += 6
    lim.failed("a")
    assert lim.retry_after("a") > 0
    clock.now += 5  # the first failure left the window
    assert lim.retry_after("a") == 0


def test_disabled() -> None:
    lim = LoginLimiter(0, 10)
    for _ in range(100):
        lim.failed("a")
    assert lim.retry_after("a") == 0


def test_memory_is_bounded() -> None:
    lim = LoginLimiter(1, 60, max_clients=100)
    for i in range(1000):
        lim.failed(f"c{i}")
    assert len(lim._seen) <= 100
    assert lim.retry_after("c999") > 0
