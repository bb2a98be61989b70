"""The retention decision, a pure function: first matching policy, keep rules, the manifest graph."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from registry.configschema import Duration
from registry.digest import Digest
from registry.governance.config import KeepRule, RetentionPolicy
from registry.governance.retention import decide, policy_for
from registry.services import ManifestNode, TagFact

NOW = 1_000_000_000.0
DAY = 86400.0


def d(n: int) -> Digest:
    return Digest.parse("sha256:" + f"{n:064x}")


def policy(*keep: KeepRule, repos: str = "team/**", untagged: str = "delete") -> RetentionPolicy:
    return RetentionPolicy(repositories=[repos], keep=list(keep), untagged=untagged)  # type: ignore[arg-type]


def tag(name: str, n: int, age_days: float, pulled_days: float | None = None) -> TagFact:
    return TagFact(name, d(n), NOW - age_days * DAY, None if pulled_days is None else NOW - pulled_days * DAY)


def images(*ns: int, age: float = 100.0) -> dict[Digest, ManifestNode]:
    return {d(n): ManifestNode(d(n), NOW - age * DAY) for n in ns}


def deleted(result: list) -> tuple[set[str], set[Digest]]:  # type: ignore[type-arg]
    return ({x.reference for x in result if x.kind == "tag"}, {x.digest for x in result if x.kind == "manifest"})


def test_repositories_matching_no_policy_are_untouched() -> None:
    facts = [tag("a", 1, 400)]
    assert decide([policy(repos="team/**")], "other/app", facts, images(1), NOW) == []
    assert decide([], "team/app", facts, images(1), NOW) == []


def test_first_matching_policy_applies() -> None:
    keep_all = policy(KeepRule(tags=".*"), repos="team/special")
    keep_none = policy(repos="team/**")
    facts = [tag("a", 1, 1), tag("b", 2, 2)]
    assert decide([keep_all, keep_none], "team/special", facts, images(1, 2), NOW) == []
    assert deleted(decide([keep_none, keep_all], "team/special", facts, images(1, 2), NOW)) == (
        {"a", "b"}, {d(1), d(2)})
    assert policy_for([keep_all, keep_none], "team/x") is keep_none


def test_each_keep_rule() -> None:
    facts = [tag("v1.2.3", 1, 400), tag("v1.2", 2, 300), tag("ci-1", 3, 40), tag("ci-2", 4, 20),
             tag("ci-3", 5, 10, pulled_days=5), tag("ci-4", 6, 5), tag("ci-5", 7, 5)]
    graph = images(1, 2, 3, 4, 5, 6, 7)

    def gone(*rules: KeepRule) -> set[str]:
        return deleted(decide([policy(*rules)], "team/app", facts, graph, NOW))[0]

    everything = {f.tag for f in facts}
    assert gone() == everything  # no keep rule: every tag goes
    assert gone(KeepRule(tags=r"^v\d+\.\d+\.\d+$")) == everything - {"v1.2.3"}
    # The 2 most recent: ci-4 and ci-5 share a push time; ties go by tag name.
    assert gone(KeepRule(mostrecentlypushed=2)) == everything - {"ci-4", "ci-5"}
    assert gone(KeepRule(mostrecentlypushed=3)) == everything - {"ci-3", "ci-4", "ci-5"}
    assert gone(KeepRule(mostrecentlypushed=0)) == everything
    assert gone(KeepRule(pushedwithin=Duration(20 * DAY))) == everything - {"ci-2", "ci-3", "ci-4", "ci-5"}
    assert gone(KeepRule(pulledwithin=Duration(7 * DAY))) == everything - {"ci-3"}
    assert gone(KeepRule(pulledwithin=Duration(3 * DAY))) == everything  # pulled too long ago
    # Rules add up.
    assert gone(KeepRule(tags="^v"), KeepRule(mostrecentlypushed=1)) == {"ci-1", "ci-2", "ci-3", "ci-5"}


def test_pulledwithin_keeps_nothing_without_pull_times() -> None:
    facts = [tag("a", 1, 1), tag("b", 2, 1)]
    result = decide([policy(KeepRule(pulledwithin=Duration(90 * DAY)))], "team/app", facts, images(1, 2), NOW)
    assert deleted(result)[0] == {"a", "b"}
    assert all("no pull recorded" in x.reason for x in result if x.kind == "tag")


def test_reasons_name_every_rule() -> None:
    facts = [tag("ci-1", 1, 40)]
    rules = [KeepRule(tags="^v"), KeepRule(mostrecentlypushed=0), KeepRule(pushedwithin=Duration(30 * DAY))]
    (tag_deletion, manifest_deletion) = decide([policy(*rules)], "team/app", facts, images(1), NOW)
    assert tag_deletion.kind == "tag" and "does not match '^v'" in tag_deletion.reason
    assert "not among the 0 newest" in tag_deletion.reason and "pushed 40.0d ago, not within 30.0d" in tag_deletion.reason
    assert manifest_deletion.kind == "manifest" and "ci-1" in manifest_deletion.reason


def test_manifests_go_only_when_untagged_and_unreferenced() -> None:
    # 1: tagged by a kept and a deleted tag; 2: only by deleted tags; 3: untagged already;
    # 10 index -> 11, 12 (kept through the index tag); 20 deleted index -> 21;
    # 30 kept image, 31 referrer of it (kept), 32 referrer of deleted image 2 (goes);
    # 40 kept referrer whose subject 41 is untagged (41 is kept: the kept referrer names it).
    graph = images(1, 2, 3, 11, 12, 21, 30, 41)
    graph[d(10)] = ManifestNode(d(10), NOW - 100 * DAY, children=(d(11), d(12)))
    graph[d(20)] = ManifestNode(d(20), NOW - 100 * DAY, children=(d(21),))
    graph[d(31)] = ManifestNode(d(31), NOW - 100 * DAY, subject=d(30))
    graph[d(32)] = ManifestNode(d(32), NOW - 100 * DAY, subject=d(2))
    graph[d(40)] = ManifestNode(d(40), NOW - 100 * DAY, subject=d(41))
    facts = [tag("keep-1", 1, 1), tag("old-1", 1, 100), tag("old-2", 2, 100), tag("keep-index", 10, 1),
             tag("old-index", 20, 100), tag("keep-image", 30, 1), tag("keep-sig", 40, 1)]
    rules = [KeepRule(tags="^keep-")]
    result = decide([policy(*rules)], "team/app", facts, graph, NOW)
    tags, manifests = deleted(result)
    assert tags == {"old-1", "old-2", "old-index"}
    assert manifests == {d(2), d(3), d(20), d(21), d(32)}
    # Order: tags first, then referrers and indexes before what they point at.
    kinds = [x.kind for x in result]
    assert kinds == sorted(kinds, key=lambda k: k != "tag")
    order = [x.digest for x in result if x.kind == "manifest"]
    assert order.index(d(32)) < order.index(d(2)) and order.index(d(20)) < order.index(d(21))
    # untagged: keep deletes tags only.
    result = decide([policy(*rules, untagged="keep")], "team/app", facts, graph, NOW)
    assert deleted(result) == ({"old-1", "old-2", "old-index"}, set())


def _oracle(rules: list[KeepRule], facts: list[TagFact]) -> set[str]:
    """Brute force: a tag stays if any rule alone keeps it."""
    kept = set()
    for f in facts:
        for rule in rules:
            if rule.tags and re.search(rule.tags, f.tag):
                kept.add(f.tag)
            if rule.mostrecentlypushed is not None:
                # Ties in push time count the lexically smaller tag as newer.
                newer = [g for g in facts if g.pushed_at > f.pushed_at or (g.pushed_at == f.pushed_at and g.tag < f.tag)]
                if len(newer) < rule.mostrecentlypushed:
                    kept.add(f.tag)
            if rule.pushedwithin is not None and NOW - f.pushed_at <= rule.pushedwithin:
                kept.add(f.tag)
            if rule.pulledwithin is not None and f.pulled_at is not None and NOW - f.pulled_at <= rule.pulledwithin:
                kept.add(f.tag)
    return {f.tag for f in facts} - kept


RULES = [KeepRule(tags=r"^v\d"), KeepRule(mostrecentlypushed=3), KeepRule(pushedwithin=Duration(10 * DAY)),
         KeepRule(pulledwithin=Duration(10 * DAY))]


@pytest.mark.parametrize("seed", range(20))
def test_every_rule_combination_against_a_brute_force_oracle(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"{rng.choice(['v', 'ci-', 'x'])}{i}" for i in range(12)]
    facts = [TagFact(n, d(rng.randrange(6)), NOW - rng.choice([1, 5, 10, 11, 30]) * DAY,
                     rng.choice([None, NOW - 2 * DAY, NOW - 40 * DAY])) for n in names]
    graph = images(*range(6))
    graph[d(6)] = ManifestNode(d(6), NOW, children=(d(0), d(1)))
    facts.append(TagFact("index", d(6), NOW - 50 * DAY))
    for k in range(len(RULES) + 1):
        for combo in itertools.combinations(RULES, k):
            rules = list(combo)
            result = decide([policy(*rules)], "team/app", facts, graph, NOW)
            tags, manifests = deleted(result)
            assert tags == _oracle(rules, facts), rules
            kept_digests = {f.digest for f in facts if f.tag not in tags}
            if d(6) in kept_digests:
                kept_digests |= {d(0), d(1)}
            assert manifests == set(graph) - kept_digests, rules
