"""Garbage collection: mark and sweep over any storage driver, while the registry serves.

**What is garbage.** A blob is *referenced* when a manifest revision of some
repository names it (config, layer, index child) or is it. Blobs that are only
linked in a repository's ``_layers`` are garbage: their data and their layer
links go (as in Distribution). With ``delete_untagged``, a manifest revision
that no tag reaches (directly or through an index), that is no referrer of a
kept manifest, and whose revision link is older than the grace period is
garbage too: its revision link, its tag-history entries and its referrer link
go, and what only it referenced follows in the same run.

**Racing with pushes** (the lost-blob race Distribution and Quay users report,
where a blob uploaded or re-used during the mark phase is swept before its
manifest lands). Three rules:

1. *Grace*: nothing whose blob data, layer link or revision link is younger than
   ``grace_period`` (plus :data:`CLOCK_SLACK` for coarse storage clocks) is
   touched. Every push in progress has young links (uploads link on completion;
   uploads in progress live in ``_uploads``, which GC never reads).
2. *Quarantine*: a doomed blob is first unlinked and its data *moved* to
   ``_berth/gc/trash``; GC then waits ``quarantine`` seconds and scans again.
   Any revision or tag that appeared or moved since the mark, and any layer link
   that (re)appeared, rescues what it references: the data is moved back and the
   layer links re-created. Only then is the trash emptied. A manifest ``PUT``
   that verified its blobs before the move therefore either commits within the
   quarantine (and is seen) or finds the blob gone and fails cleanly with
   ``MANIFEST_BLOB_UNKNOWN``; a re-upload of a trashed blob stores fresh data
   at the blob path, which the final delete (of trash paths only) never touches.
   The guarantee holds when every registry operation finishes its
   check-then-commit step within ``quarantine`` seconds.
3. *Journal and lock*: a run writes ``_berth/gc/journal.json`` (the links and
   revisions it removes) before it removes anything; a run that finds a journal
   rolls the unfinished run back first (trash moved back, links re-created).
   ``_berth/gc/lock`` keeps two collectors from running at once (best effort on
   S3, which has no atomic create).

Untagged manifests removed by this run that a tag reaches again during the
quarantine are restored the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from registry import layout
from registry.digest import Digest, InvalidDigest
from registry.maintenance.scan import (
    BlobScan,
    ManifestReader,
    RepositoryScan,
    bounded,
    linked_digests,
    scan_blobs,
    scan_repositories,
    scan_repository,
)
from storage_backends.base import PathNotFound, StorageDriver

if TYPE_CHECKING:
    from registry.config import GCConfig

log = logging.getLogger("berth.gc")

DEFAULT_GRACE_PERIOD = 3600.0
DEFAULT_QUARANTINE = 30.0
CLOCK_SLACK = 2.0  # S3 reports whole seconds (and its clock is not ours): a new object may look 1s+ old
LOCK_TTL = 300.0

GC_DIR = layout.GC_DIR
TRASH_DIR = f"{GC_DIR}/trash"
JOURNAL_PATH = f"{GC_DIR}/journal.json"
LOCK_PATH = f"{GC_DIR}/lock"

RUNS = Counter("berth_gc_runs", "Garbage collection runs by outcome (ok, dry_run, busy, failed).", ["outcome"])
BYTES_FREED = Counter("berth_gc_bytes_freed", "Bytes of blob data deleted by garbage collection.")
BLOBS_DELETED = Counter("berth_gc_blobs_deleted", "Blobs deleted by garbage collection.")
MANIFESTS_DELETED = Counter("berth_gc_manifests_deleted", "Untagged manifest revisions deleted by garbage collection.")
RESCUED = Counter("berth_gc_rescued_blobs", "Blobs put back because a push referenced them during a run.")
LAST_SUCCESS = Gauge("berth_gc_last_success_timestamp_seconds", "Unix time the last garbage collection finished.")
LAST_DURATION = Gauge("berth_gc_last_duration_seconds", "Duration of the last garbage collection run.")


class GCError(Exception):
    """Garbage collection refused to run or stopped before deleting anything unsafe."""


class GCBusy(GCError):
    """Another collector holds the lock."""


def trash_path(digest: Digest) -> str:
    """Where a quarantined blob's data waits for the end of the run."""
    return f"{TRASH_DIR}/{digest.algorithm}/{digest.hex}"


@dataclass(frozen=True)
class GCOptions:
    """How a run behaves; :meth:`from_config` reads the ``gc`` section."""

    dry_run: bool = False
    delete_untagged: bool = False
    grace_period: float = DEFAULT_GRACE_PERIOD
    quarantine: float = DEFAULT_QUARANTINE
    clock_slack: float | None = None  # None: CLOCK_SLACK on S3, 0 where modification times are exact
    lock_ttl: float = LOCK_TTL

    @classmethod
    def from_config(cls, gc: GCConfig, **overrides: Any) -> GCOptions:
        """Options from the config's ``gc`` section, with explicit overrides (None = keep)."""
        values: dict[str, Any] = {
            "delete_untagged": gc.deleteuntagged,
            "grace_period": float(gc.graceperiod),
            "quarantine": float(getattr(gc, "quarantine", DEFAULT_QUARANTINE)),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class GCReport:
    """What a run deleted (or, dry, would delete)."""

    dry_run: bool
    started_at: float
    finished_at: float = 0.0
    repositories: int = 0
    blobs_scanned: int = 0
    bytes_scanned: int = 0
    blobs_marked: int = 0
    kept_young: int = 0  # unreferenced, but within the grace period
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    layer_links: list[tuple[str, str]] = field(default_factory=list)
    rescued: list[str] = field(default_factory=list)
    rolled_back: bool = False

    @property
    def bytes_freed(self) -> int:
        """Bytes of blob data deleted (or that a dry run would delete)."""
        return sum(self.blobs.values())

    @property
    def duration(self) -> float:
        """Seconds the run took."""
        return max(0.0, self.finished_at - self.started_at)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary with every deleted object listed."""
        return {
            "dryRun": self.dry_run,
            "startedAt": self.started_at,
            "durationSeconds": round(self.duration, 3),
            "repositories": self.repositories,
            "blobsScanned": self.blobs_scanned,
            "bytesScanned": self.bytes_scanned,
            "blobsMarked": self.blobs_marked,
            "keptYoung": self.kept_young,
            "blobsDeleted": [{"digest": d, "size": s} for d, s in sorted(self.blobs.items())],
            "bytesFreed": self.bytes_freed,
            "manifestsDeleted": [{"repository": r, "digest": d} for r, d in sorted(self.manifests)],
            "layerLinksDeleted": len(self.layer_links),
            "rescued": sorted(self.rescued),
            "rolledBack": self.rolled_back,
        }


# ------------------------------------------------------------------------------------ lock


class GCLock:
    """A lease in storage (``_berth/gc/lock``), refreshed while the run lasts."""

    def __init__(self, driver: StorageDriver, ttl: float) -> None:
        self.driver = driver
        self.ttl = ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None

    async def _write(self) -> None:
        body = {"owner": self.owner, "expires": time.time() + self.ttl}
        await self.driver.put_content(LOCK_PATH, json.dumps(body).encode())

    async def _holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(await self.driver.get_content(LOCK_PATH))
        except PathNotFound:
            return None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        """An expired lease, or one whose process (on this host) is gone."""
        if float(holder.get("expires", 0)) <= time.time():
            return True
        host, _, rest = str(holder.get("owner", "")).partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    async def acquire(self) -> None:
        """Take the lease or raise :class:`GCBusy` naming the holder."""
        holder = await self._holder()
        if holder and holder.get("owner") != self.owner and not self._stale(holder):
            raise GCBusy(f"another garbage collection is running ({holder.get('owner')})")
        await self._write()
        await asyncio.sleep(0.05)  # let a simultaneous writer land, then see who won
        holder = await self._holder()
        if not holder or holder.get("owner") != self.owner:
            raise GCBusy(f"another garbage collection is running ({(holder or {}).get('owner')})")
        self._task = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._write()
            except Exception:  # the run itself will hit the same storage error
                log.warning("could not refresh the garbage collection lock", exc_info=True)

    async def release(self) -> None:
        """End the lease."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        holder = await self._holder()
        if holder and holder.get("owner") == self.owner:
            try:
                await self.driver.delete(LOCK_PATH)
            except PathNotFound:
                pass


# ------------------------------------------------------------------------------------- run


@dataclass
class _Journal:
    """What a run removed, so an interrupted run can be rolled back."""

    links: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    revisions: list[tuple[str, str]] = field(default_factory=list)
    paths: list[tuple[str, str]] = field(default_factory=list)  # (link path, digest): tag history, referrers

    def dump(self) -> bytes:
        return json.dumps({"links": self.links, "revisions": self.revisions, "paths": self.paths}).encode()

    @classmethod
    def load(cls, data: bytes) -> _Journal:
        doc = json.loads(data)
        return cls([(str(a), str(b)) for a, b in doc.get("links", [])],
                   [(str(a), str(b)) for a, b in doc.get("revisions", [])],
                   [(str(a), str(b)) for a, b in doc.get("paths", [])])


async def _exists(driver: StorageDriver, path: str) -> bool:
    try:
        await driver.stat(path)
    except PathNotFound:
        return False
    return True


async def _delete(driver: StorageDriver, path: str) -> bool:
    try:
        await driver.delete(path)
    except PathNotFound:
        return False
    return True


async def _modtime(driver: StorageDriver, path: str) -> float | None:
    try:
        return (await driver.stat(path)).modtime
    except PathNotFound:
        return None


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


async def _prune_empty_dir(driver: StorageDriver, path: str) -> None:
    """Remove a now-empty blob directory where the driver has real directories (never a non-empty one)."""
    local = driver.local_path(path)
    if local is None:
        return

    def rmdir() -> None:
        try:
            os.rmdir(local)
        except OSError:
            pass

    await asyncio.to_thread(rmdir)


async def _restore_blob(driver: StorageDriver, digest: Digest) -> None:
    """Move quarantined data back to the blob path (or drop it if fresh data arrived there)."""
    source = trash_path(digest)
    if await _exists(driver, layout.blob_data(digest)):
        await _delete(driver, source)
        return
    try:
        await driver.move(source, layout.blob_data(digest))
    except PathNotFound:
        pass


async def _link(driver: StorageDriver, path: str, digest: Digest) -> None:
    await driver.put_content(path, str(digest).encode())


async def rollback(driver: StorageDriver) -> bool:
    """Undo an interrupted run: move the trash back and re-create what its journal removed.

    Returns whether there was anything to roll back.
    """
    found = False
    restored: set[Digest] = set()
    try:
        trashed = [info.path async for info in driver.walk(TRASH_DIR)]
    except PathNotFound:
        trashed = []
    for path in trashed:
        parts = path.rsplit("/", 2)
        try:
            digest = Digest.parse(f"{parts[-2]}:{parts[-1]}")
        except InvalidDigest:
            continue
        found = True
        await _restore_blob(driver, digest)
        restored.add(digest)
    try:
        journal = _Journal.load(await driver.get_content(JOURNAL_PATH))
    except PathNotFound:
        journal = None
    except ValueError:
        log.warning("garbage collection journal is unreadable; removing it")
        journal = _Journal()
    if journal is not None:
        found = True

        async def has_data(d: Digest) -> bool:
            return await _exists(driver, layout.blob_data(d))

        for repo, text in journal.links:
            d = Digest.parse(text)
            if await has_data(d):
                await _link(driver, layout.layer_link(repo, d), d)
        for repo, text in journal.revisions:
            d = Digest.parse(text)
            if await has_data(d):
                await _link(driver, layout.revision_link(repo, d), d)
        for path, text in journal.paths:
            d = Digest.parse(text)
            if await has_data(d):
                await _link(driver, path, d)
        await _delete(driver, JOURNAL_PATH)
    if found:
        log.warning("rolled back an interrupted garbage collection (%d quarantined blobs restored)", len(restored))
    return found


class _Run:
    """One mark-and-sweep pass (see the module docstring for the protocol)."""

    def __init__(self, driver: StorageDriver, options: GCOptions, report: GCReport) -> None:
        self.driver = driver
        self.options = options
        self.report = report
        self.reader = ManifestReader(driver, fallback=trash_path)
        self.cutoff = 0.0

    def young(self, modtime: float) -> bool:
        return modtime >= self.cutoff

    async def execute(self) -> None:
        started = time.time()
        slack = self.options.clock_slack
        if slack is None:
            slack = CLOCK_SLACK if self.driver.name == "s3" else 0.0
        self.cutoff = started - self.options.grace_period - slack
        repos = await scan_repositories(self.driver)
        marked, untagged = await self._mark(repos)
        blobs = await scan_blobs(self.driver)
        young_links = {d for r in repos.values() for d, mt in r.layers.items() if self.young(mt)}
        candidates: dict[Digest, BlobScan] = {}
        for d, blob in blobs.items():
            if d in marked:
                continue
            if self.young(blob.modtime) or d in young_links:
                self.report.kept_young += 1
                continue
            candidates[d] = blob
        report = self.report
        report.repositories = len(repos)
        report.blobs_scanned = len(blobs)
        report.bytes_scanned = sum(b.size for b in blobs.values())
        report.blobs_marked = sum(1 for d in blobs if d in marked)
        links = [(name, d) for name, r in repos.items() for d in r.layers if d in candidates]
        if self.options.dry_run:
            report.blobs = {str(d): b.size for d, b in candidates.items()}
            report.manifests = [(repo, str(d)) for repo, d in untagged]
            report.layer_links = [(repo, str(d)) for repo, d in links]
            return
        if not candidates and not untagged:
            return
        try:
            await self._sweep(repos, marked, untagged, candidates, links)
        except BaseException:
            # Put everything back now rather than leaving it to the next run.
            try:
                await asyncio.shield(rollback(self.driver))
            except BaseException:
                log.exception("garbage collection failed and could not roll back; the next run will")
            raise

    # ---- mark ----

    async def _mark(self, repos: dict[str, RepositoryScan]) -> tuple[set[Digest], list[tuple[str, Digest]]]:
        """Every referenced digest; and (with delete_untagged) the untagged revisions to remove."""
        marked: set[Digest] = set()
        untagged: list[tuple[str, Digest]] = []
        for repo in repos.values():
            kept = await self._kept(repo)
            marked |= await self.reader.referenced(kept)
            if self.options.delete_untagged:
                untagged += [(repo.name, d) for d in sorted(repo.revisions, key=str) if d not in kept]
        if self.reader.unreadable:
            bad = ", ".join(sorted(str(d) for d in self.reader.unreadable))
            raise GCError(f"manifests that cannot be parsed are in use ({bad}); nothing was deleted")
        return marked, untagged

    async def _kept(self, repo: RepositoryScan) -> set[Digest]:
        """The manifests of ``repo`` that stay: all revisions, or (delete_untagged) what tags reach."""
        if not self.options.delete_untagged:
            return set(repo.revisions)
        roots = set(repo.tags.values()) | {d for d, mt in repo.revisions.items() if self.young(mt)}
        await self.reader.prefetch(repo.revisions)
        kept = await self.reader.closure(roots)
        while True:  # referrers of kept manifests stay (signatures, SBOMs, attestations)
            extra = [d for d in repo.revisions if d not in kept
                     and (refs := self.reader.cached(d)) is not None and refs.subject in kept]
            if not extra:
                return kept
            kept |= await self.reader.closure(extra)

    # ---- sweep ----

    async def _sweep(self, repos: dict[str, RepositoryScan], marked: set[Digest],
                     untagged: list[tuple[str, Digest]], candidates: dict[Digest, BlobScan],
                     links: list[tuple[str, Digest]]) -> None:
        driver = self.driver
        journal = _Journal(links=[(r, str(d)) for r, d in links],
                           revisions=[(r, str(d)) for r, d in untagged])
        # Tag history and referrer links of the untagged revisions, so a rollback can re-create them.
        history = await self._history_links(untagged)
        journal.paths = [(p, str(d)) for p, d in history]
        await driver.put_content(JOURNAL_PATH, journal.dump())

        removed_revisions = await self._remove_untagged(untagged, history)
        kept_back = {(r, d) for r, d in untagged} - set(removed_revisions)
        if kept_back:  # tagged again meanwhile: what they reference stays
            saved = await self.reader.referenced(d for _, d in kept_back)
            for d in saved:
                candidates.pop(d, None)

        unlinked = await self._unlink(candidates, links)
        # A push that linked a candidate since the scan wants it: leave it alone (its links come back below).
        for d in await linked_digests(driver, repos):
            candidates.pop(d, None)
        trashed = await self._quarantine(candidates)

        if self.options.quarantine > 0:
            await asyncio.sleep(self.options.quarantine)
        rescued = await self._rescan(repos, removed_revisions, history, trashed | {d for _, d in unlinked})

        for d in rescued & trashed:
            await _restore_blob(driver, d)
        keep_links = rescued | ({d for _, d in unlinked} - trashed)
        for repo, d in unlinked:
            if d in keep_links:
                await _link(driver, layout.layer_link(repo, d), d)
        doomed = trashed - rescued
        await bounded(sorted(doomed, key=str), lambda d: _delete(driver, trash_path(d)))
        await bounded(sorted(doomed, key=str), lambda d: _prune_empty_dir(driver, layout.blob_dir(d)))
        await _delete(driver, JOURNAL_PATH)

        self.report.blobs = {str(d): candidates[d].size for d in doomed}
        self.report.layer_links = [(r, str(d)) for r, d in unlinked if d not in keep_links]
        self.report.manifests = [(r, str(d)) for r, d in removed_revisions if d not in rescued]
        self.report.rescued = sorted(str(d) for d in rescued & (trashed | {d for _, d in unlinked}))
        if self.report.rescued:
            log.warning("garbage collection put back %d blobs that pushes referenced during the run: %s",
                        len(self.report.rescued), ", ".join(self.report.rescued[:10]))

    async def _history_links(self, untagged: list[tuple[str, Digest]]) -> list[tuple[str, Digest]]:
        """Tag-history entries and referrer links that name an untagged revision."""
        out: list[tuple[str, Digest]] = []
        by_repo: dict[str, set[Digest]] = {}
        for repo, d in untagged:
            by_repo.setdefault(repo, set()).add(d)
        for repo, digests in by_repo.items():
            prefix = layout.tags_dir(repo) + "/"
            try:
                async for info in self.driver.walk(layout.tags_dir(repo)):
                    parts = info.path[len(prefix):].split("/")
                    if len(parts) == 5 and parts[1] == "index" and parts[4] == "link":
                        try:
                            d = Digest.parse(f"{parts[2]}:{parts[3]}")
                        except InvalidDigest:
                            continue
                        if d in digests:
                            out.append((info.path, d))
            except PathNotFound:
                pass
            for d in digests:
                refs = await self.reader.refs(d)
                if refs is not None and refs.subject is not None:
                    path = layout.referrer_link(repo, refs.subject, d)
                    if await _exists(self.driver, path):
                        out.append((path, d))
        return out

    async def _remove_untagged(self, untagged: list[tuple[str, Digest]],
                               history: list[tuple[str, Digest]]) -> list[tuple[str, Digest]]:
        """Delete untagged revisions that are still old and untagged; returns those removed."""
        removed: list[tuple[str, Digest]] = []
        by_repo: dict[str, list[Digest]] = {}
        for repo, d in untagged:
            by_repo.setdefault(repo, []).append(d)
        for repo, digests in by_repo.items():
            now = await scan_repository(self.driver, repo)
            tagged = await self.reader.closure(now.tags.values())
            for d in digests:
                mt = now.revisions.get(d)
                if mt is None or self.young(mt) or d in tagged:
                    continue
                for path, hd in history:
                    if hd == d and path.startswith(layout.repository(repo) + "/"):
                        await _delete(self.driver, _parent(path))
                await _delete(self.driver, _parent(layout.revision_link(repo, d)))
                removed.append((repo, d))
        return removed

    async def _unlink(self, candidates: dict[Digest, BlobScan],
                      links: list[tuple[str, Digest]]) -> list[tuple[str, Digest]]:
        """Delete the (old) layer links of candidates; a young link saves its blob."""
        todo = [(r, d) for r, d in links if d in candidates]
        times = await bounded(todo, lambda rd: _modtime(self.driver, layout.layer_link(rd[0], rd[1])))
        for (repo, d), mt in zip(todo, times):
            if mt is not None and self.young(mt):
                candidates.pop(d, None)
        todo = [(r, d) for r, d in todo if d in candidates]
        done = await bounded(todo, lambda rd: _delete(self.driver, _parent(layout.layer_link(rd[0], rd[1]))))
        return [rd for rd, ok in zip(todo, done) if ok]

    async def _quarantine(self, candidates: dict[Digest, BlobScan]) -> set[Digest]:
        """Move candidates' data into the trash (unless it changed since the scan)."""

        async def move(d: Digest) -> Digest | None:
            mt = await _modtime(self.driver, layout.blob_data(d))
            if mt is None or self.young(mt):
                return None
            try:
                await self.driver.move(layout.blob_data(d), trash_path(d))
            except PathNotFound:
                return None
            return d

        moved = await bounded(sorted(candidates, key=str), move)
        return {d for d in moved if d is not None}

    async def _rescan(self, before: dict[str, RepositoryScan], removed_revisions: list[tuple[str, Digest]],
                      history: list[tuple[str, Digest]], at_risk: set[Digest]) -> set[Digest]:
        """Digests (of ``at_risk``) that a revision, tag or link created during the run references.

        Removed revisions that a tag reaches again are restored here.
        """
        after = await scan_repositories(self.driver)
        removed_by_repo: dict[str, set[Digest]] = {}
        for repo, d in removed_revisions:
            removed_by_repo.setdefault(repo, set()).add(d)
        rescued: set[Digest] = set()
        for name, scan in after.items():
            old = before.get(name) or RepositoryScan(name)
            roots = [d for d, mt in scan.revisions.items() if old.revisions.get(d) != mt]
            roots += [d for tag, d in scan.tags.items() if old.tags.get(tag) != d]
            removed = removed_by_repo.get(name, set())
            if removed:
                roots += list(scan.tags.values())  # a tag may now reach a removed revision
            for d in roots:
                self.reader.forget(d)
            reachable = await self.reader.closure(roots)
            while True:  # referrers of what is reachable again come back with it
                extra = [d for d in removed - reachable
                         if (refs := await self.reader.refs(d)) is not None and refs.subject in reachable]
                if not extra:
                    break
                reachable |= await self.reader.closure(extra)
            for d in reachable & removed:
                await _link(self.driver, layout.revision_link(name, d), d)
                for path, hd in history:
                    if hd == d and path.startswith(layout.repository(name) + "/"):
                        await _link(self.driver, path, d)
            rescued |= (await self.reader.referenced(reachable)) & at_risk
            # Every link we removed is gone; a link to an at-risk blob now is a push that re-linked it.
            rescued |= {d for d in scan.layers if d in at_risk}
        return rescued


async def collect_garbage(driver: StorageDriver, options: GCOptions | None = None) -> GCReport:
    """Run one garbage collection over ``driver``'s storage; see the module docstring.

    Raises :class:`GCBusy` when another run holds the lock and :class:`GCError` when a
    manifest in use cannot be parsed (nothing is deleted then).
    """
    options = options or GCOptions()
    report = GCReport(dry_run=options.dry_run, started_at=time.time())
    lock = None if options.dry_run else GCLock(driver, options.lock_ttl)
    try:
        if lock is not None:
            await lock.acquire()
    except GCBusy:
        RUNS.labels("busy").inc()
        raise
    try:
        if not options.dry_run:
            report.rolled_back = await rollback(driver)
        await _Run(driver, options, report).execute()
    except BaseException:
        RUNS.labels("failed").inc()
        raise
    finally:
        report.finished_at = time.time()
        if lock is not None:
            try:
                await lock.release()
            except Exception:  # the lease expires by itself; don't hide the run's own outcome
                log.warning("could not release the garbage collection lock", exc_info=True)
    if options.dry_run:
        RUNS.labels("dry_run").inc()
    else:
        RUNS.labels("ok").inc()
        BYTES_FREED.inc(report.bytes_freed)
        BLOBS_DELETED.inc(len(report.blobs))
        MANIFESTS_DELETED.inc(len(report.manifests))
        RESCUED.inc(len(report.rescued))
        LAST_SUCCESS.set(report.finished_at)
    LAST_DURATION.set(report.duration)
    log.info("garbage collection%s: %d repositories, %d blobs scanned, %d %s (%d bytes), %d untagged manifests, "
             "%d kept in grace, %d rescued, %.1fs",
             " (dry run)" if options.dry_run else "", report.repositories, report.blobs_scanned,
             len(report.blobs), "to delete" if options.dry_run else "deleted", report.bytes_freed,
             len(report.manifests), report.kept_young, len(report.rescued), report.duration)
    return report


def summarize(digests: Iterable[str], limit: int = 10) -> str:
    """A short comma list for log lines."""
    items = list(digests)
    head = ", ".join(items[:limit])
    return head + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
