"""Progress reporting for transfers: rich bars on a terminal, plain lines otherwise, or nothing.

Owns what the user sees while blobs move. Everything writes to stderr, so
``berth save -o -`` can stream the archive to stdout.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Protocol

from registry.client.store import humanize_size


class Task(Protocol):
    """One transfer (a blob)."""

    def advance(self, nbytes: int) -> None:
        """Count transferred bytes."""

    def reset(self, completed: int) -> None:
        """Set the transferred byte count (after a retry or resume)."""

    def finish(self, status: str) -> None:
        """Mark the transfer done with a short status (``done``, ``exists``, ``mounted``)."""


class Reporter(Protocol):
    """Makes tasks and prints status lines."""

    def task(self, label: str, total: int | None, verb: str) -> Task:
        """Start reporting a transfer."""

    def line(self, text: str) -> None:
        """Print one status line."""

    def note(self, label: str, status: str) -> None:
        """Report a transfer that did not need to happen (``already exists``, ``mounted from …``)."""

    def close(self) -> None:
        """Stop drawing."""


class _QuietTask:
    def advance(self, nbytes: int) -> None:
        pass

    def reset(self, completed: int) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class QuietReporter:
    """Reports nothing (``--quiet`` and library use)."""

    def task(self, label: str, total: int | None, verb: str) -> Task:
        """A task that reports nothing."""
        return _QuietTask()

    def line(self, text: str) -> None:
        """Drop the line."""

    def note(self, label: str, status: str) -> None:
        """Drop the note."""

    def close(self) -> None:
        """Nothing to stop."""


class _PlainTask:
    def __init__(self, reporter: "PlainReporter", label: str, total: int | None) -> None:
        self._reporter = reporter
        self._label = label
        self._total = total

    def advance(self, nbytes: int) -> None:
        pass

    def reset(self, completed: int) -> None:
        if completed:
            self._reporter.line(f"{self._label}: resuming at {humanize_size(completed)}")

    def finish(self, status: str) -> None:
        size = f" ({humanize_size(self._total)})" if self._total is not None and status in ("done", "downloaded", "pushed") else ""
        self._reporter.line(f"{self._label}: {status}{size}")


class PlainReporter:
    """One line per event, for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def task(self, label: str, total: int | None, verb: str) -> Task:
        """Announce a transfer."""
        self.line(f"{label}: {verb}" + (f" {humanize_size(total)}" if total is not None else ""))
        return _PlainTask(self, label, total)

    def line(self, text: str) -> None:
        """Print one line."""
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def note(self, label: str, status: str) -> None:
        """``label: status``."""
        self.line(f"{label}: {status}")

    def close(self) -> None:
        """Nothing to stop."""


class _RichTask:
    def __init__(self, reporter: "RichReporter", task_id: int, label: str) -> None:
        self._reporter = reporter
        self._id = task_id
        self._label = label

    def advance(self, nbytes: int) -> None:
        self._reporter.progress.update(self._id, advance=nbytes)  # type: ignore[arg-type]

    def reset(self, completed: int) -> None:
        self._reporter.progress.update(self._id, completed=completed)  # type: ignore[arg-type]

    def finish(self, status: str) -> None:
        task = self._reporter.progress.tasks[[t.id for t in self._reporter.progress.tasks].index(self._id)]  # type: ignore[arg-type]
        total = task.total
        self._reporter.progress.update(self._id, completed=total or task.completed,  # type: ignore[arg-type]
                                       description=f"{self._label} {status}")


class RichReporter:
    """Live progress bars (rich) on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True), transient=False)
        self.progress.start()

    def task(self, label: str, total: int | None, verb: str) -> Task:
        """Add a bar."""
        task_id = self.progress.add_task(f"{label} {verb}", total=total)
        return _RichTask(self, int(task_id), label)

    def line(self, text: str) -> None:
        """Print above the bars."""
        self.progress.console.print(text, highlight=False, markup=False)

    def note(self, label: str, status: str) -> None:
        """A line above the bars."""
        self.line(f"{label}: {status}")

    def close(self) -> None:
        """Stop the live display."""
        self.progress.stop()


def make_reporter(quiet: bool = False, plain: bool | None = None) -> Reporter:
    """rich bars when stderr is a terminal, plain lines otherwise; nothing when ``quiet``."""
    if quiet:
        return QuietReporter()
    if plain is None:
        plain = not sys.stderr.isatty()
    return PlainReporter() if plain else RichReporter()
