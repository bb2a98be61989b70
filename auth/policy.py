"""Who may do what where: the access policy, parsed from YAML and evaluated purely.

A policy file looks like this (every key optional)::

    groups:
      developers: [alice, bob]
      ci: [robot]
    admins: [root, "@ops"]          # users or @groups: every action on every repository
    rules:
      - repository: "public/**"     # a glob or a list of globs
        anonymous: [pull]           # callers without credentials
        authenticated: [pull]       # any user who logged in
      - repository: ["team/*", "team/**"]
        groups: {developers: [pull, push, delete, overwrite]}
        users: {robot: [pull, push]}
      - repository: "releases/**"
        groups: {ci: ["*"]}
        immutable: true             # nobody (admins included) may move an existing tag

Globs: ``*`` and ``?`` stay within one path component, ``**`` crosses ``/``.
Actions: ``pull``, ``push``, ``delete``, ``overwrite`` (push a tag that already
points elsewhere) and ``*`` for all four. Grants of every matching rule add up;
what anonymous callers may do, every user may do; ``immutable`` on any matching
rule removes ``overwrite``. Invalid repository names are never granted anything.

Without a policy file Berth behaves like registry:2: every authenticated user
may do everything, anonymous callers nothing (:data:`OPEN_POLICY`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import yaml

from auth.access import (
    ALL,
    CATALOG,
    OVERWRITE,
    PULL,
    REGISTRY,
    REPOSITORY,
    REPOSITORY_ACTIONS,
    Access,
    is_grantable,
)
from registry.reference import is_valid_name

EVERYTHING = frozenset(REPOSITORY_ACTIONS)
NOTHING: frozenset[str] = frozenset()


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the offending key."""


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A repository glob as a full-match regex (``*``/``?`` within a component, ``**`` across)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class Rule:
    """Grants on the repositories matching any of ``patterns``."""

    patterns: tuple[str, ...]
    anonymous: frozenset[str] = NOTHING
    authenticated: frozenset[str] = NOTHING
    users: Mapping[str, frozenset[str]] = field(default_factory=dict)
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    immutable: bool = False
    _regexes: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regexes", tuple(compile_glob(p) for p in self.patterns))

    def matches(self, repository: str) -> bool:
        """Whether the rule covers ``repository``."""
        return any(r.fullmatch(repository) for r in self._regexes)


@dataclass(frozen=True)
class Policy:
    """Groups, admins and rules; :meth:`actions` is the one question everything else asks."""

    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    admins: frozenset[str] = NOTHING
    rules: tuple[Rule, ...] = ()

    def groups_of(self, user: str) -> frozenset[str]:
        """The groups ``user`` belongs to."""
        return frozenset(g for g, members in self.groups.items() if user in members)

    def is_admin(self, user: str | None) -> bool:
        """Whether ``user`` is named in ``admins`` directly or through a group."""
        if user is None:
            return False
        return user in self.admins or any(f"@{g}" in self.admins for g in self.groups_of(user))

    def actions(self, user: str | None, repository: str) -> frozenset[str]:
        """The repository actions ``user`` (None: anonymous) has on ``repository``."""
        if not is_valid_name(repository):
            return NOTHING
        matching = [r for r in self.rules if r.matches(repository)]
        granted: set[str] = set()
        if self.is_admin(user):
            granted.update(EVERYTHING)
        groups = self.groups_of(user) if user is not None else NOTHING
        for rule in matching:
            granted.update(rule.anonymous)
            if user is None:
                continue
            granted.update(rule.authenticated)
            granted.update(rule.users.get(user, NOTHING))
            for group in groups:
                granted.update(rule.groups.get(group, NOTHING))
        if any(r.immutable for r in matching):
            granted.discard(OVERWRITE)
        return frozenset(granted)

    def may_list_catalog(self, user: str | None) -> bool:
        """Users may list the catalog (filtered to what they can pull); anonymous callers if any rule lets them pull."""
        if user is not None:
            return True
        return any(PULL in r.anonymous for r in self.rules)

    def grant(self, user: str | None, requested: Iterable[Access]) -> list[Access]:
        """The intersection of what was asked for and what is allowed (``*`` asks for everything allowed)."""
        granted: list[Access] = []
        for access in requested:
            if not is_grantable(access):
                continue
            if access.type == REPOSITORY:
                allowed = self.actions(user, access.name)
                wanted = allowed if ALL in access.actions else allowed & set(access.actions)
            elif access.type == REGISTRY and access.name == CATALOG and self.may_list_catalog(user):
                wanted = frozenset(access.actions) & {ALL}
            else:
                continue
            if wanted:
                granted.append(Access.of(access.type, access.name, wanted))
        return granted


OPEN_POLICY = Policy(rules=(Rule(("**",), authenticated=EVERYTHING),))


# --- parsing ------------------------------------------------------------------------------------

def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: expected a list of names")
    return list(value)


def _actions(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list of actions")
    out: set[str] = set()
    for action in value:
        if action == ALL:
            out.update(EVERYTHING)
        elif action in REPOSITORY_ACTIONS:
            out.add(action)
        else:
            raise PolicyError(f"{where}: unknown action {action!r} (use {', '.join(REPOSITORY_ACTIONS)} or *)")
    return frozenset(out)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping")
    return {str(k): v for k, v in value.items()}


_RULE_KEYS = {"repository", "repositories", "anonymous", "authenticated", "users", "groups", "immutable"}


def _rule(raw: Any, where: str, groups: Mapping[str, frozenset[str]]) -> Rule:
    body = _mapping(raw, where)
    unknown = set(body) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}.{sorted(unknown)[0]}: unknown key")
    patterns_raw = body.get("repository", body.get("repositories"))
    if patterns_raw is None:
        raise PolicyError(f"{where}.repository: required")
    patterns = tuple(_strings(patterns_raw, f"{where}.repository"))
    for pattern in patterns:
        if not re.fullmatch(r"[a-z0-9._\-/*?]+", pattern):
            raise PolicyError(f"{where}.repository: {pattern!r} can never match a repository name")
    users = {u: _actions(a, f"{where}.users.{u}") for u, a in _mapping(body.get("users"), f"{where}.users").items()}
    rule_groups: dict[str, frozenset[str]] = {}
    for group, acts in _mapping(body.get("groups"), f"{where}.groups").items():
        if group not in groups:
            raise PolicyError(f"{where}.groups.{group}: no such group")
        rule_groups[group] = _actions(acts, f"{where}.groups.{group}")
    immutable = body.get("immutable", False)
    if not isinstance(immutable, bool):
        raise PolicyError(f"{where}.immutable: expected true or false")
    return Rule(
        patterns=patterns,
        anonymous=_actions(body.get("anonymous") or [], f"{where}.anonymous"),
        authenticated=_actions(body.get("authenticated") or [], f"{where}.authenticated"),
        users=users,
        groups=rule_groups,
        immutable=immutable,
    )


def parse_policy(text: str | bytes, source: str = "policy") -> Policy:
    """Parse and validate a policy document; raises :class:`PolicyError` naming the bad key."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    body = _mapping(raw, source)
    unknown = set(body) - {"groups", "admins", "rules"}
    if unknown:
        raise PolicyError(f"{source}: {sorted(unknown)[0]}: unknown key")
    groups = {name: frozenset(_strings(members or [], f"groups.{name}"))
              for name, members in _mapping(body.get("groups"), "groups").items()}
    admins = _strings(body.get("admins") or [], "admins")
    for admin in admins:
        if admin.startswith("@") and admin[1:] not in groups:
            raise PolicyError(f"admins: no such group {admin[1:]!r}")
    rules_raw = body.get("rules") or []
    if not isinstance(rules_raw, list):
        raise PolicyError("rules: expected a list")
    rules = tuple(_rule(r, f"rules[{i}]", groups) for i, r in enumerate(rules_raw))
    return Policy(groups=groups, admins=frozenset(admins), rules=rules)
