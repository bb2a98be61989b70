"""Retention: which tags and manifests go, by rule, and the run that deletes them safely.

:func:`decide` is pure: (policies, repository, tag facts, manifest graph, now) -> deletions,
each with its reason. The first policy whose globs match the repository applies; a repository
no policy matches is never touched. A tag goes when no keep rule of that policy keeps it:

* ``tags: REGEX`` keeps tags the regex finds (``re.search``; anchor it with ``^...$``);
* ``mostrecentlypushed: N`` keeps the N most recently pushed tags (ties: by tag name);
* ``pushedwithin: D`` keeps tags pushed (or moved) within D of now;
* ``pulledwithin: D`` keeps tags pulled within D; pull times come from the metadata index,
  so until it records pulls this rule keeps nothing.

With ``untagged: delete`` a manifest goes when no kept tag is left on it and nothing kept refers
to it: kept manifests keep their index children, the subject they name, and the referrers
whose subject they are (signatures and SBOMs stay with what they describe), transitively.
``untagged: keep`` deletes tags only. Deletions are ordered so a reader never finds a
dangling reference: tags first, then referrers and indexes before what they point at.

:func:`run_retention` applies the decision through the Registry services, so the usual
delete events (webhooks, audit lines, quota usage) follow, and blobs are left to garbage
collection. It is safe while pushes run: everything pushed or moved since the run started is
kept, and just before each deletion the tag's digest and push time (a manifest's revision
time, which every push of it rewrites) are read again; a difference skips the deletion.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from registry.configschema import ConfigError, load_section
from registry.digest import Digest
from registry.events import Event, EventSink, RequestInfo
from registry.governance.config import RetentionConfig, RetentionPolicy
from registry.governance.usage import matches
from registry.services import ManifestNode, Registry, TagFact

log = logging.getLogger("berth.retention")

ACTOR = "retention"


@dataclass(frozen=True)
class Deletion:
    """One thing a run deletes: a ``tag`` (reference = the tag) or a ``manifest`` (reference = its digest)."""

    kind: str
    repository: str
    reference: str
    digest: Digest
    reason: str
    pushed_at: float
    leaf: bool = False  # a manifest that is no index and no referrer (nothing doomed depends on its order)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "repository": self.repository, "reference": self.reference,
                "digest": str(self.digest), "reason": self.reason,
                "pushedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.pushed_at))}


def policy_for(policies: Sequence[RetentionPolicy], repository: str) -> RetentionPolicy | None:
    """The first policy whose globs match ``repository``."""
    for policy in policies:
        if matches(policy.patterns, repository):
            return policy
    return None


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f}d"


def decide(policies: Sequence[RetentionPolicy], repository: str, tags: Sequence[TagFact],
           manifests: Mapping[Digest, ManifestNode], now: float) -> list[Deletion]:
    """What retention deletes in ``repository`` and why (pure; see the module doc)."""
    policy = policy_for(policies, repository)
    if policy is None:
        return []
    by_recency = sorted(tags, key=lambda f: (-f.pushed_at, f.tag))
    rank = {f.tag: i for i, f in enumerate(by_recency)}
    kept: set[str] = set()
    for fact in tags:
        for rule in policy.keep:
            if rule.tags and re.search(rule.tags, fact.tag) or rule.mostrecentlypushed is not None and rank[fact.tag] < rule.mostrecentlypushed or rule.pushedwithin is not None and now - fact.pushed_at <= rule.pushedwithin or rule.pulledwithin is not None and fact.pulled_at is not None and \
                    now - fact.pulled_at <= rule.pulledwithin:
                kept.add(fact.tag)
    out: list[Deletion] = []
    for fact in sorted(tags, key=lambda f: (f.pushed_at, f.tag)):
        if fact.tag in kept:
            continue
        out.append(Deletion("tag", repository, fact.tag, fact.digest, _tag_reason(policy, fact, rank, now),
                            fact.pushed_at))
    if policy.untagged != "delete":
        return out
    keep_manifests = _closure({f.digest for f in tags if f.tag in kept}, manifests)
    doomed = [n for d, n in manifests.items() if d not in keep_manifests]

    def order(node: ManifestNode) -> tuple[int, str]:
        return (0 if node.subject is not None else 1 if node.children else 2, str(node.digest))

    left_tags = {f.digest: f.tag for f in tags if f.tag not in kept}
    for node in sorted(doomed, key=order):
        reason = (f"untagged once tag {left_tags[node.digest]} goes" if node.digest in left_tags
                  else "untagged") + "; no kept manifest refers to it"
        out.append(Deletion("manifest", repository, str(node.digest), node.digest, reason, node.pushed_at,
                            leaf=node.subject is None and not node.children))
    return out


def _tag_reason(policy: RetentionPolicy, fact: TagFact, rank: Mapping[str, int], now: float) -> str:
    parts = []
    for rule in policy.keep:
        if rule.tags:
            parts.append(f"does not match {rule.tags!r}")
        elif rule.mostrecentlypushed is not None:
            parts.append(f"is #{rank[fact.tag] + 1} by push time, not among the {rule.mostrecentlypushed} newest")
        elif rule.pushedwithin is not None:
            parts.append(f"pushed {_days(now - fact.pushed_at)} ago, not within {_days(rule.pushedwithin)}")
        elif rule.pulledwithin is not None:
            parts.append("no pull recorded" if fact.pulled_at is None else
                         f"pulled {_days(now - fact.pulled_at)} ago, not within {_days(rule.pulledwithin)}")
    return "no keep rule keeps it: " + "; ".join(parts) if parts else "the policy keeps no tags"


def _closure(roots: set[Digest], manifests: Mapping[Digest, ManifestNode]) -> set[Digest]:
    """``roots`` plus everything kept with them: index children, subjects, referrers (transitively)."""
    referrers: dict[Digest, list[Digest]] = {}
    for node in manifests.values():
        if node.subject is not None:
            referrers.setdefault(node.subject, []).append(node.digest)
    kept: set[Digest] = set()
    frontier = list(roots)
    while frontier:
        digest = frontier.pop()
        if digest in kept:
            continue
        kept.add(digest)
        found = manifests.get(digest)
        if found is not None:
            frontier.extend(found.children)
            if found.subject is not None:
                frontier.append(found.subject)
        frontier.extend(referrers.get(digest, ()))
    return kept


# --- policies from a file ---------------------------------------------------------------------

@dataclass(frozen=True)
class RetentionFile:
    """A file named by ``retention.file``: ``policies: [...]`` with the keys of ``retention.policies``."""

    policies: list[RetentionPolicy] = field(default_factory=list)


def parse_retention_file(data: bytes, source: str = "retention file") -> tuple[RetentionPolicy, ...]:
    """Parse a retention file; raises ``ValueError`` naming the bad key."""
    try:
        raw = yaml.safe_load(data) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from None
    try:
        return tuple(load_section(RetentionFile, raw).policies)
    except ConfigError as exc:
        raise ValueError(f"{source}: {exc}") from None


class PolicySource:
    """The current policies: the config's, or the named file's (re-read when it changes)."""

    def __init__(self, config: RetentionConfig) -> None:
        self.config = config
        self._file = None
        if config.file:
            from auth.watch import WatchedFile

            self._file = WatchedFile(config.file, lambda d: parse_retention_file(d, config.file),
                                     what="retention file")

    async def policies(self) -> tuple[RetentionPolicy, ...]:
        """The policies in force now (raises ``OSError``/``ValueError`` if the file never loaded)."""
        if self._file is None:
            return tuple(self.config.policies)
        return await self._file.get()


# --- the run ----------------------------------------------------------------------------------

@dataclass
class RetentionReport:
    """What a run deleted (or would delete), what it skipped and why."""

    dry_run: bool
    started: float
    finished: float = 0.0
    repositories: int = 0
    deletions: list[Deletion] = field(default_factory=list)
    skipped: list[tuple[Deletion, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``berth retention --json``, ``POST /admin/retention``)."""
        return {"dryRun": self.dry_run, "repositories": self.repositories,
                "deleted" if not self.dry_run else "wouldDelete": [d.to_json() for d in self.deletions],
                "skipped": [{**d.to_json(), "skipReason": why} for d, why in self.skipped],
                "tags": sum(d.kind == "tag" for d in self.deletions),
                "manifests": sum(d.kind == "manifest" for d in self.deletions),
                "seconds": round(self.finished - self.started, 3)}


def _request_info() -> RequestInfo:
    return RequestInfo(id="", addr="", host="", method="DELETE", useragent="berth-retention")


async def run_retention(registry: Registry, policies: Sequence[RetentionPolicy], *, dry_run: bool,
                        sink: EventSink | None = None, now: float | None = None) -> RetentionReport:
    """Decide per repository and, unless ``dry_run``, delete (see the module doc)."""
    started = time.time() if now is None else now
    report = RetentionReport(dry_run=dry_run, started=started)
    if not policies:
        report.finished = time.time()
        return report
    for name in await registry.repositories():
        if policy_for(policies, name) is None:
            continue
        report.repositories += 1
        facts = await registry.tag_facts(name)
        graph = await registry.manifest_graph(name)
        # Anything pushed since the run started is not this run's business.
        facts = [f for f in facts if f.pushed_at < started]
        graph = {d: n for d, n in graph.items() if n.pushed_at < started}
        planned = decide(policies, name, facts, graph, started)
        if dry_run:
            report.deletions += planned
            continue
        await _apply(registry, name, planned, started, report, sink)
    report.finished = time.time()
    log.info("retention %s: %d tags and %d manifests in %d repositories", "dry run" if dry_run else "run",
             sum(d.kind == "tag" for d in report.deletions), sum(d.kind == "manifest" for d in report.deletions),
             report.repositories)
    return report


APPLY_CONCURRENCY = 8  # deletions a run keeps in flight


async def _apply(registry: Registry, name: str, planned: list[Deletion], started: float,
                 report: RetentionReport, sink: EventSink | None) -> None:
    """Delete what was planned, re-checking each item first: tags (in parallel), then referrers and
    indexes one by one (in order: before what they point at), then plain images (in parallel)."""
    from registry.maintenance.scan import bounded

    async def delete_tag(deletion: Deletion) -> None:
        fact = await registry.tag_fact(name, deletion.reference)
        if fact is None:
            report.skipped.append((deletion, "already gone"))
            return
        if fact.digest != deletion.digest or fact.pushed_at != deletion.pushed_at or fact.pushed_at >= started:
            report.skipped.append((deletion, "pushed or moved during the run"))
            return
        await registry.delete_tag(name, deletion.reference)
        report.deletions.append(deletion)
        await _publish(sink, Event(action="delete", repository=name, request=_request_info(), actor=ACTOR,
                                   tag=deletion.reference, digest=str(deletion.digest)))

    await bounded([d for d in planned if d.kind == "tag"], delete_tag, APPLY_CONCURRENCY)
    manifests = [d for d in planned if d.kind == "manifest"]
    if not manifests:
        return
    tagged = {f.digest for f in await registry.tag_facts(name)}  # read again after the tag deletions

    async def delete_manifest(deletion: Deletion) -> None:
        if deletion.digest in tagged:
            report.skipped.append((deletion, "tagged during the run"))
            return
        pushed = await registry.revision_pushed_at(name, deletion.digest)
        if pushed is None:
            report.skipped.append((deletion, "already gone"))
            return
        if pushed != deletion.pushed_at or pushed >= started:
            report.skipped.append((deletion, "pushed during the run"))
            return
        if await registry.delete_untagged_manifest(name, deletion.digest):
            report.deletions.append(deletion)
            await _publish(sink, Event(action="delete", repository=name, request=_request_info(),
                                       actor=ACTOR, digest=str(deletion.digest)))

    for deletion in (d for d in manifests if not d.leaf):
        await delete_manifest(deletion)
    await bounded([d for d in manifests if d.leaf], delete_manifest, APPLY_CONCURRENCY)


async def _publish(sink: EventSink | None, event: Event) -> None:
    """One delete event, published as soon as its deletion is done (webhooks, audit, quota usage)."""
    if sink is not None:
        await sink.publish([event])
