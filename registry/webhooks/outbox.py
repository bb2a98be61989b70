"""The durable outbox: an append-only event log plus per-endpoint cursors (blocking IO; call in a thread).

Layout of one outbox directory (owned by exactly one process, enforced by an
exclusive ``flock`` on ``LOCK``)::

    <outbox>/
      LOCK
      log/
        00000000000000000001.log      records seq 1.. ; the file name is its first seq
        00000000000000004711.log      the active segment (the newest one; never deleted)
      endpoints/
        <quoted endpoint name>/
          state.json                  cursor + counters (temp, fsync, rename)
          deadletter.jsonl            dead-lettered records with their last error (append, fsync)
          deadletter.lock             flock'd around dead-letter appends and rewrites
          replay/
            <ns>-<pid>-<rand>.jsonl   records queued by `berth webhooks replay`

Every log and replay line is ``<crc32 hex> <json>\\n`` where the JSON is
``{"seq": n, "queued": unix-time, "event": {...Distribution event...}}``.

Guarantees:

* :meth:`Outbox.append` returns only after the records are on disk (the
  active segment is opened ``O_DSYNC``: each write returns once its data and
  the file size are durable, like write + ``fdatasync`` in one system call):
  an event acknowledged to a caller survives SIGKILL and power loss.
  Sequence numbers increase by one per record, across segments.
* A torn tail (a crash mid-write) is truncated when the owner opens the
  outbox; nothing before it is lost. A damaged line elsewhere is skipped and
  logged, never fatal.
* A cursor is only written after the delivery it records, so a crash causes
  redelivery (at least once), never a skip. Segments are deleted only when
  every endpoint's cursor is past them and they are older than the retention.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import time
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

log = logging.getLogger("berth.webhooks")

SEGMENT_BYTES = 8 << 20
READ_BATCH = 256
_SEG_SUFFIX = ".log"
# Synchronous data writes: one system call (and one GIL release) per group commit instead of two.
_SEGMENT_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_DSYNC


class OutboxError(RuntimeError):
    """The outbox cannot be used (locked by another process, unwritable, ...)."""


@dataclass(frozen=True)
class Record:
    """One stored event: its sequence number, when it was queued, and the Distribution event object."""

    seq: int
    queued: float
    event: dict[str, Any]

    @property
    def id(self) -> str:
        """The event id (stable across retries and restarts)."""
        return str(self.event.get("id", ""))

    def encode(self) -> bytes:
        """The framed line: ``<crc32> <json>\\n``."""
        payload = json.dumps({"seq": self.seq, "queued": self.queued, "event": self.event},
                             separators=(",", ":")).encode()
        return b"%08x %s\n" % (zlib.crc32(payload), payload)

    @classmethod
    def decode(cls, line: bytes) -> "Record | None":
        """Parse a framed line; None when it is damaged."""
        crc, sep, payload = line.rstrip(b"\n").partition(b" ")
        if not sep or len(crc) != 8:
            return None
        try:
            if int(crc, 16) != zlib.crc32(payload):
                return None
            obj = json.loads(payload)
            return cls(int(obj["seq"]), float(obj["queued"]), dict(obj["event"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class EndpointState:
    """What is persisted per endpoint: the delivery cursor and the counters ``status`` shows."""

    cursor: int | None = None  # last log seq handled (delivered, dead-lettered or filtered out)
    delivered: int = 0
    failed: int = 0  # failed attempts
    deadlettered: int = 0
    last_error: str = ""
    last_error_at: float | None = None
    last_success_at: float | None = None
    replay_file: str = ""  # the replay file being worked through
    replay_done: int = 0  # records of replay_file already handled

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "EndpointState":
        """Load, ignoring unknown keys (forward compatible)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync_dir: bool = False) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename (and fsync the directory if asked)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{_SEG_SUFFIX}"


_SEQ_AT = len(b"00000000 {\"seq\":")


def _peek_seq(line: bytes) -> int:
    """The seq of a framed line without decoding it (-1 if it cannot be read)."""
    end = line.find(b",", _SEQ_AT, _SEQ_AT + 24)
    try:
        return int(line[_SEQ_AT:end])
    except ValueError:
        return -1


def scan(path: Path, offset: int = 0, after: int = 0) -> Iterator[tuple[Record | None, int]]:
    """(record, offset after it) for each complete line of a framed file from byte ``offset``.

    Lines with ``seq <= after`` yield ``None`` without being decoded (cheap
    seeking by sequence number). A damaged line yields ``None`` too (and is
    logged); a final line without its newline (being written, or torn) ends the scan.
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        fh.seek(offset)
        for line in fh:
            if not line.endswith(b"\n"):
                return
            offset += len(line)
            if after and 0 <= _peek_seq(line) <= after:
                yield None, offset
                continue
            record = Record.decode(line)
            if record is None:
                log.error("outbox: skipping a damaged record in %s", path)
            yield record, offset


def read_records(path: Path, offset: int = 0, limit: int | None = None) -> tuple[list[Record], int]:
    """Complete records of a framed file from ``offset`` (at most ``limit``); and the offset after them."""
    out: list[Record] = []
    for record, end in scan(path, offset):
        offset = end
        if record is not None:
            out.append(record)
            if limit is not None and len(out) >= limit:
                break
    return out, offset


class LogReader:
    """Reads the log forward from a cursor, across segments, keeping its place between calls."""

    def __init__(self, outbox: "Outbox", after_seq: int) -> None:
        self._outbox = outbox
        self._after = after_seq
        self._segment: Path | None = None
        self._offset = 0

    def read(self, limit: int = READ_BATCH, upto: int | None = None) -> list[Record]:
        """Up to ``limit`` records with ``after < seq <= upto`` (``upto`` None: to the end)."""
        out: list[Record] = []
        while len(out) < limit:
            if self._segment is None:
                self._segment = self._outbox.segment_for(self._after + 1)
                self._offset = 0
                if self._segment is None:
                    return out
            progressed = False
            for record, end in scan(self._segment, self._offset, self._after):
                if record is not None and record.seq > self._after:
                    if upto is not None and record.seq > upto:
                        return out  # not committed yet: read it again next time
                    out.append(record)
                    self._after = record.seq
                self._offset = end
                progressed = True
                if len(out) >= limit:
                    return out
            if progressed:
                continue
            nxt = self._outbox.segment_after(self._segment)
            if nxt is None:
                return out
            self._segment, self._offset = nxt, 0
        return out


class Outbox:
    """One outbox directory. The owner (``owner=True``) appends to the log; others only read it
    and add replay files and dead-letter changes, which are safe across processes."""

    def __init__(self, directory: str | os.PathLike[str], *, owner: bool = True,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.owner = owner
        self.segment_bytes = segment_bytes
        self._log_dir = self.directory / "log"
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._active: Path | None = None
        self._size = 0
        self._last_seq = 0
        if owner:
            self._open_owner()

    # -- the log ---------------------------------------------------------------------------

    def _open_owner(self) -> None:
        try:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            (self.directory / "endpoints").mkdir(exist_ok=True)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutboxError(f"cannot open outbox {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutboxError(
                    f"outbox {self.directory} is in use by another process; give every replica "
                    "its own notifications.outbox on its local disk") from None
            raise
        segments = self.segments()
        if not segments:
            self._create_segment(1)
            return
        first, path = segments[-1]
        records, valid = read_records(path)
        size = path.stat().st_size
        if size > valid:
            log.warning("outbox: truncating %d bytes of a torn record at the end of %s", size - valid, path)
            with open(path, "r+b") as fh:
                fh.truncate(valid)
                os.fsync(fh.fileno())
        self._last_seq = records[-1].seq if records else first - 1
        self._active = path
        self._size = valid
        self._fd = os.open(path, _SEGMENT_FLAGS)

    def _create_segment(self, first_seq: int) -> None:
        path = self._log_dir / _segment_name(first_seq)
        fd = os.open(path, _SEGMENT_FLAGS | os.O_CREAT, 0o644)
        _fsync_dir(self._log_dir)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._active, self._size = fd, path, 0
        self._last_seq = first_seq - 1

    @property
    def last_seq(self) -> int:
        """The newest durable sequence number (0: nothing yet). Owner only."""
        return self._last_seq

    def append(self, events: list[dict[str, Any]], queued: float | None = None) -> list[Record]:
        """Append events as records, durably; return them with their sequence numbers."""
        if self._fd is None:
            raise OutboxError("outbox is closed")
        when = time.time() if queued is None else queued
        records = [Record(self._last_seq + i + 1, when, ev) for i, ev in enumerate(events)]
        data = b"".join(r.encode() for r in records)
        if self._size and self._size + len(data) > self.segment_bytes:
            self._create_segment(self._last_seq + 1)
        try:
            _write_all(self._fd, data)  # O_DSYNC: durable when the write returns
        except OSError:
            # Leave no partial record behind for the next append to follow.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                log.exception("outbox: cannot truncate %s after a failed write", self._active)
            raise
        self._size += len(data)
        if records:
            self._last_seq = records[-1].seq
        return records

    def segments(self) -> list[tuple[int, Path]]:
        """(first seq, path) of every log segment, oldest first."""
        out: list[tuple[int, Path]] = []
        try:
            entries = list(os.scandir(self._log_dir))
        except FileNotFoundError:
            return out
        for entry in entries:
            stem = entry.name[: -len(_SEG_SUFFIX)]
            if entry.name.endswith(_SEG_SUFFIX) and stem.isdigit():
                out.append((int(stem), Path(entry.path)))
        out.sort()
        return out

    def segment_for(self, seq: int) -> Path | None:
        """The segment that holds ``seq`` (or the first one after it, if ``seq`` was compacted away)."""
        candidate: Path | None = None
        for first, path in self.segments():
            if first <= seq or candidate is None:
                candidate = path
            if first > seq:
                break
        return candidate

    def segment_after(self, path: Path) -> Path | None:
        """The segment following ``path``, if any."""
        for _, other in self.segments():
            if other.name > path.name:
                return other
        return None

    def reader(self, after_seq: int) -> LogReader:
        """A reader positioned after ``after_seq``."""
        return LogReader(self, after_seq)

    def records(self, after_seq: int = 0) -> Iterator[Record]:
        """Every record with ``seq > after_seq``, oldest first."""
        reader = self.reader(after_seq)
        while batch := reader.read():
            yield from batch

    def compact(self, min_cursor: int, retention: float, now: float | None = None) -> int:
        """Delete segments wholly at or below ``min_cursor`` and older than ``retention``; how many."""
        now = time.time() if now is None else now
        segments = self.segments()
        removed = 0
        for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first - 1 > min_cursor:
                break
            try:
                if now - path.stat().st_mtime < retention:
                    break
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
        if removed:
            _fsync_dir(self._log_dir)
        return removed

    def close(self) -> None:
        """Close the log and release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- per endpoint ----------------------------------------------------------------------

    def endpoint_path(self, name: str) -> Path:
        """The directory of endpoint ``name`` (may not exist yet)."""
        return self.directory / "endpoints" / quote(name, safe="")

    def endpoint_dir(self, name: str) -> Path:
        """The directory of endpoint ``name``, created if needed (for writing)."""
        path = self.endpoint_path(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load_state(self, name: str) -> EndpointState:
        """The persisted state of endpoint ``name`` (a fresh one if there is none)."""
        path = self.endpoint_path(name) / "state.json"
        try:
            return EndpointState.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return EndpointState()
        except (ValueError, TypeError):
            log.error("outbox: %s is damaged; starting that endpoint from its default state", path)
            return EndpointState()

    def save_state(self, name: str, state: EndpointState) -> None:
        """Persist ``state`` atomically and durably."""
        write_atomic(self.endpoint_dir(name) / "state.json", json.dumps(asdict(state)).encode())

    def _dead_letter_lock(self, name: str) -> int:
        fd = os.open(self.endpoint_dir(name) / "deadletter.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def dead_letter(self, name: str, record: Record, error: str, attempts: int) -> None:
        """Append ``record`` to the endpoint's dead-letter file with its last error (durably)."""
        entry = {"seq": record.seq, "queued": record.queued, "event": record.event, "error": error,
                 "attempts": attempts, "at": time.time()}
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        lock = self._dead_letter_lock(name)
        try:
            fd = os.open(self.endpoint_dir(name) / "deadletter.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                _write_all(fd, line)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        finally:
            os.close(lock)

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """Every dead-lettered entry of endpoint ``name`` (``event``, ``error``, ``attempts``, ``at``)."""
        path = self.endpoint_path(name) / "deadletter.jsonl"
        out: list[dict[str, Any]] = []
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return out
        for line in data.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                log.error("outbox: skipping a damaged dead-letter line in %s", path)
        return out

    def replay_dead_letters(self, name: str, select: Callable[[dict[str, Any]], bool] = lambda e: True) -> int:
        """Move the selected dead-lettered events of ``name`` into a replay file; how many."""
        lock = self._dead_letter_lock(name)
        try:
            entries = self.dead_letters(name)
            chosen = [e for e in entries if select(e)]
            if not chosen:
                return 0
            self.queue_replay(name, [e["event"] for e in chosen], seqs=[int(e.get("seq", 0)) for e in chosen])
            keep = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n"
                            for e in entries if not select(e))
            write_atomic(self.endpoint_dir(name) / "deadletter.jsonl", keep)
            return len(chosen)
        finally:
            os.close(lock)

    def queue_replay(self, name: str, events: list[dict[str, Any]], seqs: list[int] | None = None) -> Path | None:
        """Durably queue ``events`` for re-delivery to endpoint ``name``; the replay file (None if empty)."""
        if not events:
            return None
        now = time.time()
        seqs = seqs or [0] * len(events)
        data = b"".join(Record(s, now, ev).encode() for s, ev in zip(seqs, events, strict=True))
        replay_dir = self.endpoint_dir(name) / "replay"
        replay_dir.mkdir(exist_ok=True)
        path = replay_dir / f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        write_atomic(path, data, sync_dir=True)
        return path

    def replay_files(self, name: str) -> list[Path]:
        """Queued replay files of endpoint ``name``, oldest first."""
        replay_dir = self.endpoint_path(name) / "replay"
        try:
            names = [e.name for e in os.scandir(replay_dir) if e.name.endswith(".jsonl") and not e.name.startswith(".")]
        except FileNotFoundError:
            return []
        return [replay_dir / n for n in sorted(names)]

    def finish_replay(self, path: Path) -> None:
        """Remove a replay file whose events were all handled."""
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)
