"""Benchmark: what it costs to make an event durable, and why the outbox is a segment log.

Run: ``python -m tests.webhooks.bench_publish [--events 2000] [--dir /path/on/the/target/disk]``.

1. The two durable designs, raw: append a record to a log file + ``fdatasync``, versus one file
   per event written temp + ``fsync`` + rename + directory ``fsync``.
2. ``WebhookSink.publish`` as handlers call it: one at a time (latency, CPU) and 50 at once
   (group commit), on uvloop like ``berth serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import uvloop

from registry.webhooks import WebhookSink
from registry.webhooks.config import NotificationsConfig
from registry.webhooks.outbox import write_atomic
from tests.webhooks.conftest import SOURCE, make_event, notifications


def cpu() -> float:
    """Process CPU seconds (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_designs(directory: Path, n: int) -> None:
    record = b"x" * 900 + b"\n"
    fd = os.open(directory / "segment.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    started, c = time.perf_counter(), cpu()
    for _ in range(n):
        os.write(fd, record)
        os.fdatasync(fd)
    os.close(fd)
    print(f"  segment log, append + fdatasync:          {(time.perf_counter() - started) / n * 1e3:.3f} ms/event, "
          f"CPU {(cpu() - c) / n * 1e3:.3f} ms")
    files = directory / "files"
    files.mkdir()
    started, c = time.perf_counter(), cpu()
    for i in range(n):
        write_atomic(files / f"{i}.json", record, sync_dir=True)
    print(f"  file per event, temp+fsync+rename+dirsync: {(time.perf_counter() - started) / n * 1e3:.3f} ms/event, "
          f"CPU {(cpu() - c) / n * 1e3:.3f} ms")


async def sink_publish(directory: Path, n: int) -> None:
    config: NotificationsConfig = notifications([{"name": "x", "url": "http://127.0.0.1:9/", "backoff": "60s",
                                                  "maxbackoff": "60s"}])
    sink = WebhookSink(config, directory / "outbox", SOURCE)
    await sink.open()
    events = [make_event() for _ in range(n)]
    started, c = time.perf_counter(), cpu()
    for event in events:
        await sink.publish([event])
    print(f"  publish, one at a time:  {(time.perf_counter() - started) / n * 1e3:.3f} ms/event, "
          f"CPU {(cpu() - c) / n * 1e3:.3f} ms")
    started, c = time.perf_counter(), cpu()
    for i in range(0, n, 50):
        await asyncio.gather(*(sink.publish([e]) for e in events[i:i + 50]))
    print(f"  publish, 50 at a time:   {(time.perf_counter() - started) / n * 1e3:.3f} ms/event, "
          f"CPU {(cpu() - c) / n * 1e3:.3f} ms")
    await sink.close(timeout=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="berth-bench-") as tmp:
        print("raw durable writes of a 900-byte record:")
        raw_designs(Path(tmp), args.events)
        print("WebhookSink.publish (uvloop):")
        uvloop.run(sink_publish(Path(tmp), args.events))


if __name__ == "__main__":
    main()
